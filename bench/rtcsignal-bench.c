/* rtcsignal-bench: load generator for rtcsignald (and for bench/echo-floor).
 * One scenario per run; one JSON object on stdout, one human line on
 * stderr.  See bench/README.md. */
#include "crowd.h"
#include "holders.h"
#include "report.h"
#include "workload.h"
#include "wsconn.h"

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 64
#define NS 1000000000LL
#define RSS_TICK_MS 50

/* Every option; -1 means "the scenario's default". */
struct opts {
	const char *scenario;
	char *server;
	gint server_pid;
	gint deadline, sources, max_pending, procs, room_size;
	char *run_id;
	/* relay */
	gint pairs, payload, window, messages, warmup, idle;
	gboolean echo;
	/* connections, discovery */
	gint peers, clients, queries, limit;
	/* churn */
	gint sessions, concurrency;
};

struct bench {
	struct opts o;
	struct target target;
	int64_t deadline;
	json_object *counts;
	json_object *out;
	struct proc_sample before, after;
	bool completed;
};

/* ---- common ---- */

static void sample_server(struct bench *b, struct proc_sample *s)
{
	proc_sample(b->o.server_pid, s);
}

static json_object *params_of(struct bench *b, const char *const *names, const gint *values, size_t n)
{
	json_object *p = json_object_new_object();
	for (size_t i = 0; i < n; i++)
		json_object_object_add(p, names[i], json_object_new_int(values[i]));
	json_object_object_add(p, "deadline_s", json_object_new_int(b->o.deadline));
	json_object_object_add(p, "sources", json_object_new_int((int)b->target.sources));
	json_object_object_add(p, "max_pending", json_object_new_int(b->o.max_pending));
	return p;
}

/* The fields every scenario reports, then OPS operations of kind OP over
 * ELAPSED_NS. */
static void report_common(struct bench *b, const char *op, uint64_t ops, int64_t elapsed_ns)
{
	json_object *o = b->out;
	double secs = (double)elapsed_ns / NS;

	json_object_object_add(o, "scenario", json_object_new_string(b->o.scenario));
	json_object_object_add(o, "target", json_object_new_string(b->o.echo ? "echo" : "daemon"));
	json_object_object_add(o, "server", json_object_new_string(b->target.text));
	json_object_object_add(o, "completed", json_object_new_boolean(b->completed));
	json_object_object_add(o, "op", json_object_new_string(op));
	json_object_object_add(o, "ops", json_object_new_int64((int64_t)ops));
	json_object_object_add(o, "elapsed_s", json_object_new_double(secs));
	json_object_object_add(o, "ops_per_s", json_object_new_double(secs > 0 ? (double)ops / secs : 0));
	json_object *srv = proc_report(b->o.server_pid, &b->before, &b->after, ops);
	json_object_object_add(o, "server_proc", srv);
	json_object_object_add(b->counts, "registrations",
			       json_object_new_int64(counts_get(b->counts, "received", "registered_auth")));
	json_object_object_add(b->counts, "discoveries",
			       json_object_new_int64(counts_get(b->counts, "received", "peer_list")));
	json_object_object_add(o, "counts", json_object_get(b->counts));
}

static double per_op_field(json_object *o, const char *field)
{
	json_object *srv, *po, *v;
	if (!json_object_object_get_ex(o, "server_proc", &srv) || !srv ||
	    !json_object_object_get_ex(srv, "cpu_us_per_op", &po) ||
	    !json_object_object_get_ex(po, field, &v))
		return -1;
	return json_object_get_double(v);
}

static int64_t error_total(json_object *counts)
{
	int64_t n = 0;
	const char *groups[] = { "errors", "client_errors" };
	for (size_t i = 0; i < G_N_ELEMENTS(groups); i++) {
		json_object *g;
		if (!json_object_object_get_ex(counts, groups[i], &g))
			continue;
		json_object_object_foreach(g, k, v) {
			(void)k;
			n += json_object_get_int64(v);
		}
	}
	return n;
}

