/* Smoke tests of the benchmark tools: bench/rtcsignal-bench runs every
 * scenario with tiny sizes against a freshly started daemon (and the relay
 * --echo against bench/echo-floor), and what the generator says it did
 * (its JSON "counts") must be what the daemon's /metrics says it saw.  No
 * timing is asserted: only counts, exit status and "completed". */
#include "testd.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* bench/run's limits, so that the generator's many connections and
 * registrations from one address are not refused. */
static const char config[] = "[server]\n"
			     "allow_anonymous = false\n"
			     "[limits]\n"
			     "max_sessions = 100000\n"
			     "max_peers_per_room = 100000\n"
			     "messages_per_second = 0\n"
			     "connections_per_address = 100000\n"
			     "registrations_per_address_per_minute = 0\n";

/* The generator's own bound (--deadline) and ours on top of it: its
 * workers linger at most 10 s past the deadline. */
#define DEADLINE_S 60
#define WAIT_S (DEADLINE_S + 30)

/* ---- child processes, every wait bounded ---- */

struct child {
	GPid pid;
	int out_fd; /* its stdout */
	bool exited;
	int status; /* as waitpid() gives it */
};

static void child_exited(GPid pid, gint status, gpointer data)
{
	struct child *c = data;
	c->status = status;
	c->exited = true;
}

/* Starts ARGV (NULL-terminated) with its stdout on a pipe; its stderr is
 * ours (the test's log). */
static void child_spawn(struct child *c, const char *const *argv)
{
	g_autoptr(GError) err = NULL;

	memset(c, 0, sizeof *c);
	if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
				      &c->pid, NULL, &c->out_fd, NULL, &err))
		g_error("cannot run %s: %s", argv[0], err->message);
	g_child_watch_add(c->pid, child_exited, c);
}

static gboolean set_flag(gpointer data)
{
	*(bool *)data = true;
	return G_SOURCE_REMOVE;
}

/* Waits up to TIMEOUT_MS for C to exit; true if it did. */
static bool child_wait(struct child *c, int timeout_ms)
{
	bool expired = false;
	guint id = g_timeout_add((guint)timeout_ms, set_flag, &expired);

	while (!c->exited && !expired)
		g_main_context_iteration(NULL, TRUE);
	if (!expired)
		g_source_remove(id);
	return c->exited;
}

/* Ends C, killed if it has not exited: its exit status, or -1 if it did
 * not exit normally. */
static int child_finish(struct child *c)
{
	if (!c->exited) {
		kill(c->pid, SIGKILL);
		if (!child_wait(c, 30000))
			g_error("pid %d survives SIGKILL", (int)c->pid);
	}
	close(c->out_fd);
	g_spawn_close_pid(c->pid);
	return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
}

/* Reads C's stdout into OUT until EOF (or, with LINE, a newline) or
 * TIMEOUT_MS; true if it got there. */
static bool child_read(struct child *c, GString *out, bool line, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	char buf[4096];

	for (;;) {
		if (line && strchr(out->str, '\n'))
			return true;
		gint64 left = (deadline - g_get_monotonic_time()) / 1000;
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = c->out_fd, .events = POLLIN };
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return false;
		if (!p.revents)
			continue;
		ssize_t n = read(c->out_fd, buf, line ? 1 : sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 && !line;
		g_string_append_len(out, buf, n);
	}
}

/* ---- the generator ---- */

struct bench_run {
	int status;       /* exit status, -1 if it did not exit normally */
	json_object *out; /* its JSON result, or NULL */
};

static void bench_run_clear(struct bench_run *r)
{
	json_object_put(r->out);
	r->out = NULL;
}

/* rtcsignal-bench SCENARIO --server D (or ADDRESS, with D NULL) ARGS...:
 * its exit status and parsed output, within WAIT_S. */
