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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
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
	gint pairs, payload, window, messages, warmup, idle, rate;
	gboolean echo;
	/* connections, discovery */
	gint peers, clients, queries, limit;
	/* churn */
	gint sessions, concurrency;
	/* watch */
	gint watchers, watches, updaters, updates, toggles;
	char *admin;
};

struct bench {
	struct opts o;
	struct target target;
	struct target admin; /* the daemon's admin port, when given */
	int64_t deadline;
	json_object *counts;
	json_object *out;
	struct proc_sample before, after;
	int64_t self_before, self_after; /* this process's CPU time, us */
	bool completed;
};

/* ---- common ---- */

static int64_t self_cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

/* The server's CPU and RSS, and our own CPU time, at the start (S is
 * &b->before) or end of the measured phase. */
static void sample_server(struct bench *b, struct proc_sample *s)
{
	proc_sample(b->o.server_pid, s);
	*(s == &b->before ? &b->self_before : &b->self_after) = self_cpu_us();
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
	/* What the measuring process spent (worker processes holding idle
	 * peers are not in it): the generator competes for the same cores. */
	json_object_object_add(o, "generator_cpu_us_per_op",
			       json_object_new_double(ops ? (double)(b->self_after - b->self_before) / (double)ops : 0));
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
		g_string_append(s, ", INCOMPLETE");
	fprintf(stderr, "%s\n", s->str);
	g_string_free(s, TRUE);
}

static char *prefix(struct bench *b, const char *what)
{
	return g_strdup_printf("%s-%s-", b->o.run_id, what);
}

/* ---- what the scenarios share ---- */

/* Peers held by worker processes, this process's loop and the crowd it
 * drives. */
struct stage {
	struct bench *b;
	struct holders *idle;
	struct holders_result hr;
	struct wsloop *loop;
	struct crowd *cr;
};

static bool crowd_settled_cb(void *cr)
{
	return crowd_settled(cr);
}

static void crowd_expire_cb(void *cr)
{
	crowd_expire(cr);
}

/* Starts the peers of IDLE (if any: before this process opens a socket,
 * as the workers inherit none) and a loop with the crowd SPEC; true once
 * the idle peers are ready, and the crowd too when OPEN. */
static bool stage_setup(struct stage *st, struct bench *b, const struct crowd_spec *idle,
			const struct crowd_spec *spec, const struct crowd_ops *ops, void *user,
			bool open)
{
	struct holders_result *r = &st->hr;

	memset(st, 0, sizeof *st);
	st->b = b;
	if (idle && idle->count)
		st->idle = holders_start(idle, (unsigned)MAX(b->o.procs, 0), b->deadline);
	st->loop = wsloop_new();
	st->cr = crowd_new(st->loop, spec, ops, user, b->counts);
	if (st->idle) {
		holders_wait_ready(st->idle, b->deadline, r);
		json_object *g = json_object_new_object();
		json_object_object_add(g, "procs", json_object_new_int((int)r->procs));
		json_object_object_add(g, "ready", json_object_new_int((int)r->ready));
		json_object_object_add(g, "failed", json_object_new_int((int)r->failed));
		json_object_object_add(b->out, "held_peers", g);
		if (r->timed_out || r->failed) {
			fprintf(stderr, "%s: %u held peers ready, %u failed%s\n", b->o.scenario,
				r->ready, r->failed, r->timed_out ? ", deadline passed" : "");
			return false;
		}
	}
	if (!open)
		return true;
	crowd_pump(st->cr);
	if (wsloop_run(st->loop, crowd_settled_cb, crowd_expire_cb, st->cr, 100, b->deadline) < 0)
		crowd_deadline(st->cr);
	if (st->cr->ready < spec->count) {
		fprintf(stderr, "%s: %u of %u peers ready\n", b->o.scenario, st->cr->ready, spec->count);
		return false;
	}
	return true;
}

/* Closes every connection and collects the workers' counts: before the
 * report. */
static void stage_finish(struct stage *st)
{
	crowd_free(st->cr);
	st->cr = NULL;
	holders_stop(st->idle, st->b->counts);
	st->idle = NULL;
}

/* Ends a scenario: its parameters (NAMES and VALUES), the connections
 * closed and the workers' counts in, then the common report with LAT (if
 * any) and the human line. */
static void stage_report(struct stage *st, const char *const *names, const gint *values, size_t n,
			 const char *op, const char *unit, uint64_t ops, int64_t elapsed,
			 struct samples *lat)
{
	struct bench *b = st->b;

	json_object_object_add(b->out, "params", params_of(b, names, values, n));
	stage_finish(st);
	report_common(b, op, ops, elapsed);
	if (lat)
		json_object_object_add(b->out, "latency_us", samples_report(lat));
	human_line(b, unit, lat);
}

static void stage_free(struct stage *st)
{
	stage_finish(st);
	wsloop_free(st->loop);
}

/* COUNT peers of KIND in rooms of ROOM_SIZE (0: all in room ROOM_PREFIX),
 * opened max_pending at a time. */
static struct crowd_spec peers_spec(struct bench *b, unsigned count, enum meta_kind kind,
				   const char *id_prefix, const char *room_prefix,
				   unsigned room_size, bool do_register)
{
	return (struct crowd_spec){
		.target = &b->target, .count = count, .do_register = do_register, .kind = kind,
		.id_prefix = id_prefix, .room_prefix = room_prefix, .room_size = room_size,
		.max_active = (unsigned)b->o.max_pending,
	};
}

/* A phase: every driving member (every STRIDE-th of the crowd) completes
 * PER_MEMBER operations, KICK starting each member's first ones and the
 * next one after each completes (closed loop).  Without KICK the members
 * send on a schedule of their own (open loop), which START, if given, sets
 * up once the members are reset. */
struct phase {
	struct stage *st;
	unsigned stride;
	void (*kick)(void *data, struct member *m);
	void (*start)(void *data);
	void *data;
	unsigned per_member, members_done;
	bool measuring;
	int64_t t_done; /* the last member's last operation */
	struct samples lat;
};

static void phase_start(struct phase *p, unsigned per_member, bool measuring)
{
	struct crowd *cr = p->st->cr;

	p->per_member = per_member;
	p->members_done = 0;
	p->measuring = measuring;
	for (unsigned i = 0; i < cr->spec.count; i += p->stride) {
		struct member *m = &cr->members[i];
		m->seq = 0;
		m->inflight = 0;
		if (!per_member)
			p->members_done++;
		else if (p->kick)
			p->kick(p->data, m);
	}
	if (p->start)
		p->start(p->data);
}

static bool phase_done(void *data)
{
	struct phase *p = data;
	return p->members_done >= p->st->cr->spec.count / p->stride;
}

/* Member M finished an operation at NOW: its next one, or it is done. */
static void phase_step(struct phase *p, struct member *m, int64_t now)
{
	if (m->seq < p->per_member) {
		if (p->kick)
			p->kick(p->data, m);
	} else if (!m->inflight) {
		p->members_done++;
		p->t_done = now;
	}
}