/* The human line: what ran, the rate, latency if any, server CPU. */
static void human_line(struct bench *b, const char *unit, struct samples *lat)
{
	json_object *v;
	double rate = json_object_object_get_ex(b->out, "ops_per_s", &v) ? json_object_get_double(v) : 0;
	GString *s = g_string_new(NULL);

	g_string_printf(s, "%s %s: %.0f %s/s", b->o.scenario, b->o.echo ? "echo" : "daemon",
			rate, unit);
	if (lat && lat->n)
		g_string_append_printf(s, ", latency p50 %.0f us p99 %.0f us p99.9 %.0f us",
				       samples_pct_us(lat, 50), samples_pct_us(lat, 99),
				       samples_pct_us(lat, 99.9));
	if (per_op_field(b->out, "total") >= 0)
		g_string_append_printf(s, ", server CPU %.1f us/%s (user %.1f, sys %.1f)",
				       per_op_field(b->out, "total"), unit, per_op_field(b->out, "user"),
				       per_op_field(b->out, "sys"));
	int64_t errs = error_total(b->counts);
	if (errs)
		g_string_append_printf(s, ", %" G_GINT64_FORMAT " errors", errs);
	if (!b->completed)
		g_string_append(s, ", INCOMPLETE (deadline)");
	fprintf(stderr, "%s\n", s->str);
	g_string_free(s, TRUE);
}

static char *prefix(struct bench *b, const char *what)
{
	return g_strdup_printf("%s-%s-", b->o.run_id, what);
}

/* Idle peers held by worker processes: started before this process opens
 * any socket.  NULL when COUNT is 0. */
static struct holders *start_idle(struct bench *b, unsigned count, enum meta_kind kind,
				  const char *id_prefix, const char *room_prefix, unsigned room_size,
				  bool do_register)
{
	if (!count)
		return NULL;
	struct crowd_spec spec = {
		.target = &b->target, .first = 0, .count = count, .do_register = do_register,
		.kind = kind, .id_prefix = id_prefix, .room_prefix = room_prefix,
		.room_size = room_size, .max_active = (unsigned)b->o.max_pending,
	};
	return holders_start(&spec, (unsigned)MAX(b->o.procs, 0), b->deadline);
}

/* Waits for the idle peers; false (and a note in the output) if some
 * failed or the deadline passed. */
static bool wait_idle(struct bench *b, struct holders *h, struct holders_result *r)
{
	memset(r, 0, sizeof *r);
	if (!h)
		return true;
	holders_wait_ready(h, b->deadline, r);
	json_object *g = json_object_new_object();
	json_object_object_add(g, "procs", json_object_new_int((int)r->procs));
	json_object_object_add(g, "ready", json_object_new_int((int)r->ready));
	json_object_object_add(g, "failed", json_object_new_int((int)r->failed));
	json_object_object_add(b->out, "idle_peers", g);
	if (r->timed_out || r->failed) {
		fprintf(stderr, "%s: %u idle peers ready, %u failed%s\n", b->o.scenario, r->ready,
			r->failed, r->timed_out ? ", deadline passed" : "");
		return false;
	}
	return true;
}

static bool crowd_settled_cb(void *cr)
{
	return crowd_settled(cr);
}

/* Runs LOOP until the crowd CR is settled; false if not all are ready. */
static bool open_crowd(struct bench *b, struct wsloop *l, struct crowd *cr)
{
	crowd_pump(cr);
	wsloop_run(l, crowd_settled_cb, NULL, cr, 100, b->deadline);
	if (cr->ready < cr->spec.count) {
		fprintf(stderr, "%s: %u of %u peers ready\n", b->o.scenario, cr->ready, cr->spec.count);
		return false;
	}
	return true;
}

/* ---- relay ---- */

struct relay {
	struct bench *b;
	struct crowd *cr;
	unsigned target;      /* round trips per pair in this phase */
	unsigned pairs_done;
	bool measuring;
	int64_t t_done;
	struct samples lat;
	char *pad;
	GString *msg;
};

static enum meta_kind relay_kind(unsigned idx)
{
	return idx % 2 ? META_WORKER : META_CLIENT;
}

/* Member 2i (a client) pings member 2i+1 (a worker). */
static void relay_send(struct relay *r, struct member *a)
{
	char from[96], to[96];
	int64_t t = wsloop_now();
	char head[64];
	int hl = snprintf(head, sizeof head, "{\"t\":%" G_GINT64_FORMAT ",\"s\":%" G_GUINT64_FORMAT ",\"p\":\"",
			  t, a->seq);
	int pad = MAX(r->b->o.payload - hl - 2, 0);

	crowd_peer_id(r->cr, a->idx, from, sizeof from);
	crowd_peer_id(r->cr, a->idx + 1, to, sizeof to);
	g_string_printf(r->msg, "{\"type\":\"peer_message\",\"from_peer_id\":\"%s\",\"to_peer_id\":\"%s\",\"payload\":%s%.*s\"}}",
			from, to, head, pad, r->pad);
	crowd_send(r->cr, a, "peer_message", r->msg->str, r->msg->len);
	a->seq++;
	a->inflight++;
}