static struct bench_run bench(struct testd *d, const char *address, const char *scenario,
			      const char *const *args)
{
	g_autofree char *bin = g_test_build_filename(G_TEST_BUILT, "..", "bench", "rtcsignal-bench", NULL);
	g_autofree char *server = d ? g_strdup_printf("127.0.0.1:%d", d->port) : g_strdup(address);
	g_autofree char *pid = d ? g_strdup_printf("%d", (int)d->pid) : NULL;
	g_autofree char *deadline = g_strdup_printf("%d", DEADLINE_S);
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_autoptr(GString) out = g_string_new(NULL);
	struct bench_run r = { .status = -1 };
	struct child c;

	g_ptr_array_add(argv, bin);
	g_ptr_array_add(argv, (char *)scenario);
	g_ptr_array_add(argv, "--server");
	g_ptr_array_add(argv, server);
	if (pid) {
		g_ptr_array_add(argv, "--server-pid");
		g_ptr_array_add(argv, pid);
	}
	g_ptr_array_add(argv, "--deadline");
	g_ptr_array_add(argv, deadline);
	for (const char *const *a = args; *a; a++)
		g_ptr_array_add(argv, (char *)*a);
	g_ptr_array_add(argv, NULL);
	g_autofree char *line = g_strjoinv(" ", (char **)argv->pdata);
	g_test_message("%s", line);

	child_spawn(&c, (const char *const *)argv->pdata);
	/* Its worker processes share the pipe: EOF once every one is gone. */
	if (!child_read(&c, out, false, WAIT_S * 1000) || !child_wait(&c, 10000)) {
		g_test_message("rtcsignal-bench %s still running after %d s", scenario, WAIT_S);
		g_test_fail();
	}
	r.status = child_finish(&c);
	/* One JSON object, on the last line. */
	g_auto(GStrv) lines = g_strsplit(g_strstrip(out->str), "\n", -1);
	guint n = g_strv_length(lines);
	if (n)
		r.out = json_tokener_parse(lines[n - 1]);
	g_test_message("exit %d, stdout: %s", r.status, n ? lines[n - 1] : "");
	g_assert_nonnull(r.out);
	return r;
}

/* The integer at PATH ("counts.sent.peer_message") in O: 0 when the last
 * key is missing (counters are left out until they count something), -1
 * when a container is. */
