/* discovery-core: the daemon's own work for one discover_peers, without a
 * socket: parse the request, compile its filters, scan the room and build
 * the peer_list.  The discovery scenario of rtcsignal-bench measures the
 * same through the transport, where the generator shares the cores and
 * every figure moves with the machine's load; this one is steady enough to
 * compare two builds.  Same room (workload_register's varied peers) and
 * same filters as that scenario. */
#include "core/filter.h"
#include "core/meta.h"
#include "util/msgbuf.h"
#include "core/protocol.h"
#include "core/registry.h"
#include "workload.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

#define EXIT_USAGE 64

static bool match_filter(const struct peer *p, void *data)
{
	return filter_match(data, p->role, p->meta);
}

/* A room of N peers with varied metadata, registered as the daemon would:
 * each request parsed, its metadata compacted.  The first is the one that
 * asks. */
static struct peer *fill_room(struct registry *reg, unsigned n)
{
	struct room *room = registry_ensure_room(reg, "room");
	g_autoptr(GString) text = g_string_new(NULL);
	struct peer *first = NULL;

	for (unsigned i = 0; i < n; i++) {
		char id[32];
		json_object *o, *md = NULL, *role = NULL;
		struct meta *meta;
		const char *why;

		g_snprintf(id, sizeof id, "peer-%u", i);
		workload_register(text, id, "room", META_VARIED, i);
		o = json_tokener_parse(text->str);
		json_object_object_get_ex(o, "metadata", &md);
		json_object_object_get_ex(o, "role", &role);
		if (meta_new(md, 16384, &meta, &why) < 0)
			g_error("workload metadata refused: %s", why);
		struct peer *p = registry_add(reg, room, id, json_object_get_string(role), meta, NULL,
					      NULL, g_get_real_time());
		first = first ? first : p;
		json_object_put(o);
	}
	return first;
}

int main(int argc, char *argv[])
{
	int peers = 10000, queries = 2000, limit = 0;
	const GOptionEntry entries[] = {
		{ "peers", 'n', 0, G_OPTION_ARG_INT, &peers, "Peers in the room (10000)", "N" },
		{ "queries", 'q', 0, G_OPTION_ARG_INT, &queries, "Queries per filter (2000)", "N" },
		{ "limit", 0, 0, G_OPTION_ARG_INT, &limit, "\"limit\" of each query (0: none, the default 1000)",
		  "N" },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
	g_autoptr(GError) err = NULL;

	g_option_context_set_summary(ctx, "CPU of discover_peers in the daemon's core, without transport.");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err) || peers < 2 || queries < 1 || limit < 0) {
		fprintf(stderr, "discovery-core: %s\n", err ? err->message : "bad sizes");
		return EXIT_USAGE;
	}

	struct registry *reg = registry_new();
	struct peer *self = fill_room(reg, (unsigned)peers);
	g_autoptr(GString) request = g_string_new(NULL), scratch = g_string_new(NULL);
	double sum = 0;

	printf("%-8s %12s %8s %10s\n", "filter", "us/query", "peers", "bytes");
	for (unsigned f = 0; f < workload_n_filters; f++) {
		size_t bytes = 0;
		unsigned long found = 0;
		gint64 start = g_get_monotonic_time();

		for (int q = 0; q < queries; q++) {
			json_object *o = json_tokener_parse(workload_discover(f, (unsigned)limit, request)), *filters;
			unsigned lim = limit ? (unsigned)limit : 1000;
			struct filter *flt;
			char *why = NULL;

			json_object_object_get_ex(o, "filters", &filters);
			if (filter_compile(filters, UINT64_MAX, &flt, &why) < 0)
				g_error("workload filter refused: %s", why);
			struct msgbuf *m = protocol_peer_list(scratch, self, lim, match_filter, flt, NULL);
			/* the reply ends with "count":N} */
			const char *colon = msgbuf_text(m) + m->len;
			while (*--colon != ':')
				;
			bytes = m->len;
			found = strtoul(colon + 1, NULL, 10);
			msgbuf_unref(m);
			filter_free(flt);
			json_object_put(o);
		}
		double us = (double)(g_get_monotonic_time() - start) / queries;
		sum += us;
		printf("%-8u %12.1f %8lu %10zu\n", f, us, found, bytes);
	}
	printf("%-8s %12.1f\n", "mean", sum / workload_n_filters);
	registry_free(reg);
	return 0;
}