static void relay_start_phase(struct relay *r, unsigned per_pair, bool measuring)
{
	r->target = per_pair;
	r->pairs_done = 0;
	r->measuring = measuring;
	for (unsigned i = 0; i < r->cr->spec.count; i += 2) {
		struct member *a = &r->cr->members[i];
		a->seq = 0;
		a->inflight = 0;
		if (!per_pair)
			r->pairs_done++;
		while (a->seq < per_pair && a->inflight < (unsigned)r->b->o.window)
			relay_send(r, a);
	}
}

static bool relay_phase_done(void *data)
{
	struct relay *r = data;
	return r->pairs_done >= r->cr->spec.count / 2;
}

/* Worker side: send the payload back to whoever sent it. */
static void relay_bounce(struct relay *r, struct member *bm, const char *text, size_t len)
{
	static const char key[] = "\"payload\":";
	const char *p = memmem(text, len, key, sizeof key - 1);
	char from[96], to[96];

	if (!p || text[len - 1] != '}') {
		counts_add(r->b->counts, "client_errors", "bad_message", 1);
		return;
	}
	p += sizeof key - 1;
	crowd_peer_id(r->cr, bm->idx, from, sizeof from);
	crowd_peer_id(r->cr, bm->idx - 1, to, sizeof to);
	g_string_printf(r->msg, "{\"type\":\"peer_message\",\"from_peer_id\":\"%s\",\"to_peer_id\":\"%s\",\"payload\":",
			from, to);
	g_string_append_len(r->msg, p, (gssize)(text + len - 1 - p));
	g_string_append_c(r->msg, '}');
	crowd_send(r->cr, bm, "peer_message", r->msg->str, r->msg->len);
}

static void relay_message(struct crowd *cr, struct member *m, const char *type, const char *text,
			  size_t len)
{
	struct relay *r = cr->user;
	static const char key[] = "\"payload\":{\"t\":";

	if (strcmp(type, "peer_message") != 0)
		return;
	if (m->idx % 2) {
		relay_bounce(r, m, text, len);
		return;
	}
	const char *p = memmem(text, len, key, sizeof key - 1);
	if (!p || !m->inflight) {
		counts_add(r->b->counts, "client_errors", "bad_message", 1);
		return;
	}
	int64_t now = wsloop_now();
	if (r->measuring)
		samples_add(&r->lat, now - g_ascii_strtoll(p + sizeof key - 1, NULL, 10));
	m->inflight--;
	if (m->seq < r->target)
		relay_send(r, m);
	else if (!m->inflight) {
		r->pairs_done++;
		r->t_done = now;
	}
}

static void relay_closed(struct crowd *cr, struct member *m, const char *why, int code)
{
	struct relay *r = cr->user;
	/* A broken pair cannot finish: count it done so the phase ends, and
	 * report the run incomplete. */
	r->b->completed = false;
	if (m->idx % 2 == 0 && (m->seq < r->target || m->inflight))
		r->pairs_done++;
}

static const struct crowd_ops relay_ops = {
	.message = relay_message,
	.closed = relay_closed,
};