/* A broken member cannot finish: count it done so that the phase ends,
 * and report the run incomplete. */
static void phase_member_lost(struct phase *p, struct member *m)
{
	p->st->b->completed = false;
	if (m->idx % p->stride == 0 && (m->seq < p->per_member || m->inflight))
		p->members_done++;
}

/* crowd_ops.closed of the scenarios whose user data starts with a phase. */
static void phase_closed(struct crowd *cr, struct member *m, const char *why, int code)
{
	phase_member_lost(cr->user, m);
}

/* WARMUP operations per member unmeasured, then MEASURED ones between two
 * samples of the server; the measured phase's duration (0 if not run). */
static int64_t phase_run(struct phase *p, unsigned warmup, unsigned measured)
{
	struct bench *b = p->st->b;
	int64_t t0;

	phase_start(p, warmup, false);
	if (wsloop_run(p->st->loop, phase_done, NULL, p, 100, b->deadline) < 0) {
		b->completed = false;
		return 0;
	}
	sample_server(b, &b->before);
	t0 = wsloop_now();
	phase_start(p, measured, true);
	if (wsloop_run(p->st->loop, phase_done, NULL, p, 100, b->deadline) < 0)
		b->completed = false;
	sample_server(b, &b->after);
	return p->t_done > t0 ? p->t_done - t0 : 0;
}

/* ---- relay ---- */

/* Open loop (--rate N): round trip J of a phase (J counts over every pair)
 * is due at t0 + J / N seconds and belongs to pair J % pairs, so each pair
 * sends every pairs / N seconds and the pairs' schedules are 1 / N apart.
 * A round trip is sent when due whether or not the replies to the earlier
 * ones came, unless its pair has --window in flight: then it is "late",
 * skipped and counted. */
struct pacer {
	int64_t rate;      /* round trips per second in all, 0: closed loop */
	int64_t t0;        /* when round trip 0 of the phase is due */
	uint64_t next;     /* the next round trip to send */
	uint64_t total;    /* round trips of the phase */
	uint64_t sent, late;
	int64_t t_last;    /* when the last one due was sent or skipped */
	int64_t lag_sum, lag_max; /* sent minus due, ns */
};

struct relay {
	struct phase phase; /* first: see phase_closed() */
	struct bench *b;
	struct crowd *cr;
	struct pacer pace;
	char *pad;
	GString *msg;
};

static enum meta_kind relay_kind(unsigned idx)
{
	return idx % 2 ? META_WORKER : META_CLIENT;
}

/* Member 2i (a client) pings member 2i+1 (a worker); the payload
 * carries T, the time the round trip is measured from. */
