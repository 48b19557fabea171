#include "workload.h"

#include "util/config.h"
#include "util/netaddr.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

int target_parse(const char *text, unsigned sources, struct target *out)
{
	struct listen_addr a;

	if (config_parse_listen(text, &a) < 0)
		return -EINVAL;
	if (a.ss.ss_family == AF_UNIX || !netaddr_is_loopback((const struct sockaddr *)&a.ss))
		return -EPERM;
	memset(out, 0, sizeof *out);
	out->dst = a.ss;
	out->dst_len = a.len;
	g_strlcpy(out->text, a.text, sizeof out->text);
	out->sources = a.ss.ss_family == AF_INET ? MIN(sources, WORKLOAD_MAX_SOURCES) : 0;
	return 0;
}

struct wsconn *target_open(struct wsloop *l, const struct target *t, unsigned i,
			   const struct wsconn_ops *ops, void *user)
{
	struct sockaddr_in src = { .sin_family = AF_INET };

	if (!t->sources)
		return wsconn_open(l, (const struct sockaddr *)&t->dst, t->dst_len, NULL, 0, ops, user);
	src.sin_addr.s_addr = htonl(0x7f000100u | (1 + i % t->sources));
	return wsconn_open(l, (const struct sockaddr *)&t->dst, t->dst_len,
			   (const struct sockaddr *)&src, sizeof src, ops, user);
}

/* What a SLEAP-RTC GPU worker advertises today (about 300 bytes). */
static const char worker_metadata[] =
	"{\"tags\":[\"sleap-rtc\",\"training\",\"inference\",\"gpu\"],"
	"\"properties\":{\"gpu_memory_mb\":24576,\"gpu_model\":\"NVIDIA RTX A5000\","
	"\"cuda_version\":\"12.2\",\"sleap_version\":\"1.4.1\",\"hostname\":\"gpu-node-17\","
	"\"cpu_count\":32,\"status\":\"available\",\"max_concurrent_jobs\":1}}";

static const unsigned gpu_memory[] = { 8192, 11264, 12288, 16384, 24576, 40960, 49152, 81920 };
static const char *const gpu_models[] = { "NVIDIA RTX A5000", "NVIDIA A100 80GB", "NVIDIA RTX 3090",
					  "NVIDIA T4", "NVIDIA RTX 4090" };
static const char *const statuses[] = { "available", "busy", "available", "maintenance", "available" };

static void varied_metadata(GString *out, unsigned v)
{
	g_string_append(out, "{\"tags\":[\"sleap-rtc\"");
	if (v % 2 == 0)
		g_string_append(out, ",\"training\"");
	if (v % 3 != 0)
		g_string_append(out, ",\"inference\"");
	if (v % 10 != 9)
		g_string_append(out, ",\"gpu\"");
	g_string_append_printf(out,
			       "],\"properties\":{\"gpu_memory_mb\":%u,\"gpu_model\":\"%s\","
			       "\"cuda_version\":\"12.%u\",\"sleap_version\":\"1.4.1\","
			       "\"hostname\":\"gpu-node-%u\",\"cpu_count\":%u,\"status\":\"%s\","
			       "\"max_concurrent_jobs\":%u}}",
			       gpu_memory[v % G_N_ELEMENTS(gpu_memory)],
			       gpu_models[(v / 8) % G_N_ELEMENTS(gpu_models)], v % 4, v,
			       8u << (v % 3), statuses[(v / 3) % G_N_ELEMENTS(statuses)], 1 + v % 2);
}

void workload_register(GString *out, const char *id, const char *room, enum meta_kind kind,
		       unsigned variant)
{
	bool worker = kind == META_WORKER || (kind == META_VARIED && variant % 10 < 8);

	g_string_printf(out, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"role\":\"%s\"",
			id, room, worker ? "worker" : "client");
	if (kind == META_WORKER) {
		g_string_append(out, ",\"metadata\":");
		g_string_append(out, worker_metadata);
	} else if (kind == META_VARIED) {
		g_string_append(out, ",\"metadata\":");
		varied_metadata(out, variant);
	}
	g_string_append_c(out, '}');
}

static const char *const filters[] = {
	"{\"role\":\"worker\"}",
	"{\"role\":\"worker\",\"tags\":[\"training\"]}",
	"{\"role\":\"worker\",\"properties\":{\"gpu_memory_mb\":{\"$gte\":16384},\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"tags\":{\"$all\":[\"gpu\",\"inference\"]},\"properties\":"
	"{\"gpu_model\":{\"$in\":[\"NVIDIA RTX A5000\",\"NVIDIA A100 80GB\"]},"
	"\"status\":{\"$ne\":\"maintenance\"}}}",
};

const unsigned workload_n_filters = G_N_ELEMENTS(filters);

const char *workload_discover(unsigned i, unsigned limit, GString *out)
{
	g_string_printf(out, "{\"type\":\"discover_peers\",\"filters\":%s", filters[i % G_N_ELEMENTS(filters)]);
	if (limit)
		g_string_append_printf(out, ",\"limit\":%u", limit);
	g_string_append_c(out, '}');
	return out->str;
}