static int run_relay(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *idle_ids = prefix(b, "idle"), *idle_rooms = prefix(b, "idleroom");
	g_autofree char *ids = prefix(b, "pair"), *rooms = prefix(b, "pairroom");
	struct holders_result hr;
	struct holders *idle = start_idle(b, (unsigned)o->idle, META_WORKER, idle_ids, idle_rooms,
					  (unsigned)o->room_size, !o->echo);
	struct wsloop *l = wsloop_new();
	struct relay r = { .b = b, .msg = g_string_sized_new((gsize)o->payload + 256) };
	struct crowd_spec spec = {
		.target = &b->target, .count = 2 * (unsigned)o->pairs, .do_register = !o->echo,
		.kind_of = relay_kind, .id_prefix = ids, .room_prefix = rooms, .room_size = 2,
		.max_active = (unsigned)o->max_pending,
	};
	uint64_t hops = o->echo ? 1 : 2;
	int64_t t0 = 0;

	r.pad = g_malloc((gsize)o->payload + 1);
	memset(r.pad, 'x', (size_t)o->payload);
	samples_init(&r.lat, (size_t)o->pairs * (size_t)o->messages);
	r.cr = crowd_new(l, &spec, &relay_ops, &r, b->counts);
	b->completed = wait_idle(b, idle, &hr) && open_crowd(b, l, r.cr);
	if (b->completed) {
		relay_start_phase(&r, (unsigned)o->warmup, false);
		if (wsloop_run(l, relay_phase_done, NULL, &r, 100, b->deadline) < 0)
			b->completed = false;
	}
	if (b->completed) {
		sample_server(b, &b->before);
		t0 = wsloop_now();
		relay_start_phase(&r, (unsigned)o->messages, true);
		if (wsloop_run(l, relay_phase_done, NULL, &r, 100, b->deadline) < 0)
			b->completed = false;
		sample_server(b, &b->after);
	}
	uint64_t round_trips = r.lat.n;
	static const char *const names[] = { "pairs", "payload", "window", "messages", "warmup",
					     "idle", "room_size" };
	const gint values[] = { o->pairs, o->payload, o->window, o->messages, o->warmup, o->idle,
				o->room_size };
	json_object_object_add(b->out, "params", params_of(b, names, values, G_N_ELEMENTS(names)));
	crowd_free(r.cr);
	r.cr = NULL;
	holders_stop(idle, b->counts);
	report_common(b, o->echo ? "echoed message" : "routed message", round_trips * hops,
		      t0 && r.t_done > t0 ? r.t_done - t0 : 0);
	json_object_object_add(b->out, "round_trips", json_object_new_int64((int64_t)round_trips));
	json_object_object_add(b->out, "latency_us", samples_report(&r.lat));
	human_line(b, "msg", &r.lat);

	wsloop_free(l);
	samples_free(&r.lat);
	g_free(r.pad);
	g_string_free(r.msg, TRUE);
	return 0;
}

/* ---- connections ---- */

static int run_connections(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *ids = prefix(b, "conn"), *rooms = prefix(b, "connroom");
	struct holders_result hr;

	sample_server(b, &b->before);
	struct holders *h = start_idle(b, (unsigned)o->peers, META_WORKER, ids, rooms,
				       (unsigned)o->room_size, true);
	b->completed = wait_idle(b, h, &hr);
	sample_server(b, &b->after);

	static const char *const names[] = { "peers", "room_size", "procs" };
	const gint values[] = { o->peers, o->room_size, (gint)hr.procs };
	json_object_object_add(b->out, "params", params_of(b, names, values, G_N_ELEMENTS(names)));
	holders_stop(h, b->counts);
	report_common(b, "registration", hr.ready, hr.t_last - hr.t_first);
	if (b->after.ok && hr.ready)
		json_object_object_add(b->out, "rss_bytes_per_peer",
				       json_object_new_double((double)(b->after.rss_kib - b->before.rss_kib) *
							      1024.0 / hr.ready));
	human_line(b, "registration", NULL);
	if (b->after.ok && hr.ready)
		fprintf(stderr, "connections: daemon RSS %ld -> %ld KiB, %.0f bytes per peer\n",
			b->before.rss_kib, b->after.rss_kib,
			(double)(b->after.rss_kib - b->before.rss_kib) * 1024.0 / hr.ready);
	return 0;
}

/* ---- discovery ---- */

struct discovery {
	struct bench *b;
	struct crowd *cr;
	unsigned per_client, clients_done;
	bool measuring;
	int64_t t_done;
	uint64_t results;
	struct samples lat;
	GString *msg;
};

static void discovery_send(struct discovery *d, struct member *m)
{
	/* Clients take turns through the filters. */
	workload_discover((unsigned)m->seq + m->idx, (unsigned)d->b->o.limit, d->msg);
	m->t_sent = wsloop_now();
	m->seq++;
	crowd_send(d->cr, m, "discover_peers", d->msg->str, d->msg->len);
}

static void discovery_start_phase(struct discovery *d, unsigned per_client, bool measuring)
{
	d->per_client = per_client;
	d->clients_done = 0;
	d->measuring = measuring;
	for (unsigned i = 0; i < d->cr->spec.count; i++) {
		struct member *m = &d->cr->members[i];
		m->seq = 0;
		if (per_client)
			discovery_send(d, m);
		else
			d->clients_done++;
	}
}