static void relay_send(struct relay *r, struct member *a, int64_t t)
{
	char from[96], to[96];
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

static void relay_kick(void *data, struct member *a)
{
	struct relay *r = data;
	while (a->seq < r->phase.per_member && a->inflight < (unsigned)r->b->o.window)
		relay_send(r, a, wsloop_now());
}

static int64_t pace_due(const struct pacer *pc, uint64_t j)
{
	return pc->t0 + (int64_t)(j * (uint64_t)NS / (uint64_t)pc->rate);
}

/* The timer: sends every round trip that is due (stamped with the time it
 * was due, not the time it leaves: a generator that falls behind adds to
 * the latency instead of hiding it), then waits for the next. */
static void relay_pace(void *data)
{
	struct relay *r = data;
	struct pacer *pc = &r->pace;
	unsigned pairs = (unsigned)r->b->o.pairs;
	int64_t now = wsloop_now();

	while (pc->next < pc->total) {
		int64_t due = pace_due(pc, pc->next);
		if (due > now && due > (now = wsloop_now()))
			break;
		struct member *a = &r->cr->members[2 * (pc->next % pairs)];
		pc->next++;
		pc->t_last = now;
		if (!a->conn) { /* lost: phase_member_lost() counted it */
			a->seq++;
			continue;
		}
		if (a->inflight >= (unsigned)r->b->o.window) {
			a->seq++;
			pc->late++;
			continue;
		}
		relay_send(r, a, due);
		pc->sent++;
		pc->lag_sum += now - due;
		pc->lag_max = MAX(pc->lag_max, now - due);
	}
	if (pc->next < pc->total)
		wsloop_timer(r->cr->loop, pace_due(pc, pc->next), relay_pace, r);
}

/* phase.start in open loop: the schedule starts now. */
static void relay_pace_start(void *data)
{
	struct relay *r = data;
	struct pacer *pc = &r->pace;

	*pc = (struct pacer){ .rate = pc->rate, .t0 = wsloop_now(),
			      .total = (uint64_t)r->b->o.pairs * r->phase.per_member };
	relay_pace(r);
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
	if (r->phase.measuring)
		samples_add(&r->phase.lat, now - g_ascii_strtoll(p + sizeof key - 1, NULL, 10));
	m->inflight--;
	phase_step(&r->phase, m, now);
}

static const struct crowd_ops relay_ops = {
	.message = relay_message,
	.closed = phase_closed,
};

/* The open loop's figures (of the measured phase): "pacing" in the JSON
 * and a second human line. */
static void report_pacing(struct bench *b, const struct pacer *pc)
{
	json_object *o = json_object_new_object();
	/* From the first round trip due to the last one sent or skipped, plus
	 * one interval: exactly the target when every one left on time. */
	int64_t span = pc->next ? pc->t_last - pc->t0 + NS / pc->rate : 0;
	double achieved = span > 0 ? (double)pc->sent * NS / (double)span : 0;
	double lag_mean = pc->sent ? (double)pc->lag_sum / (double)pc->sent / 1000 : 0;

	json_object_object_add(o, "target_per_s", json_object_new_int64(pc->rate));
	json_object_object_add(o, "achieved_per_s", json_object_new_double(achieved));
	json_object_object_add(o, "interval_us",
			       json_object_new_double((double)b->o.pairs * 1e6 / (double)pc->rate));
	json_object_object_add(o, "scheduled", json_object_new_int64((int64_t)pc->total));
	json_object_object_add(o, "due", json_object_new_int64((int64_t)pc->next));
	json_object_object_add(o, "sent", json_object_new_int64((int64_t)pc->sent));
	json_object_object_add(o, "late", json_object_new_int64((int64_t)pc->late));
	json_object_object_add(o, "send_lag_mean_us", json_object_new_double(lag_mean));
	json_object_object_add(o, "send_lag_max_us", json_object_new_double((double)pc->lag_max / 1000));
	json_object_object_add(b->out, "pacing", o);
	fprintf(stderr, "relay: open loop at %" G_GINT64_FORMAT " round trips/s: %.0f/s achieved, "
		"%" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " late (window full), send lag mean %.0f us max %.0f us\n",
		pc->rate, achieved, pc->late, pc->total, lag_mean, (double)pc->lag_max / 1000);
}

static int run_relay(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *idle_ids = prefix(b, "idle"), *idle_rooms = prefix(b, "idleroom");
	g_autofree char *ids = prefix(b, "pair"), *rooms = prefix(b, "pairroom");
	struct stage st;
	struct relay r = { .b = b, .msg = g_string_sized_new((gsize)o->payload + 256) };
	struct crowd_spec idle = peers_spec(b, (unsigned)o->idle, META_WORKER, idle_ids, idle_rooms,
					   (unsigned)o->room_size, !o->echo);
	struct crowd_spec spec = peers_spec(b, 2 * (unsigned)o->pairs, META_CLIENT, ids, rooms, 2, !o->echo);
	uint64_t hops = o->echo ? 1 : 2;
	int64_t elapsed = 0;

	spec.kind_of = relay_kind; /* clients and workers in turn */
	r.pad = g_malloc((gsize)o->payload + 1);
	memset(r.pad, 'x', (size_t)o->payload);
	r.phase = (struct phase){ .st = &st, .stride = 2, .kick = relay_kick, .data = &r };
	if (o->rate) {
		r.pace.rate = o->rate;
		r.phase.kick = NULL;
		r.phase.start = relay_pace_start;
	}
	samples_init(&r.phase.lat, (size_t)o->pairs * (size_t)o->messages);
	b->completed = stage_setup(&st, b, &idle, &spec, &relay_ops, &r, true);
	r.cr = st.cr;
	if (b->completed)
		elapsed = phase_run(&r.phase, (unsigned)o->warmup, (unsigned)o->messages);
	wsloop_timer(st.loop, 0, NULL, NULL); /* a phase cut short by the deadline */
	static const char *const names[] = { "pairs", "payload", "window", "messages", "warmup",
					     "idle", "room_size", "rate" };
	const gint values[] = { o->pairs, o->payload, o->window, o->messages, o->warmup, o->idle,
				o->room_size, o->rate };
	uint64_t round_trips = r.phase.lat.n;
	stage_report(&st, names, values, G_N_ELEMENTS(names),
		     o->echo ? "echoed message" : "routed message", "msg", round_trips * hops, elapsed,
		     &r.phase.lat);
	json_object_object_add(b->out, "round_trips", json_object_new_int64((int64_t)round_trips));
	if (o->rate)
		report_pacing(b, &r.pace);

	stage_free(&st);
	samples_free(&r.phase.lat);
	g_free(r.pad);
	g_string_free(r.msg, TRUE);
	return 0;
}

/* ---- connections ---- */

static int run_connections(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *ids = prefix(b, "conn"), *rooms = prefix(b, "connroom");
	struct crowd_spec peers = peers_spec(b, (unsigned)o->peers, META_WORKER, ids, rooms,
					    (unsigned)o->room_size, true);
	struct crowd_spec none = { .target = &b->target };
	struct stage st;

	sample_server(b, &b->before);
	b->completed = stage_setup(&st, b, &peers, &none, NULL, NULL, false);
	sample_server(b, &b->after);

	static const char *const names[] = { "peers", "room_size", "procs" };
	const gint values[] = { o->peers, o->room_size, (gint)st.hr.procs };
	stage_report(&st, names, values, G_N_ELEMENTS(names), "registration", "registration",
		     st.hr.ready, st.hr.t_last - st.hr.t_first, NULL);
	if (b->after.ok && st.hr.ready) {
		double per_peer = (double)(b->after.rss_kib - b->before.rss_kib) * 1024.0 / st.hr.ready;
		json_object_object_add(b->out, "rss_bytes_per_peer", json_object_new_double(per_peer));
		fprintf(stderr, "connections: daemon RSS %ld -> %ld KiB, %.0f bytes per peer\n",
			b->before.rss_kib, b->after.rss_kib, per_peer);
	}
	stage_free(&st);
	return 0;
}

/* ---- discovery ---- */

struct discovery {
	struct phase phase; /* first: see phase_closed() */
	struct bench *b;
	uint64_t results;
	GString *msg;
};

static void discovery_kick(void *data, struct member *m)
{
	struct discovery *d = data;
	/* Clients take turns through the filters. */
	workload_discover((unsigned)m->seq + m->idx, (unsigned)d->b->o.limit, d->msg);
	m->t_sent = wsloop_now();
	m->seq++;
	crowd_send(m->crowd, m, "discover_peers", d->msg->str, d->msg->len);
}

static void discovery_message(struct crowd *cr, struct member *m, const char *type,
			      const char *text, size_t len)
{
	struct discovery *d = cr->user;
	static const char key[] = "\"count\":";

	if (strcmp(type, "peer_list") != 0 && strcmp(type, "error") != 0)
		return;
	int64_t now = wsloop_now();
	if (d->phase.measuring) {
		samples_add(&d->phase.lat, now - m->t_sent);
		/* "count" is the reply's last field. */
		const char *p = len > 32 ? memmem(text + len - 32, 32, key, sizeof key - 1) : NULL;
		if (p)
			d->results += g_ascii_strtoull(p + sizeof key - 1, NULL, 10);
	}
	phase_step(&d->phase, m, now);
}

static const struct crowd_ops discovery_ops = {
	.message = discovery_message,
	.closed = phase_closed,
};

static int run_discovery(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *room = g_strdup_printf("%s-disc", o->run_id);
	g_autofree char *ids = prefix(b, "member"), *cids = prefix(b, "seeker");
	struct stage st;
	struct discovery d = { .b = b, .msg = g_string_new(NULL) };
	struct crowd_spec members = peers_spec(b, (unsigned)o->peers, META_VARIED, ids, room, 0, true);
	struct crowd_spec spec = peers_spec(b, (unsigned)o->clients, META_CLIENT, cids, room, 0, true);
	unsigned per_client = ((unsigned)o->queries + (unsigned)o->clients - 1) / (unsigned)o->clients;
	int64_t elapsed = 0;

	d.phase = (struct phase){ .st = &st, .stride = 1, .kick = discovery_kick, .data = &d };
	samples_init(&d.phase.lat, (size_t)per_client * (size_t)o->clients);
	b->completed = stage_setup(&st, b, &members, &spec, &discovery_ops, &d, true);
	if (b->completed)
		elapsed = phase_run(&d.phase, (unsigned)o->warmup, per_client);
	static const char *const names[] = { "peers", "clients", "queries", "warmup", "limit" };
	const gint values[] = { o->peers, o->clients, (gint)(per_client * (unsigned)o->clients),
				o->warmup, o->limit };
	stage_report(&st, names, values, G_N_ELEMENTS(names), "query", "query", d.phase.lat.n, elapsed,
		     &d.phase.lat);
	json_object_object_add(b->out, "results_per_query",
			       json_object_new_double(d.phase.lat.n ? (double)d.results / (double)d.phase.lat.n : 0));

	stage_free(&st);
	samples_free(&d.phase.lat);
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
	crowd_expire(c->cr);
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

static void report_rss(struct bench *b, long peak, long end)
{
	/* glibc keeps some freed memory: within this much counts as
	 * returned. */
	long tolerance = MAX(256, (peak - b->before.rss_kib) / 10);
	json_object *m = json_object_new_object();

	json_object_object_add(m, "baseline_kib", json_object_new_int64(b->before.rss_kib));
	json_object_object_add(m, "peak_kib", json_object_new_int64(peak));
	json_object_object_add(m, "end_kib", json_object_new_int64(end));
	json_object_object_add(m, "tolerance_kib", json_object_new_int64(tolerance));
	json_object_object_add(m, "returned_to_baseline",
			       json_object_new_boolean(end - b->before.rss_kib <= tolerance));
	json_object_object_add(b->out, "rss", m);
	fprintf(stderr, "churn: daemon RSS baseline %ld KiB, peak %ld KiB, end %ld KiB\n",
		b->before.rss_kib, peak, end);
}

static int run_churn(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *room = g_strdup_printf("%s-churn", o->run_id);
	g_autofree char *ids = prefix(b, "resident"), *cids = prefix(b, "visitor");
	struct stage st;
	struct churn c = { .b = b, .msg = g_string_new(NULL) };
	struct crowd_spec residents = peers_spec(b, (unsigned)o->idle, META_WORKER, ids, room, 0, true);
	struct crowd_spec spec = peers_spec(b, (unsigned)o->sessions, META_CLIENT, cids, room, 0, true);
	int64_t t0 = 0, t1 = 0;
	long rss_end = -1;

	spec.max_active = (unsigned)o->concurrency;
	spec.active_until_closed = true;
	samples_init(&c.lat, (size_t)o->sessions);
	b->completed = stage_setup(&st, b, &residents, &spec, &churn_ops, &c, false);
	c.cr = st.cr;
	if (b->completed) {
		sample_server(b, &b->before);
		c.rss_peak = b->before.rss_kib;
		t0 = wsloop_now();
		crowd_pump(c.cr);
		if (wsloop_run(st.loop, churn_finished, churn_tick, &c, RSS_TICK_MS, b->deadline) < 0)
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
	stage_report(&st, names, values, G_N_ELEMENTS(names), "session", "session", c.done, t1 - t0,
		     &c.lat);
	if (b->before.ok && rss_end >= 0)
		report_rss(b, c.rss_peak, rss_end);

	stage_free(&st);
	samples_free(&c.lat);
	g_string_free(c.msg, TRUE);
	return 0;
}

/* ---- watch ---- */

/* The value of the metric NAME (a whole series name) at the admin port,
 * from a blocking GET /metrics; -1 when it cannot be read. */
static double admin_metric(const struct target *admin, const char *name)
{
	static const char req[] = "GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n";
	struct timeval tv = { .tv_sec = 5 };
	GString *body = g_string_new(NULL);
	char *key = g_strdup_printf("\n%s ", name);
	double v = -1;
	char buf[16384];
	ssize_t n;
	int fd = socket(admin->dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (const struct sockaddr *)&admin->dst, admin->dst_len) < 0 ||
	    send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
		goto out;
	/* HTTP/1.0: the answer ends with the connection; bounded anyway. */
	while (body->len < 16 * 1024 * 1024 && (n = recv(fd, buf, sizeof buf, 0)) > 0)
		g_string_append_len(body, buf, n);
	const char *p = strstr(body->str, key);
	if (p)
		v = g_ascii_strtod(p + strlen(key), NULL);
out:
	if (fd >= 0)
		close(fd);
	g_free(key);
	g_string_free(body, TRUE);
	return v;
}

/* What the updaters send in a phase, update K of each (0, 1, ...). */
enum upd_kind {
	UPD_BUSY,   /* status "busy": setup, out of every watch's set */
	UPD_OTHER,  /* "load": K, a property no watch names */
	UPD_READ,   /* gpu_memory_mb, which watches read, while busy: it
		     * matches no watch before or after */
	UPD_TOGGLE, /* status "available" (K even) or "busy": enters, then
		     * leaves, every watch that matches it when available */
};

/* Typical filters of clients waiting for a worker, the watches take them
 * in turn.  Each wants status "available", so a busy updater is in no
 * watch's set; available, the updaters' metadata (META_WORKER) matches 7
 * of the 10 (not those needing 40960 or 81920 MB, or 2 jobs). */
static const char *const watch_filters[] = {
	"{\"role\":\"worker\",\"properties\":{\"gpu_memory_mb\":{\"$gte\":8192},\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"properties\":{\"gpu_memory_mb\":{\"$gte\":16384},\"status\":{\"$eq\":\"available\"}}}",
	"{\"role\":\"worker\",\"properties\":{\"gpu_memory_mb\":{\"$gte\":40960},\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"tags\":[\"training\"],\"properties\":{\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"tags\":{\"$all\":[\"gpu\",\"inference\"]},\"properties\":"
	"{\"gpu_memory_mb\":{\"$gte\":12288},\"status\":\"available\"}}",
	"{\"role\":[\"worker\",\"gpu-worker\"],\"properties\":{\"gpu_model\":{\"$in\":"
	"[\"NVIDIA RTX A5000\",\"NVIDIA A100 80GB\"]},\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"properties\":{\"gpu_memory_mb\":{\"$gte\":81920},\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"tags\":[\"gpu\"],\"properties\":{\"cuda_version\":{\"$in\":[\"12.1\",\"12.2\"]},"
	"\"status\":\"available\"}}",
	"{\"role\":\"worker\",\"properties\":{\"status\":\"available\",\"max_concurrent_jobs\":{\"$gte\":2}}}",
	"{\"role\":\"worker\",\"tags\":{\"$any\":[\"training\",\"inference\"]},\"properties\":"
	"{\"gpu_memory_mb\":{\"$gte\":24576},\"status\":\"available\"}}",
};

/* Members [0, watchers) of the crowd watch, the next `updaters` update. */
struct watchb {
	struct bench *b;
	struct crowd *cr;
	unsigned watchers, per, updaters;
	const char *id_prefix;
	size_t id_prefix_len;
	bool broken; /* a connection closed: the phases cannot complete */
	/* the phase */
	enum upd_kind kind;
	unsigned per_updater, updaters_done, pongs;
	bool measuring;
	uint64_t events, lost;
	/* watch creation: watchers with all their watches */
	unsigned made;
	/* at the end, the watches ended: watchers done unwatching */
	bool unwatching;
	unsigned unwatched;
	/* at the end, each filter's set size: a plain query per filter */
	unsigned sizing; /* filters asked so far (0: not sizing) */
	int64_t set_size[G_N_ELEMENTS(watch_filters)];
	long *watch_no;     /* [watcher * per + j]: the N of its j-th "wN", 0 none */
	uint32_t *ev_count; /* [(watcher * per + j) * updaters + u]: events about u */
	int64_t *t_sent;    /* [u * cap + k]: when update k of u left (toggle) */
	unsigned cap;
	struct samples lat; /* update sent to event received */
	GString *msg;
};

static unsigned watch_nwatchers;

static enum meta_kind watch_kind(unsigned idx)
{
	return idx < watch_nwatchers ? META_CLIENT : META_WORKER;
}

static void watch_update(struct watchb *w, struct member *m)
{
	uint64_t k = m->seq;
	const char *head = "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{";

	switch (w->kind) {
	case UPD_BUSY:
		g_string_printf(w->msg, "%s\"status\":\"busy\"}}}", head);
		break;
	case UPD_OTHER:
		g_string_printf(w->msg, "%s\"load\":%" G_GUINT64_FORMAT "}}}", head, k);
		break;
	case UPD_READ:
		g_string_printf(w->msg, "%s\"gpu_memory_mb\":%u}}}", head, k % 2 ? 24576 : 49152);
		break;
	case UPD_TOGGLE:
		g_string_printf(w->msg, "%s\"status\":\"%s\"}}}", head, k % 2 ? "busy" : "available");
		if (w->measuring)
			w->t_sent[(m->idx - w->watchers) * w->cap + k] = wsloop_now();
		break;
	}
	m->seq++;
	m->inflight = 1;
	crowd_send(w->cr, m, "update_metadata", w->msg->str, w->msg->len);
}

/* Every updater is done: a ping from each watcher, whose pong comes after
 * every event the updates queued for it. */
static void watch_barrier(struct watchb *w)
{
	static const char ping[] = "{\"type\":\"ping\"}";
	for (unsigned i = 0; i < w->watchers; i++)
		crowd_send(w->cr, &w->cr->members[i], "ping", ping, sizeof ping - 1);
}

static void watch_request(struct watchb *w, struct member *m)
{
	g_string_printf(w->msg, "{\"type\":\"discover_peers\",\"filters\":%s,\"watch\":true,\"limit\":1}",
			watch_filters[(m->idx * w->per + m->seq) % G_N_ELEMENTS(watch_filters)]);
	m->seq++;
	crowd_send(w->cr, m, "discover_peers", w->msg->str, w->msg->len);
}

/* A watch's answer (or its refusal, counted under "errors"). */
static void watch_made(struct watchb *w, struct member *m, const char *type, const char *text,
		       size_t len)
{
	static const char key[] = "\"watch_id\":\"w";
	const char *p = memmem(text, len, key, sizeof key - 1);

	/* A server without watches answers a plain peer_list. */
	if (!p && strcmp(type, "peer_list") == 0)
		counts_add(w->b->counts, "client_errors", "no_watch_id", 1);

	if (p && m->seq >= 1 && m->seq <= w->per)
		w->watch_no[m->idx * w->per + m->seq - 1] = (long)g_ascii_strtoll(p + sizeof key - 1, NULL, 10);
	if (m->seq < w->per)
		watch_request(w, m);
	else
		w->made++;
}

/* Watcher M ends its watch number M->seq (of those it made). */
static void watch_unwatch_next(struct watchb *w, struct member *m)
{
	g_string_printf(w->msg, "{\"type\":\"unwatch\",\"watch_id\":\"w%ld\"}",
			w->watch_no[m->idx * w->per + m->seq]);
	m->seq++;
	crowd_send(w->cr, m, "unwatch", w->msg->str, w->msg->len);
}

static bool watch_unwatched_all(void *data)
{
	struct watchb *w = data;
	return w->broken || w->unwatched >= w->watchers;
}

/* Watcher 0 asks filter w->sizing - 1 as a plain query, no limit. */
static void watch_size_next(struct watchb *w)
{
	g_string_printf(w->msg, "{\"type\":\"discover_peers\",\"filters\":%s}",
			watch_filters[w->sizing++]);
	crowd_send(w->cr, &w->cr->members[0], "discover_peers", w->msg->str, w->msg->len);
}

static void watch_sized(struct watchb *w, struct member *m, const char *text, size_t len)
{
	static const char key[] = "\"count\":";
	const char *p = memmem(text, len, key, sizeof key - 1);

	w->set_size[w->sizing - 1] = p ? g_ascii_strtoll(p + sizeof key - 1, NULL, 10) : -1;
	if (w->sizing < G_N_ELEMENTS(watch_filters))
		watch_size_next(w);
	else
		w->sizing = G_N_ELEMENTS(watch_filters) + 1; /* done */
}

static bool watch_sized_all(void *data)
{
	struct watchb *w = data;
	return w->broken || w->sizing > G_N_ELEMENTS(watch_filters);
}

/* peer_joined / peer_updated / peer_left of one of M's watches: which
 * watch, about which updater, and (toggle, measured) how long after the
 * update it answers.  A watch hears of updater u's updates in order, one
 * event each, so its n-th event answers update n. */
static void watch_event(struct watchb *w, struct member *m, const char *text, size_t len)
{
	static const char wkey[] = "\"watch_id\":\"w", pkey[] = "\"peer_id\":\"";
	const char *p = memmem(text, len, wkey, sizeof wkey - 1);
	const char *q = memmem(text, len, pkey, sizeof pkey - 1);
	int64_t now = wsloop_now();
	unsigned j;

	w->events++;
	if (!p || !q)
		goto other;
	long no = (long)g_ascii_strtoll(p + sizeof wkey - 1, NULL, 10);
	q += sizeof pkey - 1;
	if ((size_t)(text + len - q) <= w->id_prefix_len || memcmp(q, w->id_prefix, w->id_prefix_len) != 0)
		goto other;
	uint64_t idx = g_ascii_strtoull(q + w->id_prefix_len, NULL, 10);
	if (idx < w->watchers || idx >= (uint64_t)w->watchers + w->updaters)
		goto other;
	for (j = 0; j < w->per && w->watch_no[m->idx * w->per + j] != no; j++)
		;
	if (j == w->per)
		goto other;
	unsigned u = (unsigned)idx - w->watchers;
	uint32_t *n = &w->ev_count[((size_t)m->idx * w->per + j) * w->updaters + u];
	if (w->measuring && w->kind == UPD_TOGGLE && *n < w->per_updater)
		samples_add(&w->lat, now - w->t_sent[u * w->cap + *n]);
	(*n)++;
	return;
other:
	counts_add(w->b->counts, "client_errors", "unexpected_event", 1);
}

static void watch_message(struct crowd *cr, struct member *m, const char *type, const char *text,
			  size_t len)
{
	struct watchb *w = cr->user;

	if (m->idx >= w->watchers) { /* an updater */
		if (strcmp(type, "metadata_updated") != 0 && strcmp(type, "error") != 0)
			return;
		if (!m->inflight) {
			counts_add(w->b->counts, "client_errors", "bad_message", 1);
			return;
		}
		m->inflight = 0;
		if (m->seq < w->per_updater)
			watch_update(w, m);
		else if (++w->updaters_done == w->updaters)
			watch_barrier(w);
		return;
	}
	if (w->unwatching && (strcmp(type, "unwatched") == 0 || strcmp(type, "error") == 0)) {
		if (m->seq < w->per)
			watch_unwatch_next(w, m);
		else
			w->unwatched++;
	} else if (w->sizing && m->idx == 0 && (strcmp(type, "peer_list") == 0 || strcmp(type, "error") == 0))
		watch_sized(w, m, text, len);
	else if (strcmp(type, "peer_list") == 0 || strcmp(type, "error") == 0)
		watch_made(w, m, type, text, len);
	else if (strcmp(type, "pong") == 0)
		w->pongs++;
	else if (strcmp(type, "peer_joined") == 0 || strcmp(type, "peer_updated") == 0 ||
		 strcmp(type, "peer_left") == 0)
		watch_event(w, m, text, len);
	else if (strcmp(type, "watch_lost") == 0) {
		/* Its events from then on are missing: the figures are wrong. */
		w->lost++;
		counts_add(w->b->counts, "client_errors", "watch_lost", 1);
	}
}

static void watch_closed(struct crowd *cr, struct member *m, const char *why, int code)
{
	struct watchb *w = cr->user;
	w->broken = true;
	w->b->completed = false;
}

static const struct crowd_ops watch_ops = {
	.message = watch_message,
	.closed = watch_closed,
};

static bool watch_made_all(void *data)
{
	struct watchb *w = data;
	return w->broken || w->made >= w->watchers;
}

static bool watch_phase_done(void *data)
{
	struct watchb *w = data;
	return w->broken || (w->updaters_done >= w->updaters && w->pongs >= w->watchers);
}

/* PER updates of KIND by every updater, each sent when the previous one
 * is answered, then the barrier; false if it did not complete. */
static bool watch_phase(struct watchb *w, enum upd_kind kind, unsigned per, bool measuring)
{
	w->kind = kind;
	w->per_updater = per;
	w->measuring = measuring;
	w->updaters_done = w->pongs = 0;
	w->events = 0;
	memset(w->ev_count, 0, sizeof *w->ev_count * (size_t)w->watchers * w->per * w->updaters);
	for (unsigned u = 0; u < w->updaters; u++) {
		struct member *m = &w->cr->members[w->watchers + u];
		m->seq = 0;
		m->inflight = 0;
		if (per)
			watch_update(w, m);
		else
			w->updaters_done++;
	}
	if (w->updaters_done == w->updaters)
		watch_barrier(w);
	if (wsloop_run(w->cr->loop, watch_phase_done, NULL, w, 100, w->b->deadline) < 0 || w->broken) {
		w->b->completed = false;
		return false;
	}
	return true;
}

/* WARMUP then PER updates of KIND by every updater, the second measured:
 * the phase's figures, and its samples of the server in BEFORE, AFTER. */
static json_object *watch_measure(struct watchb *w, enum upd_kind kind, unsigned warmup, unsigned per,
				  struct proc_sample *before, struct proc_sample *after, int64_t *elapsed)
{
	struct bench *b = w->b;
	uint64_t updates = (uint64_t)per * w->updaters;
	json_object *o = json_object_new_object();
	int64_t t0;

	static const char evals[] = "rtcsignald_watch_evaluations_total";
	double e0 = -1, e1 = -1;

	if (!watch_phase(w, kind, warmup, false))
		return o;
	if (b->o.admin)
		e0 = admin_metric(&b->admin, evals);
	sample_server(b, before);
	t0 = wsloop_now();
	bool ok = watch_phase(w, kind, per, true);
	*elapsed = wsloop_now() - t0;
	sample_server(b, after);
	if (b->o.admin)
		e1 = admin_metric(&b->admin, evals);
	if (!ok)
		return o;
	/* How many filters the daemon evaluated for each update (its
	 * counter; the scrapes are outside the CPU samples). */
	if (e0 >= 0 && e1 >= 0)
		json_object_object_add(o, "evaluations_per_update",
				       json_object_new_double((e1 - e0) / (double)updates));
	json_object_object_add(o, "updates", json_object_new_int64((int64_t)updates));
	json_object_object_add(o, "elapsed_s", json_object_new_double((double)*elapsed / NS));
	json_object_object_add(o, "updates_per_s",
			       json_object_new_double((double)updates * NS / (double)MAX(*elapsed, 1)));
	json_object_object_add(o, "events", json_object_new_int64((int64_t)w->events));
	json_object_object_add(o, "server_proc", proc_report(b->o.server_pid, before, after, updates));
	return o;
}

/* cpu_us_per_op.FIELD of phase O, or -1. */
static double phase_cpu(json_object *o, const char *field)
{
	json_object *srv, *po, *v;
	if (!json_object_object_get_ex(o, "server_proc", &srv) || !srv ||
	    !json_object_object_get_ex(srv, "cpu_us_per_op", &po) || !po ||
	    !json_object_object_get_ex(po, field, &v))
		return -1;
	return json_object_get_double(v);
}

static int run_watch(struct bench *b)
{
	struct opts *o = &b->o;
	g_autofree char *room = g_strdup_printf("%s-watch", o->run_id);
	g_autofree char *ids = prefix(b, "member"), *wids = prefix(b, "wb");
	struct watchb w = { .b = b, .watchers = (unsigned)o->watchers, .per = (unsigned)o->watches,
			    .updaters = (unsigned)o->updaters, .id_prefix = wids,
			    .id_prefix_len = strlen(wids), .msg = g_string_new(NULL) };
	struct crowd_spec members = peers_spec(b, (unsigned)o->peers, META_VARIED, ids, room, 0, true);
	struct crowd_spec spec = peers_spec(b, w.watchers + w.updaters, META_CLIENT, wids, room, 0, true);
	/* Per updater, even: the toggles and the gpu_memory_mb changes end
	 * where they started. */
	unsigned warm = ((unsigned)o->warmup + 1) & ~1u;
	unsigned per_other = (((unsigned)o->updates + w.updaters - 1) / w.updaters + 1) & ~1u;
	unsigned per_toggle = (((unsigned)o->toggles + w.updaters - 1) / w.updaters + 1) & ~1u;
	struct proc_sample s0, s1;
	int64_t elapsed = 0, toggle_elapsed = 0;
	long rss0 = -1, rss1 = -1;
	double members_per_watch = -1;
	json_object *phases = json_object_new_object();
	struct stage st;

	watch_nwatchers = w.watchers;
	spec.kind_of = watch_kind;
	w.cap = MAX(warm, per_toggle);
	w.watch_no = g_new0(long, (size_t)w.watchers * w.per);
	w.ev_count = g_new0(uint32_t, (size_t)w.watchers * w.per * w.updaters);
	w.t_sent = g_new0(int64_t, (size_t)w.updaters * w.cap);
	samples_init(&w.lat, (size_t)w.watchers * w.per * per_toggle * w.updaters);
	b->completed = stage_setup(&st, b, &members, &spec, &watch_ops, &w, true);
	w.cr = st.cr;
	if (!b->completed)
		goto report;
	/* The updaters leave every set; then the same updates without and
	 * with the watches. */
	if (!watch_phase(&w, UPD_BUSY, 1, false))
		goto report;
	json_object_object_add(phases, "none_other",
			       watch_measure(&w, UPD_OTHER, warm, per_other, &s0, &s1, &elapsed));
	json_object_object_add(phases, "none_read",
			       watch_measure(&w, UPD_READ, warm, per_other, &s0, &s1, &elapsed));
	if (w.broken)
		goto report;
	/* Making the watches asks for "limit":1, so that no large answer's
	 * memory, kept by malloc, counts as the watches'. */
	rss0 = settled_rss(o->server_pid);
	for (unsigned i = 0; i < w.watchers; i++) {
		w.cr->members[i].seq = 0;
		watch_request(&w, &w.cr->members[i]);
	}
	if (wsloop_run(st.loop, watch_made_all, NULL, &w, 100, b->deadline) < 0 || w.broken) {
		b->completed = false;
		goto report;
	}
	rss1 = settled_rss(o->server_pid);
	json_object_object_add(phases, "watched_other",
			       watch_measure(&w, UPD_OTHER, warm, per_other, &s0, &s1, &elapsed));
	json_object_object_add(phases, "watched_read",
			       watch_measure(&w, UPD_READ, warm, per_other, &s0, &s1, &elapsed));
	json_object_object_add(phases, "toggle",
			       watch_measure(&w, UPD_TOGGLE, warm, per_toggle, &b->before, &b->after,
					     &toggle_elapsed));
	/* A watch keeps its set: how many peers the watches hold (the
	 * updaters are busy again), from one plain query per filter. */
	if (!w.broken) {
		watch_size_next(&w);
		if (wsloop_run(st.loop, watch_sized_all, NULL, &w, 100, b->deadline) == 0 && !w.broken) {
			double held = 0;
			for (size_t i = 0; i < (size_t)w.watchers * w.per; i++)
				held += (double)w.set_size[i % G_N_ELEMENTS(watch_filters)];
			members_per_watch = held / ((double)w.watchers * w.per);
		}
	}
	/* The watches ended, the first phase again: the phases without
	 * watches ran first, right after the room filled; this one runs
	 * after everything else, as the watched phases did. */
	if (!w.broken) {
		w.unwatching = true;
		for (unsigned i = 0; i < w.watchers; i++) {
			w.cr->members[i].seq = 0;
			watch_unwatch_next(&w, &w.cr->members[i]);
		}
		if (wsloop_run(st.loop, watch_unwatched_all, NULL, &w, 100, b->deadline) < 0 || w.broken)
			b->completed = false;
		w.unwatching = false;
		if (!w.broken) {
			json_object_object_add(phases, "none_other_after",
					       watch_measure(&w, UPD_OTHER, warm, per_other, &s0, &s1,
							     &elapsed));
			json_object_object_add(phases, "none_read_after",
					       watch_measure(&w, UPD_READ, warm, per_other, &s0, &s1,
							     &elapsed));
		}
	}
report:;
	static const char *const names[] = { "peers", "watchers", "watches", "updaters", "updates",
					     "toggles", "warmup" };
	const gint values[] = { o->peers, o->watchers, o->watches, o->updaters,
				(gint)(per_other * w.updaters), (gint)(per_toggle * w.updaters), (gint)warm };
	/* The headline: the updates that enter and leave the watches. */
	stage_report(&st, names, values, G_N_ELEMENTS(names), "update_metadata", "update",
		     b->after.ok ? (uint64_t)per_toggle * w.updaters : 0, toggle_elapsed, &w.lat);
	json_object_object_add(b->out, "phases", phases);
	int64_t made = 0;
	for (size_t i = 0; i < (size_t)w.watchers * w.per; i++)
		made += w.watch_no[i] != 0;
	json_object_object_add(b->out, "watches_made", json_object_new_int64(made));
	json_object_object_add(b->out, "watches_lost", json_object_new_int64((int64_t)w.lost));
	if (rss0 >= 0 && rss1 >= 0) {
		double per_watch = (double)(rss1 - rss0) * 1024.0 / ((double)w.watchers * w.per);
		json_object_object_add(b->out, "rss_kib_without_watches", json_object_new_int64(rss0));
		json_object_object_add(b->out, "rss_kib_with_watches", json_object_new_int64(rss1));
		json_object_object_add(b->out, "rss_bytes_per_watch", json_object_new_double(per_watch));
		fprintf(stderr, "watch: daemon RSS %ld KiB without watches, %ld KiB with %u: %.0f bytes per watch",
			rss0, rss1, w.watchers * w.per, per_watch);
		if (members_per_watch >= 0) {
			json_object_object_add(b->out, "members_per_watch", json_object_new_double(members_per_watch));
			fprintf(stderr, ", %.0f peers in its set on average", members_per_watch);
		}
		fprintf(stderr, "\n");
	}
	static const char *const order[] = { "none_other", "watched_other", "none_read", "watched_read",
					      "toggle", "none_other_after", "none_read_after" };
	GString *line = g_string_new("watch: server CPU per update (run time)");
	for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
		json_object *ph = json_object_object_get(phases, order[i]);
		json_object *ev = ph ? json_object_object_get(ph, "evaluations_per_update") : NULL;
		if (ph)
			g_string_append_printf(line, "%s %s %.1f us", i ? "," : ":", order[i],
					       phase_cpu(ph, "run"));
		if (ev)
			g_string_append_printf(line, " (%.0f evaluations)", json_object_get_double(ev));
	}
	/* Against the phases without watches run last (closest in the run
	 * to the watched ones; the first ones follow the room's filling). */
	json_object *no_other = json_object_object_get(phases, "none_other_after");
	json_object *no_read = json_object_object_get(phases, "none_read_after");
	double r_other = phase_cpu(json_object_object_get(phases, "watched_other"), "run") /
			 phase_cpu(no_other ? no_other : json_object_object_get(phases, "none_other"), "run");
	double r_read = phase_cpu(json_object_object_get(phases, "watched_read"), "run") /
			phase_cpu(no_read ? no_read : json_object_object_get(phases, "none_read"), "run");
	if (json_object_object_get(phases, "watched_read")) {
		json_object_object_add(b->out, "watched_over_none_other", json_object_new_double(r_other));
		json_object_object_add(b->out, "watched_over_none_read", json_object_new_double(r_read));
		g_string_append_printf(line, "; with/without watches %.2f (other), %.2f (read)", r_other, r_read);
		/* What one evaluation adds: the read phases differ by them only. */
		json_object *ev = json_object_object_get(json_object_object_get(phases, "watched_read"),
							 "evaluations_per_update");
		double n_ev = ev ? json_object_get_double(ev) : 0;
		if (n_ev > 0) {
			double ns = (phase_cpu(json_object_object_get(phases, "watched_read"), "run") -
				     phase_cpu(no_read ? no_read : json_object_object_get(phases, "none_read"),
					       "run")) * 1000 / n_ev;
			json_object_object_add(b->out, "ns_per_evaluation", json_object_new_double(ns));
			g_string_append_printf(line, "; %.0f ns per evaluation", ns);
		}
	}
	fprintf(stderr, "%s\n", line->str);
	g_string_free(line, TRUE);

	stage_free(&st);
	samples_free(&w.lat);
	g_free(w.watch_no);
	g_free(w.ev_count);
	g_free(w.t_sent);
	g_string_free(w.msg, TRUE);
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
	bool watch = strcmp(o->scenario, "watch") == 0;
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
		{ "peers", &o->peers, disc ? 1000 : watch ? 10000 : 5000, 1, 200000 },
		{ "clients", &o->clients, 4, 1, 1000 },
		{ "queries", &o->queries, 2000, 1, 10000000 },
		{ "limit", &o->limit, 0, 0, 1000 },
		{ "sessions", &o->sessions, 2000, 1, 10000000 },
		{ "concurrency", &o->concurrency, 16, 1, 4096 },
		{ "warmup", &o->warmup, relay ? 100 : 10, 0, 1000000 },
		{ "rate", &o->rate, 0, 0, 1000000 },
		{ "watchers", &o->watchers, 100, 1, 10000 },
		{ "watches", &o->watches, 10, 1, 1024 },
		{ "updaters", &o->updaters, 10, 1, 1000 },
		{ "updates", &o->updates, 20000, 1, 10000000 },
		{ "toggles", &o->toggles, 2000, 1, 1000000 },
	};

	if (!relay && !disc && !conns && !churn && !watch) {
		fprintf(stderr, "rtcsignal-bench: unknown scenario '%s' (relay, connections, discovery, churn, watch)\n",
			o->scenario);
		return -1;
	}
	if (o->echo && !relay) {
		fprintf(stderr, "rtcsignal-bench: --echo applies to the relay scenario only\n");
		return -1;
	}
	if (apply_bounds(common, G_N_ELEMENTS(common)) < 0)
		return -1;
	/* The watch scenario keeps a latency sample per event. */
	if (watch && (uint64_t)o->watchers * (uint64_t)o->watches * (uint64_t)o->toggles > 50000000) {
		fprintf(stderr, "rtcsignal-bench: --watchers x --watches x --toggles must stay within 50,000,000\n");
		return -1;
	}
	if (relay && (uint64_t)o->pairs * (uint64_t)o->messages > 50000000) {
		fprintf(stderr, "rtcsignal-bench: --pairs x --messages must stay within 50,000,000\n");
		return -1;
	}
	if (o->rate && !relay) {
		fprintf(stderr, "rtcsignal-bench: --rate applies to the relay scenario only\n");
		return -1;
	}
	/* The schedule alone must fit in the deadline. */
	if (o->rate && (uint64_t)o->pairs * ((uint64_t)o->warmup + (uint64_t)o->messages) >
			       (uint64_t)o->rate * (uint64_t)o->deadline) {
		fprintf(stderr, "rtcsignal-bench: --pairs x (--warmup + --messages) / --rate is %.1f s, "
			"past --deadline %d s\n",
			(double)o->pairs * ((double)o->warmup + o->messages) / o->rate, o->deadline);
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
			    .messages = -1, .warmup = -1, .idle = -1, .rate = -1, .peers = -1, .clients = -1,
			    .queries = -1, .limit = -1, .sessions = -1, .concurrency = -1,
			    .watchers = -1, .watches = -1, .updaters = -1, .updates = -1, .toggles = -1 };
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
		{ "warmup", 0, 0, G_OPTION_ARG_INT, &o->warmup, "relay, discovery, watch: unmeasured round trips per pair/client, updates per updater first (100, 10, 10)", "N" },
		{ "idle", 0, 0, G_OPTION_ARG_INT, &o->idle, "relay, churn: idle registered peers (2000, 20)", "K" },
		{ "rate", 0, 0, G_OPTION_ARG_INT, &o->rate, "relay: open loop, N round trips started per second over all pairs, on a schedule (0: closed loop, each reply sends the next)", "N" },
		{ "echo", 0, 0, G_OPTION_ARG_NONE, &o->echo, "relay: the server is bench/echo-floor (one hop, no registration)", NULL },
		{ "peers", 0, 0, G_OPTION_ARG_INT, &o->peers, "connections: peers (5000); discovery, watch: peers in the room (1000, 10000)", "N" },
		{ "clients", 0, 0, G_OPTION_ARG_INT, &o->clients, "discovery: clients querying, one query each in flight (4)", "N" },
		{ "queries", 0, 0, G_OPTION_ARG_INT, &o->queries, "discovery: measured queries in all (2000)", "N" },
		{ "limit", 0, 0, G_OPTION_ARG_INT, &o->limit, "discovery: \"limit\" sent with each query (0: none)", "N" },
		{ "sessions", 0, 0, G_OPTION_ARG_INT, &o->sessions, "churn: sessions (2000)", "N" },
		{ "concurrency", 0, 0, G_OPTION_ARG_INT, &o->concurrency, "churn: sessions at once (16)", "N" },
		{ "watchers", 0, 0, G_OPTION_ARG_INT, &o->watchers, "watch: watching connections (100)", "N" },
		{ "watches", 0, 0, G_OPTION_ARG_INT, &o->watches, "watch: watches per watching connection (10)", "N" },
		{ "updaters", 0, 0, G_OPTION_ARG_INT, &o->updaters, "watch: peers sending update_metadata, one in flight each (10)", "N" },
		{ "updates", 0, 0, G_OPTION_ARG_INT, &o->updates, "watch: measured updates per phase that touches no watch (20000)", "N" },
		{ "toggles", 0, 0, G_OPTION_ARG_INT, &o->toggles, "watch: measured updates that enter or leave watches (2000)", "N" },
		{ "admin", 0, 0, G_OPTION_ARG_STRING, &o->admin, "watch: the daemon's admin port on loopback, to read rtcsignald_watch_evaluations_total around each phase", "ADDR:PORT" },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new("relay|connections|discovery|churn|watch");

	g_option_context_set_summary(ctx, "Load generator for rtcsignald: one scenario, one JSON object on stdout.");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "rtcsignal-bench: %s\n", err->message);
		return EXIT_USAGE;
	}
	if (argc != 2 || !o->server) {
		fprintf(stderr, "usage: rtcsignal-bench relay|connections|discovery|churn|watch --server ADDR:PORT [OPTION...]\n");
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
	if (o->admin && target_parse(o->admin, 0, &b.admin) < 0) {
		fprintf(stderr, "rtcsignal-bench: --admin %s: not ADDR:PORT on loopback\n", o->admin);
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
	else if (strcmp(o->scenario, "watch") == 0)
		rc = run_watch(&b);
	else
		rc = run_churn(&b);
	report_print(b.out);
	if (rc == 0 && (!b.completed || error_total(b.counts)))
		rc = 1;
	json_object_put(b.out);
	json_object_put(b.counts);
	g_free(o->server);
	g_free(o->admin);
	g_free(o->run_id);
	return rc;
}