static int64_t jint(json_object *o, const char *path)
{
	g_auto(GStrv) keys = g_strsplit(path, ".", -1);

	for (char **k = keys; *k; k++) {
		json_object *v;
		if (!o || !json_object_object_get_ex(o, *k, &v))
			return k[1] ? -1 : 0;
		o = v;
	}
	return json_object_get_int64(o);
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* The number of counters in the group COUNTS.GROUP, and their sum. */
static int64_t group_sum(json_object *o, const char *group, int *n)
{
	json_object *counts, *g;
	int64_t sum = 0;

	*n = 0;
	if (!o || !json_object_object_get_ex(o, "counts", &counts) ||
	    !json_object_object_get_ex(counts, group, &g))
		return 0;
	json_object_object_foreach(g, key, v) {
		g_test_message("%s: %s = %" G_GINT64_FORMAT, group, key, json_object_get_int64(v));
		sum += json_object_get_int64(v);
		(*n)++;
	}
	return sum;
}

/* Complete and free of errors, as the generator saw it. */
static void assert_clean(const struct bench_run *r)
{
	int n;

	g_assert_cmpint(r->status, ==, 0);
	g_assert_true(jbool(r->out, "completed"));
	g_assert_cmpint(group_sum(r->out, "errors", &n), ==, 0);
	g_assert_cmpint(n, ==, 0);
	g_assert_cmpint(group_sum(r->out, "client_errors", &n), ==, 0);
	g_assert_cmpint(n, ==, 0);
}

/* ---- the daemon's side ---- */

/* Once a ping on a new connection is answered, the loop has finished
 * whatever the generator's last messages made it do (it counts some
 * things right after writing the reply); then /metrics. */
static char *metrics_after_barrier(struct testd *d)
{
	struct wsc *c = testd_connect(d);
	struct httpc_reply reply;
	char *text = NULL;

	wsc_send_text(c, "{\"type\":\"ping\"}");
	json_object_put(wsc_expect(c, "pong"));
	wsc_free(c);
	int rc = testd_http(d->admin_port, "GET", "/metrics", NULL, NULL, &reply);
	g_assert_cmpint(rc, ==, 0);
	g_assert_cmpint(reply.status, ==, 200);
	text = g_strdup(rc == 0 && reply.body ? reply.body->str : "");
	httpc_reply_clear(&reply);
	return text;
}

/* The value of series NAME, or -1 when /metrics has none. */
static int64_t series(const char *text, const char *name)
{
	double v = testd_series(text, name);
	return isnan(v) ? -1 : (int64_t)v;
}

/* The sum of every series of FAMILY (all its label values). */
static int64_t family_sum(const char *text, const char *family)
{
	g_autofree char *prefix = g_strdup_printf("%s{", family);
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
	int64_t sum = 0;

	for (char **l = lines; *l; l++) {
		const char *sp = strrchr(*l, ' ');
		if (g_str_has_prefix(*l, prefix) && sp)
			sum += (int64_t)g_ascii_strtod(sp + 1, NULL);
	}
	return sum;
}

static int64_t received(const char *text, const char *type)
{
	g_autofree char *name = g_strdup_printf("rtcsignald_messages_received_total{type=\"%s\"}", type);
	return series(text, name);
}

/* What every daemon run must show: the generator's messages as the daemon
 * counted them, every registration accepted, no error sent, nothing
 * refused, no limit hit. */
static void assert_daemon_agrees(const char *m, json_object *out)
{
	static const char *const types[] = { "register", "peer_message", "discover_peers" };

	for (size_t i = 0; i < G_N_ELEMENTS(types); i++) {
		g_autofree char *path = g_strdup_printf("counts.sent.%s", types[i]);
		g_test_message("%s: generator sent %" G_GINT64_FORMAT ", daemon received %" G_GINT64_FORMAT,
			       types[i], jint(out, path), received(m, types[i]));
		g_assert_cmpint(received(m, types[i]), ==, jint(out, path));
	}
	g_assert_cmpint(series(m, "rtcsignald_registrations_total{result=\"ok\"}"), ==,
			jint(out, "counts.registrations"));
	g_assert_cmpint(family_sum(m, "rtcsignald_registrations_total"), ==,
			jint(out, "counts.registrations"));
	g_assert_cmpint(received(m, "unknown"), ==, 0);
	g_assert_cmpint(family_sum(m, "rtcsignald_errors_sent_total"), ==, 0);
	g_assert_cmpint(family_sum(m, "rtcsignald_sessions_refused_total"), ==, 0);
	g_assert_cmpint(family_sum(m, "rtcsignald_limit_hits_total"), ==, 0);
}

/* ---- the scenarios ---- */

static void check_relay(struct testd *d, const struct bench_run *r, int64_t pairs, int64_t warmup,
			int64_t messages, int64_t idle)
{
	g_autofree char *m = metrics_after_barrier(d);
	json_object *out = r->out;
	int64_t round_trips = jint(out, "round_trips");

	assert_clean(r);
	assert_daemon_agrees(m, out);
	g_assert_cmpint(jint(out, "counts.registrations"), ==, 2 * pairs + idle);
	g_assert_cmpint(jint(out, "held_peers.ready"), ==, idle);
	g_assert_cmpint(jint(out, "ops"), ==, 2 * round_trips);
	/* Every peer_message sent was routed once and arrived. */
	g_assert_cmpint(series(m, "rtcsignald_messages_routed_total"), ==,
			jint(out, "counts.sent.peer_message"));
	g_assert_cmpint(jint(out, "counts.received.peer_message"), ==,
			jint(out, "counts.sent.peer_message"));
	g_assert_cmpint(jint(out, "latency_us.samples"), ==, round_trips);
	if (!jint(out, "params.rate")) {
		/* Closed loop: every round trip, warmup included, is sent. */
		g_assert_cmpint(round_trips, ==, pairs * messages);
		g_assert_cmpint(jint(out, "counts.sent.peer_message"), ==, 2 * pairs * (warmup + messages));
	}
}

static void test_relay(void)
{
	struct testd *d = testd_start(config, NULL);
	struct bench_run r = bench(d, NULL, "relay",
				   (const char *[]){ "--pairs", "2", "--messages", "20", "--warmup", "2",
						     "--idle", "5", "--payload", "200", NULL });

	check_relay(d, &r, 2, 2, 20, 5);
	g_assert_cmpint(jint(r.out, "params.rate"), ==, 0);
	g_assert_null(json_object_object_get(r.out, "pacing"));
	bench_run_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Open loop: a round trip due while its pair's window is full is skipped
 * (late), which depends on timing; the counts must add up either way. */
static void test_relay_rate(void)
{
	struct testd *d = testd_start(config, NULL);
	struct bench_run r = bench(d, NULL, "relay",
				   (const char *[]){ "--pairs", "2", "--messages", "20", "--warmup", "2",
						     "--idle", "5", "--payload", "200", "--rate", "400",
						     NULL });
	json_object *pacing = json_object_object_get(r.out, "pacing");

	check_relay(d, &r, 2, 2, 20, 5);
	g_assert_cmpint(jint(r.out, "params.rate"), ==, 400);
	g_assert_nonnull(pacing);
	g_assert_cmpint(jint(pacing, "target_per_s"), ==, 400);
	g_assert_cmpint(jint(pacing, "scheduled"), ==, 2 * 20);
	g_assert_cmpint(jint(pacing, "due"), ==, 2 * 20);
	g_assert_cmpint(jint(pacing, "sent") + jint(pacing, "late"), ==, 2 * 20);
	g_assert_cmpint(jint(pacing, "sent"), ==, jint(r.out, "round_trips"));
	g_assert_cmpint(jint(pacing, "sent"), >, 0);
	bench_run_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_connections(void)
{
	struct testd *d = testd_start(config, NULL);
	struct bench_run r = bench(d, NULL, "connections",
				   (const char *[]){ "--peers", "30", "--room-size", "7", NULL });
	g_autofree char *m = metrics_after_barrier(d);

	assert_clean(&r);
	assert_daemon_agrees(m, r.out);
	g_assert_cmpint(jint(r.out, "counts.registrations"), ==, 30);
	g_assert_cmpint(jint(r.out, "ops"), ==, 30);
	g_assert_cmpint(jint(r.out, "held_peers.ready"), ==, 30);
	/* Rooms of 7: 0-6, ..., 28-29. */
	g_assert_cmpint(series(m, "rtcsignald_rooms_created_total"), ==, 5);
	bench_run_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_discovery(void)
{
	struct testd *d = testd_start(config, NULL);
	struct bench_run r = bench(d, NULL, "discovery",
				   (const char *[]){ "--peers", "20", "--clients", "2", "--queries", "10",
						     "--warmup", "1", NULL });
	g_autofree char *m = metrics_after_barrier(d);

	assert_clean(&r);
	assert_daemon_agrees(m, r.out);
	g_assert_cmpint(jint(r.out, "counts.registrations"), ==, 20 + 2);
	/* 2 clients, 1 warmup query and 5 measured each: every one answered. */
	g_assert_cmpint(jint(r.out, "counts.sent.discover_peers"), ==, 2 * (1 + 5));
	g_assert_cmpint(jint(r.out, "counts.discoveries"), ==, 2 * (1 + 5));
	g_assert_cmpint(series(m, "rtcsignald_discovery_duration_seconds_count"), ==,
			jint(r.out, "counts.discoveries"));
	g_assert_cmpint(jint(r.out, "ops"), ==, 10);
	g_assert_cmpint(jint(r.out, "latency_us.samples"), ==, 10);
	g_assert_cmpint(series(m, "rtcsignald_messages_routed_total"), ==, 0);
	bench_run_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_churn(void)
{
	struct testd *d = testd_start(config, NULL);
	struct bench_run r = bench(d, NULL, "churn",
				   (const char *[]){ "--sessions", "12", "--concurrency", "3", "--idle", "4",
						     NULL });
	g_autofree char *m = metrics_after_barrier(d);

	assert_clean(&r);
	assert_daemon_agrees(m, r.out);
	g_assert_cmpint(jint(r.out, "counts.registrations"), ==, 12 + 4);
	g_assert_cmpint(jint(r.out, "counts.sent.discover_peers"), ==, 12);
	g_assert_cmpint(jint(r.out, "counts.discoveries"), ==, 12);
	g_assert_cmpint(jint(r.out, "counts.sent.close"), ==, 12);
	g_assert_cmpint(jint(r.out, "ops"), ==, 12);
	/* Every session and resident, and the barrier's connection. */
	g_assert_cmpint(series(m, "rtcsignald_connections_total"), ==, 12 + 4 + 1);
	bench_run_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 4 watchers with 3 watches each take the scenario's filters 0-9, then 0
 * and 1; available, the updaters match 7 of the 10 (0, 1, 3, 4, 5, 7, 9),
 * so 9 of the 12 watches hear of each toggle, and none of the other
 * updates (the updaters are busy then). */
static void test_watch(void)
{
	struct testd *d = testd_start(config, NULL);
	g_autofree char *admin = g_strdup_printf("127.0.0.1:%d", d->admin_port);
	struct bench_run r = bench(d, NULL, "watch",
				   (const char *[]){ "--peers", "20", "--watchers", "4", "--watches", "3",
						     "--updaters", "2", "--updates", "20", "--toggles", "8",
						     "--warmup", "2", "--admin", admin, NULL });
	g_autofree char *m = metrics_after_barrier(d);
	int64_t events = jint(r.out, "counts.received.peer_joined") +
			 jint(r.out, "counts.received.peer_left") + jint(r.out, "counts.received.peer_updated");

	assert_clean(&r);
	assert_daemon_agrees(m, r.out);
	g_assert_cmpint(jint(r.out, "counts.registrations"), ==, 20 + 4 + 2);
	g_assert_cmpint(jint(r.out, "watches_made"), ==, 12);
	g_assert_cmpint(jint(r.out, "watches_lost"), ==, 0);
	/* The 12 watches, then one plain query per filter (the sets' sizes). */
	g_assert_cmpint(jint(r.out, "counts.sent.discover_peers"), ==, 12 + 10);
	g_assert_cmpint(jint(r.out, "counts.discoveries"), ==, 12 + 10);
	g_assert_true(jint(r.out, "members_per_watch") > 0);
	/* Per updater: one to busy, 2 warmup and 10 measured updates in each
	 * of the six phases that match nothing, 2 warmup and 4 toggles. */
	g_assert_cmpint(jint(r.out, "counts.sent.update_metadata"), ==, 2 * (1 + 6 * (2 + 10) + 2 + 4));
	/* Every watch ended before the last two. */
	g_assert_cmpint(jint(r.out, "counts.sent.unwatch"), ==, 12);
	g_assert_cmpint(jint(r.out, "counts.received.unwatched"), ==, 12);
	g_assert_cmpint(jint(r.out, "phases.none_other_after.events"), ==, 0);
	g_assert_cmpint(jint(r.out, "phases.none_read_after.evaluations_per_update"), ==, 0);
	g_assert_cmpint(jint(r.out, "counts.received.metadata_updated"), ==,
			jint(r.out, "counts.sent.update_metadata"));
	g_assert_cmpint(jint(r.out, "phases.none_other.events"), ==, 0);
	g_assert_cmpint(jint(r.out, "phases.watched_other.events"), ==, 0);
	g_assert_cmpint(jint(r.out, "phases.watched_read.events"), ==, 0);
	g_assert_cmpint(jint(r.out, "phases.toggle.updates"), ==, 8);
	g_assert_cmpint(jint(r.out, "phases.toggle.events"), ==, 9 * 8);
	g_assert_cmpint(jint(r.out, "latency_us.samples"), ==, 9 * 8);
	g_assert_cmpint(jint(r.out, "ops"), ==, 8);
	/* Every event the daemon sent arrived: the warmup's too. */
	g_assert_cmpint(events, ==, 9 * 2 * (2 + 4));
	g_assert_cmpint(jint(r.out, "counts.received.peer_updated"), ==, 0);
	g_assert_cmpint(family_sum(m, "rtcsignald_watch_events_total"), ==, events);
	g_assert_true(jint(r.out, "rss_kib_with_watches") > 0);
	/* The daemon's evaluation counter, read around each phase: none
	 * without watches, some for the updates that enter and leave them. */
	g_assert_nonnull(json_object_object_get(json_object_object_get(
		json_object_object_get(r.out, "phases"), "none_other"), "evaluations_per_update"));
	g_assert_cmpint(jint(r.out, "phases.none_other.evaluations_per_update"), ==, 0);
	g_assert_cmpint(jint(r.out, "phases.toggle.evaluations_per_update"), >, 0);
	bench_run_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* ---- relay --echo against bench/echo-floor ---- */

static void test_relay_echo(void)
{
	g_autofree char *bin = g_test_build_filename(G_TEST_BUILT, "..", "bench", "echo-floor", NULL);
	const char *const argv[] = { bin, "--listen", "127.0.0.1:0", NULL };
	g_autoptr(GString) line = g_string_new(NULL);
	struct child c;
	const char *at;
	int port = 0;

	/* "pid=PID port=PORT" once it listens. */
	child_spawn(&c, argv);
	if (child_read(&c, line, true, 20000) && g_str_has_prefix(line->str, "pid=") &&
	    (at = strstr(line->str, " port=")))
		port = atoi(at + strlen(" port="));
	g_test_message("echo-floor: %s", line->str);

	if (port > 0) {
		g_autofree char *address = g_strdup_printf("127.0.0.1:%d", port);
		struct bench_run r = bench(NULL, address, "relay",
					   (const char *[]){ "--echo", "--pairs", "2", "--messages", "20",
							     "--warmup", "2", "--idle", "5", "--payload",
							     "200", NULL });
		assert_clean(&r);
		/* One hop: the client's own message comes back. */
		g_assert_cmpint(jint(r.out, "counts.sent.peer_message"), ==, 2 * (2 + 20));
		g_assert_cmpint(jint(r.out, "counts.received.peer_message"), ==, 2 * (2 + 20));
		g_assert_cmpint(jint(r.out, "counts.sent.register"), ==, 0);
		g_assert_cmpint(jint(r.out, "counts.registrations"), ==, 0);
		g_assert_cmpint(jint(r.out, "round_trips"), ==, 2 * 20);
		g_assert_cmpint(jint(r.out, "ops"), ==, 2 * 20);
		g_assert_cmpint(jint(r.out, "held_peers.ready"), ==, 5);
		bench_run_clear(&r);
	} else {
		g_test_message("echo-floor did not start");
		g_test_fail();
	}

	/* It exits cleanly on SIGTERM. */
	kill(c.pid, SIGTERM);
	if (!child_wait(&c, 20000)) {
		g_test_message("echo-floor still running 20 s after SIGTERM");
		g_test_fail();
	}
	g_assert_cmpint(child_finish(&c), ==, 0);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	/* A failed check goes on to stop the daemon instead of leaving it. */
	g_test_set_nonfatal_assertions();
	g_test_add_func("/bench/relay", test_relay);
	g_test_add_func("/bench/relay-rate", test_relay_rate);
	g_test_add_func("/bench/connections", test_connections);
	g_test_add_func("/bench/discovery", test_discovery);
	g_test_add_func("/bench/churn", test_churn);
	g_test_add_func("/bench/watch", test_watch);
	g_test_add_func("/bench/relay-echo", test_relay_echo);
	return g_test_run();
}