static bool discovery_phase_done(void *data)
{
	struct discovery *d = data;
	return d->clients_done >= d->cr->spec.count;
}

static void discovery_message(struct crowd *cr, struct member *m, const char *type,
			      const char *text, size_t len)
{
	struct discovery *d = cr->user;
	static const char key[] = "\"count\":";

	if (strcmp(type, "peer_list") != 0 && strcmp(type, "error") != 0)
		return;
	int64_t now = wsloop_now();
	if (d->measuring) {
		samples_add(&d->lat, now - m->t_sent);
		/* "count" is the reply's last field. */
		const char *p = len > 32 ? memmem(text + len - 32, 32, key, sizeof key - 1) : NULL;
		if (p)
			d->results += g_ascii_strtoull(p + sizeof key - 1, NULL, 10);
	}
	if (m->seq < d->per_client) {
		discovery_send(d, m);
	} else {
		d->clients_done++;
		d->t_done = now;
	}
}

static void discovery_closed(struct crowd *cr, struct member *m, const char *why, int code)
{
	struct discovery *d = cr->user;
	d->b->completed = false;
	d->clients_done++;
}

static const struct crowd_ops discovery_ops = {
	.message = discovery_message,
	.closed = discovery_closed,
};

static int run_discovery(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *room = g_strdup_printf("%s-disc", o->run_id);
	g_autofree char *ids = prefix(b, "member"), *cids = prefix(b, "seeker");
	struct holders_result hr;
	struct holders *h = start_idle(b, (unsigned)o->peers, META_VARIED, ids, room, 0, true);
	struct wsloop *l = wsloop_new();
	struct discovery d = { .b = b, .msg = g_string_new(NULL) };
	struct crowd_spec spec = {
		.target = &b->target, .count = (unsigned)o->clients, .do_register = true,
		.kind = META_CLIENT, .id_prefix = cids, .room_prefix = room,
		.max_active = (unsigned)o->max_pending,
	};
	unsigned per_client = ((unsigned)o->queries + (unsigned)o->clients - 1) / (unsigned)o->clients;
	int64_t t0 = 0;

	samples_init(&d.lat, (size_t)per_client * (size_t)o->clients);
	d.cr = crowd_new(l, &spec, &discovery_ops, &d, b->counts);
	b->completed = wait_idle(b, h, &hr) && open_crowd(b, l, d.cr);
	if (b->completed) {
		discovery_start_phase(&d, (unsigned)o->warmup, false);
		if (wsloop_run(l, discovery_phase_done, NULL, &d, 100, b->deadline) < 0)
			b->completed = false;
	}
	if (b->completed) {
		sample_server(b, &b->before);
		t0 = wsloop_now();
		discovery_start_phase(&d, per_client, true);
		if (wsloop_run(l, discovery_phase_done, NULL, &d, 100, b->deadline) < 0)
			b->completed = false;
		sample_server(b, &b->after);
	}
	static const char *const names[] = { "peers", "clients", "queries", "warmup", "limit" };
	const gint values[] = { o->peers, o->clients, (gint)(per_client * (unsigned)o->clients),
				o->warmup, o->limit };
	json_object_object_add(b->out, "params", params_of(b, names, values, G_N_ELEMENTS(names)));
	crowd_free(d.cr);
	holders_stop(h, b->counts);
	report_common(b, "query", d.lat.n, t0 && d.t_done > t0 ? d.t_done - t0 : 0);
	json_object_object_add(b->out, "latency_us", samples_report(&d.lat));
	json_object_object_add(b->out, "results_per_query",
			       json_object_new_double(d.lat.n ? (double)d.results / (double)d.lat.n : 0));
	human_line(b, "query", &d.lat);

	wsloop_free(l);
	samples_free(&d.lat);
	g_string_free(d.msg, TRUE);
	return 0;
}

/* ---- churn ---- */

struct churn {
	struct bench *b;
	struct crowd *cr;
	struct samples lat; /* connect to close, per session */
	unsigned done;
	long rss_peak;
	GString *msg;
};

static void churn_ready(struct crowd *cr, struct member *m)
{
	struct churn *c = cr->user;
	workload_discover(0, 0, c->msg);
	crowd_send(cr, m, "discover_peers", c->msg->str, c->msg->len);
}

static void churn_message(struct crowd *cr, struct member *m, const char *type, const char *text,
			  size_t len)
{
	if (strcmp(type, "peer_list") != 0 && strcmp(type, "error") != 0)
		return;
	counts_add(cr->counts, "sent", "close", 1);
	wsconn_close(m->conn, 1000);
}

static void churn_closed(struct crowd *cr, struct member *m, const char *why, int code)
{
	struct churn *c = cr->user;
	if (!why) {
		samples_add(&c->lat, wsloop_now() - m->t_open);
		c->done++;
	}
}

static bool churn_finished(void *data)
{
	struct churn *c = data;
	return c->cr->started == c->cr->spec.count && c->cr->active == 0;
}

static void churn_tick(void *data)
{
	struct churn *c = data;
	struct proc_sample s;
	if (proc_sample(c->b->o.server_pid, &s) == 0)
		c->rss_peak = MAX(c->rss_peak, s.rss_kib);
}

static const struct crowd_ops churn_ops = {
	.ready = churn_ready,
	.message = churn_message,
	.closed = churn_closed,
};

/* RSS once the server has settled: stable over 300 ms, or after 2 s. */
static long settled_rss(pid_t pid)
{
	struct proc_sample s;
	long last = -1;
	int stable = 0;

	for (int i = 0; i < 20 && stable < 3; i++) {
		g_usleep(100000);
		if (proc_sample(pid, &s) < 0)
			return -1;
		stable = s.rss_kib == last ? stable + 1 : 0;
		last = s.rss_kib;
	}
	return last;
}

static int run_churn(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *room = g_strdup_printf("%s-churn", o->run_id);
	g_autofree char *ids = prefix(b, "resident"), *cids = prefix(b, "visitor");
	struct holders_result hr;
	struct holders *h = start_idle(b, (unsigned)o->idle, META_WORKER, ids, room, 0, true);
	struct wsloop *l = wsloop_new();
	struct churn c = { .b = b, .msg = g_string_new(NULL) };
	struct crowd_spec spec = {
		.target = &b->target, .count = (unsigned)o->sessions, .do_register = true,
		.kind = META_CLIENT, .id_prefix = cids, .room_prefix = room,
		.max_active = (unsigned)o->concurrency, .active_until_closed = true,
	};
	int64_t t0 = 0, t1 = 0;
	long rss_end = -1;

	samples_init(&c.lat, (size_t)o->sessions);
	c.cr = crowd_new(l, &spec, &churn_ops, &c, b->counts);
	b->completed = wait_idle(b, h, &hr);
	if (b->completed) {
		sample_server(b, &b->before);
		c.rss_peak = b->before.rss_kib;
		t0 = wsloop_now();
		crowd_pump(c.cr);
		if (wsloop_run(l, churn_finished, churn_tick, &c, RSS_TICK_MS, b->deadline) < 0)
			b->completed = false;
		t1 = wsloop_now();
		sample_server(b, &b->after);
		c.rss_peak = MAX(c.rss_peak, b->after.rss_kib);
		rss_end = settled_rss(o->server_pid);
		if (c.done < (unsigned)o->sessions)
			b->completed = false;
	}
	static const char *const names[] = { "sessions", "concurrency", "idle" };
	const gint values[] = { o->sessions, o->concurrency, o->idle };
	json_object_object_add(b->out, "params", params_of(b, names, values, G_N_ELEMENTS(names)));
	crowd_free(c.cr);
	holders_stop(h, b->counts);
	report_common(b, "session", c.done, t1 - t0);
	json_object_object_add(b->out, "latency_us", samples_report(&c.lat));
	if (b->before.ok && rss_end >= 0) {
		/* glibc keeps some freed memory; within this much counts as
		 * returned. */
		long tolerance = MAX(256, (c.rss_peak - b->before.rss_kib) / 10);
		json_object *m = json_object_new_object();
		json_object_object_add(m, "baseline_kib", json_object_new_int64(b->before.rss_kib));
		json_object_object_add(m, "peak_kib", json_object_new_int64(c.rss_peak));
		json_object_object_add(m, "end_kib", json_object_new_int64(rss_end));
		json_object_object_add(m, "tolerance_kib", json_object_new_int64(tolerance));
		json_object_object_add(m, "returned_to_baseline",
				       json_object_new_boolean(rss_end - b->before.rss_kib <= tolerance));
		json_object_object_add(b->out, "rss", m);
		fprintf(stderr, "churn: daemon RSS baseline %ld KiB, peak %ld KiB, end %ld KiB\n",
			b->before.rss_kib, c.rss_peak, rss_end);
	}
	human_line(b, "session", &c.lat);

	wsloop_free(l);
	samples_free(&c.lat);
	g_string_free(c.msg, TRUE);
	return 0;
}

/* ---- options ---- */

struct bound {
	const char *name;
	gint *v;
	gint def, min, max;
};

static int apply_bounds(struct bound *bs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (*bs[i].v < 0)
			*bs[i].v = bs[i].def;
		if (*bs[i].v < bs[i].min || *bs[i].v > bs[i].max) {
			fprintf(stderr, "rtcsignal-bench: --%s must be within %d..%d\n", bs[i].name,
				bs[i].min, bs[i].max);
			return -1;
		}
	}
	return 0;
}

static int check_options(struct opts *o)
{
	bool relay = strcmp(o->scenario, "relay") == 0, disc = strcmp(o->scenario, "discovery") == 0;
	bool conns = strcmp(o->scenario, "connections") == 0, churn = strcmp(o->scenario, "churn") == 0;
	struct bound common[] = {
		{ "deadline", &o->deadline, 120, 1, 3600 },
		{ "sources", &o->sources, 4, 0, WORKLOAD_MAX_SOURCES },
		{ "max-pending", &o->max_pending, 256, 1, 4096 },
		{ "procs", &o->procs, 0, 0, 64 },
		{ "room-size", &o->room_size, 20, 1, 100000 },
		{ "pairs", &o->pairs, 50, 1, 10000 },
		{ "payload", &o->payload, 1024, 64, 512 * 1024 },
		{ "window", &o->window, 8, 1, 1024 },
		{ "messages", &o->messages, 2000, 1, 10000000 },
		{ "idle", &o->idle, relay ? 2000 : 20, 0, 200000 },
		{ "peers", &o->peers, disc ? 1000 : 5000, 1, 200000 },
		{ "clients", &o->clients, 4, 1, 1000 },
		{ "queries", &o->queries, 2000, 1, 10000000 },
		{ "limit", &o->limit, 0, 0, 1000 },
		{ "sessions", &o->sessions, 2000, 1, 10000000 },
		{ "concurrency", &o->concurrency, 16, 1, 4096 },
		{ "warmup", &o->warmup, relay ? 100 : 10, 0, 1000000 },
	};

	if (!relay && !disc && !conns && !churn) {
		fprintf(stderr, "rtcsignal-bench: unknown scenario '%s' (relay, connections, discovery, churn)\n",
			o->scenario);
		return -1;
	}
	if (o->echo && !relay) {
		fprintf(stderr, "rtcsignal-bench: --echo applies to the relay scenario only\n");
		return -1;
	}
	if (apply_bounds(common, G_N_ELEMENTS(common)) < 0)
		return -1;
	if (relay && (uint64_t)o->pairs * (uint64_t)o->messages > 50000000) {
		fprintf(stderr, "rtcsignal-bench: --pairs x --messages must stay within 50,000,000\n");
		return -1;
	}
	return 0;
}

int main(int argc, char *argv[])
{
	struct bench b = { 0 };
	struct opts *o = &b.o;
	g_autoptr(GError) err = NULL;
	int rc;

	*o = (struct opts){ .server_pid = 0, .deadline = -1, .sources = -1, .max_pending = -1,
			    .procs = -1, .room_size = -1, .pairs = -1, .payload = -1, .window = -1,
			    .messages = -1, .warmup = -1, .idle = -1, .peers = -1, .clients = -1,
			    .queries = -1, .limit = -1, .sessions = -1, .concurrency = -1 };
	const GOptionEntry entries[] = {
		{ "server", 's', 0, G_OPTION_ARG_STRING, &o->server, "Server to load, ADDR:PORT on loopback (required)", "ADDR:PORT" },
		{ "server-pid", 'p', 0, G_OPTION_ARG_INT, &o->server_pid, "Its pid, for CPU time and RSS from /proc", "PID" },
		{ "deadline", 0, 0, G_OPTION_ARG_INT, &o->deadline, "Hard limit for the whole scenario (120)", "SECS" },
		{ "sources", 0, 0, G_OPTION_ARG_INT, &o->sources, "Source addresses 127.0.1.1..N to spread connections over (4; 0: none)", "N" },
		{ "max-pending", 0, 0, G_OPTION_ARG_INT, &o->max_pending, "Connections being opened at once, per process (256)", "N" },
		{ "procs", 0, 0, G_OPTION_ARG_INT, &o->procs, "Worker processes holding idle peers (0: as the fd limit needs)", "N" },
		{ "room-size", 0, 0, G_OPTION_ARG_INT, &o->room_size, "Idle/connections peers per room (20)", "N" },
		{ "run-id", 0, 0, G_OPTION_ARG_STRING, &o->run_id, "Prefix of every peer and room id (b<pid>)", "ID" },
		{ "pairs", 0, 0, G_OPTION_ARG_INT, &o->pairs, "relay: client/worker pairs (50)", "N" },
		{ "payload", 0, 0, G_OPTION_ARG_INT, &o->payload, "relay: payload bytes (1024)", "BYTES" },
		{ "window", 0, 0, G_OPTION_ARG_INT, &o->window, "relay: messages in flight per pair (8)", "W" },
		{ "messages", 0, 0, G_OPTION_ARG_INT, &o->messages, "relay: measured round trips per pair (2000)", "M" },
		{ "warmup", 0, 0, G_OPTION_ARG_INT, &o->warmup, "relay, discovery: unmeasured round trips per pair/client first (100, 10)", "N" },
		{ "idle", 0, 0, G_OPTION_ARG_INT, &o->idle, "relay, churn: idle registered peers (2000, 20)", "K" },
		{ "echo", 0, 0, G_OPTION_ARG_NONE, &o->echo, "relay: the server is bench/echo-floor (one hop, no registration)", NULL },
		{ "peers", 0, 0, G_OPTION_ARG_INT, &o->peers, "connections: peers (5000); discovery: peers in the room (1000)", "N" },
		{ "clients", 0, 0, G_OPTION_ARG_INT, &o->clients, "discovery: clients querying, one query each in flight (4)", "N" },
		{ "queries", 0, 0, G_OPTION_ARG_INT, &o->queries, "discovery: measured queries in all (2000)", "N" },
		{ "limit", 0, 0, G_OPTION_ARG_INT, &o->limit, "discovery: \"limit\" sent with each query (0: none)", "N" },
		{ "sessions", 0, 0, G_OPTION_ARG_INT, &o->sessions, "churn: sessions (2000)", "N" },
		{ "concurrency", 0, 0, G_OPTION_ARG_INT, &o->concurrency, "churn: sessions at once (16)", "N" },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new("relay|connections|discovery|churn");

	g_option_context_set_summary(ctx, "Load generator for rtcsignald: one scenario, one JSON object on stdout.");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "rtcsignal-bench: %s\n", err->message);
		return EXIT_USAGE;
	}
	if (argc != 2 || !o->server) {
		fprintf(stderr, "usage: rtcsignal-bench relay|connections|discovery|churn --server ADDR:PORT [OPTION...]\n");
		return EXIT_USAGE;
	}
	o->scenario = argv[1];
	if (check_options(o) < 0)
		return EXIT_USAGE;
	int r = target_parse(o->server, (unsigned)o->sources, &b.target);
	if (r < 0) {
		fprintf(stderr, "rtcsignal-bench: --server %s: %s\n", o->server,
			r == -EPERM ? "not a loopback address (127.0.0.0/8 or ::1 only)" : "not ADDR:PORT");
		return EXIT_USAGE;
	}
	if (!o->run_id)
		o->run_id = g_strdup_printf("b%d", (int)getpid());
	signal(SIGPIPE, SIG_IGN);
	b.deadline = wsloop_now() + (int64_t)o->deadline * NS;
	b.counts = counts_new();
	b.out = json_object_new_object();

	if (strcmp(o->scenario, "relay") == 0)
		rc = run_relay(&b);
	else if (strcmp(o->scenario, "connections") == 0)
		rc = run_connections(&b);
	else if (strcmp(o->scenario, "discovery") == 0)
		rc = run_discovery(&b);
	else
		rc = run_churn(&b);
	report_print(b.out);
	if (rc == 0 && (!b.completed || error_total(b.counts)))
		rc = 1;
	json_object_put(b.out);
	json_object_put(b.counts);
	g_free(o->server);
	g_free(o->run_id);
	return rc;
}
