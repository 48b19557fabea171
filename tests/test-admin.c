/* Integration tests: the admin port (health, readiness, metrics) of the
 * real daemon, scraped over real HTTP. */
#include "testd.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *scrape(struct testd *d, const char *path, const char *headers)
{
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->admin_port, "GET", path, headers, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	char *body = g_strdup(r.body->str);
	httpc_reply_clear(&r);
	return body;
}

static json_object *scrape_json(struct testd *d)
{
	g_autofree char *body = scrape(d, "/metrics?format=json", NULL);
	json_object *o = json_tokener_parse(body);
	g_assert_nonnull(o);
	return o;
}

static gint64 jint(json_object *o, const char *path)
{
	g_auto(GStrv) parts = g_strsplit(path, ".", -1);
	for (char **p = parts; *p && o; p++)
		o = json_object_object_get(o, *p);
	return o ? json_object_get_int64(o) : -1;
}

/* promtool on TEXT (a scrape) or on ARGS; skipped where promtool is not
 * installed (CI installs it). */
static bool promtool(const char *args, const char *text)
{
	g_autofree char *tool = g_find_program_in_path("promtool");
	if (!tool)
		return false;
	g_autofree char *path = g_build_filename(g_get_tmp_dir(), "scrape.txt", NULL);
	g_autofree char *cmd = NULL;
	if (text) {
		g_assert_true(g_file_set_contents(path, text, -1, NULL));
		cmd = g_strdup_printf("/bin/sh -c 'promtool check metrics < %s'", path);
	} else {
		cmd = g_strdup_printf("promtool %s", args);
	}
	g_autofree char *out = NULL, *err = NULL;
	int status = -1;
	g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, NULL));
	if (!g_spawn_check_wait_status(status, NULL))
		g_error("%s failed:\n%s%s", cmd, out, err);
	return true;
}

static void test_promtool(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct wsc *a = testd_register(d, "p", "a", ",\"role\":\"worker\"");
	struct wsc *b = testd_register(d, "p", "b", NULL);
	wsc_send_text(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":1}");
	json_object_put(wsc_expect(b, "peer_message"));
	wsc_send_text(b, "{\"type\":\"discover_peers\"}");
	json_object_put(wsc_expect(b, "peer_list"));
	g_autofree char *text = scrape(d, "/metrics", NULL);
	if (!promtool(NULL, text)) {
		g_test_skip("promtool not installed (package prometheus)");
	} else {
		g_autofree char *rules = g_test_build_filename(G_TEST_DIST, "..", "data", "rtcsignald-alerts.yml", NULL);
		g_autofree char *unit = g_test_build_filename(G_TEST_DIST, "alerts-test.yml", NULL);
		g_autofree char *check = g_strdup_printf("check rules %s", rules);
		g_autofree char *test = g_strdup_printf("test rules %s", unit);
		promtool(check, NULL);
		promtool(test, NULL);
	}
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_content_types_and_errors(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct httpc_reply r;

	g_assert_cmpint(testd_http(d->admin_port, "GET", "/metrics", NULL, NULL, &r), ==, 0);
	g_autofree char *ct = httpc_header(&r, "content-type");
	g_assert_cmpstr(ct, ==, "text/plain; version=0.0.4; charset=utf-8");
	g_assert_true(g_str_has_prefix(r.body->str, "# HELP "));
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/metrics", "Accept: application/json\r\n", NULL, &r), ==, 0);
	g_autofree char *ct2 = httpc_header(&r, "content-type");
	g_assert_cmpstr(ct2, ==, "application/json");
	g_assert_true(g_str_has_prefix(r.body->str, "{\"timestamp\":"));
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/nothing-here", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 404);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "POST", "/metrics", NULL, "x=1", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 405);
	g_autofree char *allow = httpc_header(&r, "allow");
	g_assert_cmpstr(allow, ==, "GET, HEAD");
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "DELETE", "/health", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 405);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void assert_counts(struct testd *d, const char *step, double conns, double workers,
			  double clients, double rooms)
{
	g_autofree char *t = scrape(d, "/metrics", NULL);
	json_object *j = scrape_json(d);
	g_test_message("%s", step);
	g_assert_cmpfloat(testd_series(t, "rtcsignald_connections"), ==, conns);
	g_assert_cmpint(jint(j, "active_connections"), ==, (gint64)conns);
	g_assert_cmpfloat(testd_series(t, "rtcsignald_rooms"), ==, rooms);
	g_assert_cmpint(jint(j, "active_rooms"), ==, (gint64)rooms);
	if (workers) {
		g_assert_cmpfloat(testd_series(t, "rtcsignald_peers{role=\"worker\"}"), ==, workers);
		g_assert_cmpint(jint(j, "peers_by_role.worker"), ==, (gint64)workers);
	} else {
		g_assert_true(isnan(testd_series(t, "rtcsignald_peers{role=\"worker\"}")));
	}
	if (clients) {
		g_assert_cmpfloat(testd_series(t, "rtcsignald_peers{role=\"client\"}"), ==, clients);
		g_assert_cmpint(jint(j, "peers_by_role.client"), ==, (gint64)clients);
	}
	json_object_put(j);
}

static void test_values_move(void)
{
	struct testd *d = testd_start(NULL, NULL);
	g_autofree char *t0 = scrape(d, "/metrics", NULL);
	json_object *j0 = scrape_json(d);
	g_assert_cmpfloat(testd_series(t0, "rtcsignald_connections_total"), ==, 0);
	g_assert_cmpint(jint(j0, "total_connections"), ==, 0);
	json_object_put(j0);
	assert_counts(d, "nothing yet", 0, 0, 0, 0);

	struct wsc *w1 = testd_register(d, "mv", "w1", ",\"role\":\"worker\"");
	struct wsc *w2 = testd_register(d, "mv", "w2", ",\"role\":\"worker\"");
	struct wsc *c1 = testd_register(d, "mv-2", "c1", ",\"role\":\"client\"");
	assert_counts(d, "three registered", 3, 2, 1, 2);
	g_autofree char *t1 = scrape(d, "/metrics", NULL);
	g_assert_cmpfloat(testd_series(t1, "rtcsignald_registrations_total{result=\"ok\"}"), ==, 3);
	g_assert_cmpfloat(testd_series(t1, "rtcsignald_connections_total"), ==, 3);
	g_assert_cmpfloat(testd_series(t1, "rtcsignald_rooms_created_total"), ==, 2);
	g_assert_cmpfloat(testd_series(t1, "rtcsignald_messages_received_total{type=\"register\"}"), ==, 3);

	for (int i = 0; i < 5; i++) {
		wsc_sendf(w1, "{\"type\":\"peer_message\",\"to_peer_id\":\"w2\",\"payload\":%d}", i);
		json_object_put(wsc_expect(w2, "peer_message"));
	}
	wsc_send_text(w1, "{\"type\":\"peer_message\",\"to_peer_id\":\"c1\",\"payload\":0}");
	json_object_put(wsc_expect_error(w1, "PEER_NOT_IN_ROOM"));
	wsc_send_text(c1, "not json");
	json_object_put(wsc_expect_error(c1, "INVALID_JSON"));
	wsc_send_text(c1, "{\"type\":\"discover_peers\"}");
	json_object_put(wsc_expect(c1, "peer_list"));
	g_autofree char *t2 = scrape(d, "/metrics", NULL);
	json_object *j2 = scrape_json(d);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_messages_routed_total"), ==, 5);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_messages_received_total{type=\"peer_message\"}"), ==, 6);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_messages_received_total{type=\"unknown\"}"), ==, 1);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_errors_sent_total{code=\"PEER_NOT_IN_ROOM\"}"), ==, 1);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_errors_sent_total{code=\"INVALID_JSON\"}"), ==, 1);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_route_latency_seconds_count"), ==, 5);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_discovery_duration_seconds_count"), ==, 1);
	g_assert_cmpfloat(testd_series(t2, "rtcsignald_received_bytes_total"), >, 0);
	g_assert_cmpint(jint(j2, "total_messages"), ==, 3 + 6 + 1 + 1);
	g_assert_cmpint(jint(j2, "rooms_created"), ==, 2);
	json_object_put(j2);

	wsc_free(w2);
	g_assert_true(testd_wait_log(d, "event=peer_left room=mv peer=w2", 5000));
	assert_counts(d, "w2 gone", 2, 1, 1, 2);
	wsc_free(c1);
	g_assert_true(testd_wait_log(d, "event=peer_left room=mv-2 peer=c1", 5000));
	assert_counts(d, "c1 gone, its room freed", 1, 1, 0, 1);
	wsc_free(w1);
	g_assert_true(testd_wait_log(d, "event=peer_left room=mv peer=w1", 5000));
	assert_counts(d, "all gone", 0, 0, 0, 0);
	g_autofree char *t3 = scrape(d, "/metrics", NULL);
	g_assert_cmpfloat(testd_series(t3, "rtcsignald_connections_total"), ==, 3); /* counters stay */
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static json_object *get_json(int port, const char *path, int want_status)
{
	struct httpc_reply r;
	g_assert_cmpint(testd_http(port, "GET", path, NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, want_status);
	json_object *o = json_tokener_parse(r.body->str);
	g_assert_nonnull(o);
	httpc_reply_clear(&r);
	return o;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v = json_object_object_get(o, k);
	return v ? json_object_get_string(v) : NULL;
}

static void test_health_and_ready(void)
{
	struct testd *d = testd_start("[server]\ndrain_timeout = 60\n", NULL);
	json_object *h = get_json(d->admin_port, "/health", 200);
	g_assert_cmpstr(jstr(h, "status"), ==, "healthy");
	g_assert_cmpstr(jstr(h, "version"), ==, PACKAGE_VERSION);
	GDateTime *ts = g_date_time_new_from_iso8601(jstr(h, "timestamp"), NULL);
	g_assert_nonnull(ts);
	g_assert_cmpint(g_date_time_to_unix(ts), >, 1700000000);
	g_date_time_unref(ts);
	json_object_put(h);
	json_object *rdy = get_json(d->admin_port, "/ready", 200);
	g_assert_cmpstr(jstr(rdy, "status"), ==, "ready");
	json_object_put(rdy);

	/* A reader that never reads keeps the drain going. */
	struct wsc *stuck = testd_register_slow(d, "s", "stuck");
	struct wsc *sender = testd_register(d, "s", "sender", NULL);
	g_autofree char *msg = testd_message_to("stuck", 60000);
	for (int i = 0; i < 60; i++)
		wsc_send_text(sender, msg);
	wsc_expect_quiet(sender); /* everything above has been handled */
	wsc_free(sender);

	testd_signal(d, SIGTERM);
	g_assert_true(testd_wait_log(d, "event=stopping", 5000));
	h = get_json(d->admin_port, "/health", 503);
	g_assert_cmpstr(jstr(h, "status"), ==, "draining");
	json_object_put(h);
	rdy = get_json(d->admin_port, "/ready", 503);
	g_assert_cmpstr(jstr(rdy, "status"), ==, "not ready");
	g_assert_cmpstr(jstr(rdy, "reason"), ==, "draining");
	json_object_put(rdy);
	g_autofree char *t = scrape(d, "/metrics", NULL);
	g_assert_cmpfloat(testd_series(t, "rtcsignald_draining"), ==, 1);

	wsc_free(stuck); /* the last session goes: the drain completes */
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 0);
	testd_free(d);
}

struct churn {
	struct testd *d;
	gint stop;
	unsigned rounds;
	GMutex lock;
	GCond progressed;
	unsigned ops; /* registrations and disconnections done */
};

static void churn_progress(struct churn *c)
{
	g_mutex_lock(&c->lock);
	c->ops++;
	g_cond_broadcast(&c->progressed);
	g_mutex_unlock(&c->lock);
}

/* Waits until the churn has moved on since OPS; returns the new count. */
static unsigned churn_wait(struct churn *c, unsigned ops)
{
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	g_mutex_lock(&c->lock);
	while (c->ops == ops && g_cond_wait_until(&c->progressed, &c->lock, deadline))
		;
	g_assert_cmpuint(c->ops, >, ops);
	ops = c->ops;
	g_mutex_unlock(&c->lock);
	return ops;
}

static gpointer churn_main(gpointer data)
{
	struct churn *c = data;
	struct wsc *peers[50];

	while (!g_atomic_int_get(&c->stop)) {
		for (int i = 0; i < 50; i++) {
			g_autofree char *id = g_strdup_printf("churn-%d", i);
			peers[i] = testd_register(c->d, i % 2 ? "churn-a" : "churn-b", id,
						  i % 3 ? ",\"role\":\"worker\"" : ",\"role\":\"client\"");
			churn_progress(c);
		}
		wsc_send_text(peers[0], "{\"type\":\"discover_peers\",\"filters\":{\"role\":\"worker\"}}");
		json_object_put(wsc_expect(peers[0], "peer_list"));
		for (int i = 0; i < 50; i++) {
			wsc_free(peers[i]);
			churn_progress(c);
		}
		c->rounds++;
	}
	return NULL;
}

static void test_churn_while_scraped(void)
{
	/* Hundreds of registrations from one address: no per-address limit. */
	struct testd *d = testd_start("[limits]\nregistrations_per_address_per_minute = 0\n", NULL);
	struct churn c = { .d = d };
	unsigned ops = 0;
	g_mutex_init(&c.lock);
	g_cond_init(&c.progressed);
	GThread *t = g_thread_new("churn", churn_main, &c);

	/* Each scrape after the churn has moved on: 200 scrapes interleaved
	 * with at least 200 registrations and disconnections. */
	for (int i = 0; i < 200; i++) {
		ops = churn_wait(&c, ops);
		if (i % 2) {
			json_object *j = scrape_json(d);
			g_assert_cmpint(jint(j, "active_connections"), >=, 0);
			g_assert_cmpint(jint(j, "active_connections"), <=, 50);
			g_assert_cmpint(jint(j, "active_rooms"), >=, 0);
			g_assert_cmpint(jint(j, "active_rooms"), <=, 2);
			json_object_put(j);
			continue;
		}
		g_autofree char *text = scrape(d, "/metrics", NULL);
		double conns = testd_series(text, "rtcsignald_connections");
		double rooms = testd_series(text, "rtcsignald_rooms");
		double workers = testd_series(text, "rtcsignald_peers{role=\"worker\"}");
		g_assert_cmpfloat(conns, >=, 0);
		g_assert_cmpfloat(conns, <=, 50);
		g_assert_cmpfloat(rooms, >=, 0);
		g_assert_cmpfloat(rooms, <=, 2);
		g_assert_true(isnan(workers) || (workers >= 0 && workers <= 33));
		g_assert_cmpfloat(testd_series(text, "rtcsignald_route_latency_seconds_count"), >=, 0);
		if (i == 100)
			promtool(NULL, text); /* a scrape taken mid-churn is still valid */
	}
	g_atomic_int_set(&c.stop, 1);
	g_thread_join(t);
	g_mutex_clear(&c.lock);
	g_cond_clear(&c.progressed);
	g_test_message("%u churn rounds of 50 peers during 200 scrapes", c.rounds);
	g_assert_cmpuint(c.rounds, >, 0);
	json_object *h = get_json(d->admin_port, "/health", 200);
	json_object_put(h);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Under a locale with a decimal comma (de_DE.UTF-8, compiled here with
 * localedef), /metrics still writes "0.005": the daemon keeps LC_NUMERIC
 * at "C" while it takes its messages from the environment. */
static void test_decimal_comma_locale(void)
{
	/* Isolated per test by GLib, and removed after it. */
	const char *dir = g_get_user_data_dir();
	g_autofree char *def = g_build_filename(dir, "de_DE.UTF-8", NULL);
	g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
	g_autofree char *locpath = g_strconcat("LOCPATH=", dir, NULL);
	g_autofree char *out = NULL;
	int status = -1;

	if (!g_spawn_sync(NULL, (char *[]){ "localedef", "-i", "de_DE", "-f", "UTF-8", def, NULL }, NULL,
			  G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
			  NULL, NULL, NULL, NULL, &status, NULL) || status != 0) {
		g_test_skip("localedef cannot compile de_DE.UTF-8 (package locales)");
		return;
	}
	/* The locale really writes a comma: otherwise this test proves nothing. */
	g_assert_true(g_spawn_sync(NULL, (char *[]){ "printf", "%.1f", "0.5", NULL },
				   (char *[]){ locpath, "LC_ALL=de_DE.UTF-8", NULL }, G_SPAWN_SEARCH_PATH,
				   NULL, NULL, &out, NULL, &status, NULL));
	g_assert_cmpstr(out, ==, "0,5");

	const char *env[] = { locpath, "LC_ALL=de_DE.UTF-8", NULL };
	const struct testd_opts o = { .env = env };
	struct testd *d = testd_start_opts(&o);
	struct wsc *a = testd_register(d, "komma", "a", NULL);
	wsc_send_text(a, "{\"type\":\"discover_peers\"}");
	json_object_put(wsc_expect(a, "peer_list"));
	g_autofree char *text = scrape(d, "/metrics", NULL);
	g_assert_nonnull(strstr(text, "rtcsignald_discovery_duration_seconds_bucket{le=\"0.0"));
	g_assert_null(strstr(text, "le=\"0,"));
	const char *sum = strstr(text, "\nrtcsignald_discovery_duration_seconds_sum ");
	g_assert_nonnull(sum);
	g_assert_cmpint(strcspn(sum + 1, ",\n"), ==, strcspn(sum + 1, "\n"));
	promtool(NULL, text);
	wsc_free(a);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* --- writes the store must keep: answered only once they are durable --- */

#define ADMIN_TOKEN "admin-token-for-tests"
#define ADMIN_HDR "Authorization: Bearer " ADMIN_TOKEN "\r\n"

static json_object *api(struct testd *d, const char *method, const char *path, const char *body,
			int want)
{
	return testd_admin_api(d, ADMIN_TOKEN, method, path, body, want);
}

static char *api_str(struct testd *d, const char *method, const char *path, const char *body,
		     const char *key)
{
	json_object *o = api(d, method, path, body, 201);
	char *v = g_strdup(jstr(o, key));
	json_object_put(o);
	return v;
}

/* Registers with API_KEY: NULL when admitted, else the error's reason. */
static char *register_with_key(struct testd *d, const char *api_key)
{
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"api_key\":\"%s\"}", api_key);
	json_object *o = wsc_recv_json(c);
	g_assert_nonnull(o);
	char *why = g_strcmp0(jstr(o, "type"), "registered_auth") == 0 ? NULL : g_strdup(jstr(o, "reason"));
	json_object_put(o);
	wsc_free(c);
	return why;
}

static bool room_listed(struct testd *d, const char *room)
{
	json_object *o = api(d, "GET", "/api/rooms", NULL, 200);
	bool found = strstr(json_object_to_json_string(o), room) != NULL;
	json_object_put(o);
	return found;
}

struct bg_request {
	int port;
	char *method, *path;
	int status;
	GThread *thread;
};

static gpointer bg_main(gpointer data)
{
	struct bg_request *b = data;
	struct httpc_reply r;
	b->status = testd_http(b->port, b->method, b->path, ADMIN_HDR, NULL, &r) == 0 ? r.status : -1;
	httpc_reply_clear(&r);
	return NULL;
}

static struct bg_request *bg_start(struct testd *d, const char *method, const char *path)
{
	struct bg_request *b = g_new0(struct bg_request, 1);
	b->port = d->admin_port;
	b->method = g_strdup(method);
	b->path = g_strdup(path);
	b->thread = g_thread_new("bg-request", bg_main, b);
	return b;
}

static int bg_finish(struct bg_request *b)
{
	g_thread_join(b->thread);
	int status = b->status;
	g_free(b->method);
	g_free(b->path);
	g_free(b);
	return status;
}

/* The test holds the database's write lock, as an operator's sqlite3
 * shell or a backup would. */
static sqlite3 *lock_db(const char *state_dir)
{
	g_autofree char *path = g_build_filename(state_dir, "rooms.db", NULL);
	sqlite3 *db = NULL;
	g_assert_cmpint(sqlite3_open(path, &db), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), ==, SQLITE_OK);
	return db;
}

static void unlock_db(sqlite3 *db)
{
	g_assert_cmpint(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), ==, SQLITE_OK);
	sqlite3_close(db);
}

static struct testd *start_with_state(const char *state_dir)
{
	const char *args[] = { "--state-dir", state_dir, NULL };
	return testd_start("[admin]\ntoken = " ADMIN_TOKEN "\n[rooms]\nstore_retry_timeout = 2\n", args);
}

/* A revocation or deletion the store could not write is answered 503 and
 * undone nowhere; one written after a lock was released in the retry
 * window is answered 200; a restart shows exactly what the answers said. */
static void test_store_locked(void)
{
	g_autofree char *tmp = g_dir_make_tmp("rtcsignald-locked-XXXXXX", NULL);
	g_autofree char *state = g_build_filename(tmp, "state", NULL);
	struct testd *d = start_with_state(state);
	/* Only RFC 8259 JSON, from the operator too. */
	json_object_put(api(d, "POST", "/api/rooms", "{\"name\":\"nan\",\"x\":NaN}", 400));
	g_autofree char *kept_room = api_str(d, "POST", "/api/rooms", "{\"name\":\"kept\"}", "room_id");
	g_autofree char *gone_room = api_str(d, "POST", "/api/rooms", "{\"name\":\"gone\"}", "room_id");
	g_autofree char *key_room = api_str(d, "POST", "/api/rooms", "{\"name\":\"keys\"}", "room_id");
	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\"}", key_room);
	g_autofree char *kept_key = api_str(d, "POST", "/api/keys", body, "api_key");
	g_autofree char *gone_key = api_str(d, "POST", "/api/keys", body, "api_key");
	g_autofree char *kept_id = g_strndup(kept_key, strcspn(kept_key, "."));
	g_autofree char *gone_id = g_strndup(gone_key, strcspn(gone_key, "."));
	g_autofree char *kept_key_path = g_strconcat("/api/keys/", kept_id, NULL);
	g_autofree char *gone_key_path = g_strconcat("/api/keys/", gone_id, NULL);
	g_autofree char *kept_room_path = g_strconcat("/api/rooms/", kept_room, NULL);
	g_autofree char *gone_room_path = g_strconcat("/api/rooms/", gone_room, NULL);

	/* Locked past the retry window: 503 with a reason, nothing changed. */
	sqlite3 *db = lock_db(state);
	gint64 t0 = g_get_monotonic_time();
	json_object *o = api(d, "DELETE", kept_key_path, NULL, 503);
	g_assert_nonnull(strstr(jstr(o, "error"), "locked"));
	json_object_put(o);
	g_test_message("revoke under a held lock: 503 after %" G_GINT64_FORMAT " ms",
		       (g_get_monotonic_time() - t0) / 1000);
	json_object_put(api(d, "DELETE", kept_room_path, NULL, 503));
	unlock_db(db);
	g_assert_null(register_with_key(d, kept_key));
	g_assert_true(room_listed(d, kept_room));
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_store_retries_total"), >, 0);

	/* Locked, then released within the window: the answer waits, 200. */
	unsigned retries = testd_log_count(d, "retrying for up to");
	db = lock_db(state);
	struct bg_request *revoke = bg_start(d, "DELETE", gone_key_path);
	g_assert_true(testd_wait_log_count(d, "retrying for up to", retries + 1, 5000));
	/* While it is being written the key is refused already. */
	g_autofree char *why = register_with_key(d, gone_key);
	g_assert_cmpstr(why, ==, "Token revoked");
	unlock_db(db);
	g_assert_cmpint(bg_finish(revoke), ==, 200);
	db = lock_db(state);
	struct bg_request *del = bg_start(d, "DELETE", gone_room_path);
	g_assert_true(testd_wait_log_count(d, "retrying for up to", retries + 2, 5000));
	unlock_db(db);
	g_assert_cmpint(bg_finish(del), ==, 200);
	g_assert_false(room_listed(d, gone_room));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* After a restart: exactly what the answers said. */
	d = start_with_state(state);
	g_assert_null(register_with_key(d, kept_key));
	g_autofree char *why2 = register_with_key(d, gone_key);
	g_assert_cmpstr(why2, ==, "Token revoked");
	g_assert_true(room_listed(d, kept_room));
	g_assert_false(room_listed(d, gone_room));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
	g_assert_cmpint(system(rm), ==, 0);
}

/* --- the admin port's availability --- */

/* A TCP connection to PORT from the loopback address FROM (127.0.0.2 is
 * another client than 127.0.0.1 to the daemon). */
static int connect_from(const char *from, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(inet_pton(AF_INET, from, &src.sin_addr), ==, 1);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&src, sizeof src), ==, 0);
	dst.sin_port = htons((uint16_t)port);
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(connect(fd, (struct sockaddr *)&dst, sizeof dst), ==, 0);
	return fd;
}

/* GET /health with a 3 s budget (sanitizer builds on a loaded machine
 * are slow): true when it answered 200. */
static bool health_answers(struct testd *d)
{
	g_autofree char *text = g_strdup_printf("127.0.0.1:%d", d->admin_port);
	const struct httpc_request req = { .method = "GET", .target = "/health", .timeout_ms = 3000 };
	struct listen_addr to;
	struct httpc_reply r;
	g_assert_cmpint(config_parse_listen(text, &to), ==, 0);
	bool ok = httpc_request(&to, &req, &r) == 0 && r.status == 200;
	httpc_reply_clear(&r);
	return ok;
}

/* 64 connections that dribble a request from one address (slowloris)
 * must not take the port from others: /health still answers. */
static void test_slow_connections(void)
{
	struct testd *d = testd_start(NULL, NULL);
	enum { SLOW = 64, CHECKS = 10 };
	int fds[SLOW];
	unsigned answered = 0;

	for (int i = 0; i < SLOW; i++) {
		fds[i] = connect_from("127.0.0.2", d->admin_port);
		g_assert_cmpint(write(fds[i], "GET /health HTTP/1.1\r\nHo", 24), ==, 24);
	}
	for (int i = 0; i < CHECKS; i++) {
		/* A byte more on each, as the attack does to stay under the
		 * idle timeout (those refused are closed: ignore errors). */
		for (int j = 0; j < SLOW; j++)
			(void)send(fds[j], "s", 1, MSG_NOSIGNAL);
		answered += health_answers(d);
	}
	g_test_message("health checks answered with %d slow connections open: %u of %d", SLOW,
		       answered, CHECKS);
	g_assert_cmpuint(answered, ==, CHECKS);
	/* The ones past the per-address limit were refused, and counted. */
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_admin_refused_total{reason=\"per_address\"}"),
			  >=, SLOW - 8);
	for (int i = 0; i < SLOW; i++)
		close(fds[i]);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Slow clients from several addresses, each within its per-address
 * share, can fill the port; a request not sent whole within
 * request_timeout is cut, however often it sends a byte. */
static void test_slow_from_many_addresses(void)
{
	struct testd *d = testd_start("[admin]\nmax_connections = 16\nconnections_per_address = 4\n"
				      "request_timeout = 2\nconnection_timeout = 60\n", NULL);
	enum { SLOW = 16 };
	int fds[SLOW];

	for (int i = 0; i < SLOW; i++) {
		g_autofree char *from = g_strdup_printf("127.0.0.%d", 2 + i / 4);
		fds[i] = connect_from(from, d->admin_port);
		g_assert_cmpint(write(fds[i], "GET /health HTTP/1.1\r\nHo", 24), ==, 24);
	}
	/* Full: refused at once (not left waiting in the backlog). */
	g_assert_false(health_answers(d));
	/* Each keeps sending a byte; they are cut all the same. */
	for (int i = 0; i < SLOW; i++)
		g_assert_cmpint(write(fds[i], "s", 1), ==, 1);
	g_assert_true(testd_wait_log(d, "did not send a whole request within 2 s", 5000));
	/* MHD closes them as it sees the shutdown: the first check that
	 * gets in says it has. */
	gint64 until = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	while (!health_answers(d) && g_get_monotonic_time() < until)
		;
	unsigned answered = 0;
	for (int i = 0; i < 10; i++)
		answered += health_answers(d);
	g_assert_cmpuint(answered, ==, 10);
	/* The sweep may have cut them in two rounds (500 ms apart). */
	gint64 deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
	double cut;
	while ((cut = testd_metric(d, "rtcsignald_admin_refused_total{reason=\"request_timeout\"}")) < SLOW &&
	       g_get_monotonic_time() < deadline)
		;
	g_assert_cmpfloat(cut, ==, SLOW);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_admin_refused_total{reason=\"connection_limit\"}"),
			  >=, 1);
	for (int i = 0; i < SLOW; i++)
		close(fds[i]);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* The status of a raw REQUEST to the admin port, or 0 when none came
 * (the connection closed, or 2 s passed). */
static int raw_status(struct testd *d, const char *request)
{
	int fd = connect_from("127.0.0.1", d->admin_port);
	char buf[512];
	size_t len = 0;
	ssize_t n;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	g_assert_cmpint(write(fd, request, strlen(request)), ==, (ssize_t)strlen(request));
	while (len < sizeof buf - 1 && poll(&p, 1, 2000) == 1 &&
	       (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	int status = 0;
	return sscanf(buf, "HTTP/1.%*d %d", &status) == 1 ? status : 0;
}

/* Framing a proxy in front could read otherwise than we do is refused:
 * two different Content-Lengths, or Transfer-Encoding with a
 * Content-Length. */
static void test_ambiguous_framing(void)
{
	struct testd *d = testd_start("[admin]\ntoken = t\n", NULL);
	static const char *const bad[] = {
		"POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
		"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
		"POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
		"Content-Length: 2, 40\r\n\r\n{}",
		"POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
		"Transfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		g_assert_cmpint(raw_status(d, bad[i]), ==, 400);
	/* The same value twice is one length (RFC 9112 6.3); plain ones work. */
	g_assert_cmpint(raw_status(d, "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
				      "Content-Length: 0\r\n\r\n"), ==, 200);
	g_assert_cmpint(raw_status(d, "POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
				      "Content-Length: 2\r\n\r\n{}"), ==, 201);
	g_assert_cmpint(raw_status(d, "POST /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
				      "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), ==, 201);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* utime + stime of PID in clock ticks, from /proc/PID/stat. */
static unsigned long long cpu_ticks(GPid pid)
{
	g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid), *text = NULL;
	unsigned long long ut = 0, st = 0;
	g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
	const char *p = strrchr(text, ')'); /* the command may hold spaces */
	g_assert_nonnull(p);
	g_assert_cmpint(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st),
			==, 2);
	return ut + st;
}

/* With an open file limit below max_sessions the WebSocket side takes
 * every descriptor; the admin port must still answer /health, and
 * neither side may spin on accept(). */
static void test_out_of_descriptors(void)
{
	/* Valgrind keeps descriptors of its own at the top of the limit and
	 * closes any accept()ed there: connections are reset, not refused. */
	const char *wrapper = g_getenv("RTCSIGNALD_WRAPPER");
	if (wrapper && *wrapper) {
		g_test_skip("descriptor limits do not hold under RTCSIGNALD_WRAPPER (valgrind)");
		return;
	}
	const char *prefix[] = { "prlimit", "--nofile=96", NULL };
	const struct testd_opts o = { .conf = "[limits]\nconnections_per_address = 100000\n",
				      .prefix = prefix };
	enum { MAX_CONNS = 300, CHECKS = 10, WINDOW_MS = 2000 };
	struct testd *d = testd_start_opts(&o);
	int fds[MAX_CONNS], n = 0;
	unsigned answered = 0;

	/* WebSocket upgrades, half sent so they stay, until accept() fails. */
	while (n < MAX_CONNS && !testd_log_count(d, "pausing new connections")) {
		fds[n] = connect_from("127.0.0.1", d->port);
		g_assert_cmpint(write(fds[n], "GET / HTTP/1.1\r\n", 16), ==, 16);
		n++;
	}
	g_assert_true(testd_wait_log(d, "pausing new connections", 5000));
	/* CPU over the checks and then a window in which the daemon must
	 * stay up. */
	long hz = sysconf(_SC_CLK_TCK);
	unsigned long long before = cpu_ticks(d->pid);
	gint64 t0 = g_get_monotonic_time();
	for (int i = 0; i < CHECKS; i++)
		answered += health_answers(d);
	g_test_message("health checks answered out of descriptors (%d connections tried): %u of %d", n,
		       answered, CHECKS);
	g_assert_cmpint(testd_wait_exit(d, WINDOW_MS), ==, -1);
	double secs = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
	double cpu = (double)(cpu_ticks(d->pid) - before) / (double)hz / secs;
	g_test_message("daemon CPU while out of descriptors: %.0f%%", cpu * 100);
	g_assert_cmpuint(answered, ==, CHECKS);
	g_assert_cmpfloat(cpu, <, 0.25);
	g_assert_true(health_answers(d));
	for (int i = 0; i < n; i++)
		close(fds[i]);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/admin/promtool", test_promtool);
	g_test_add_func("/admin/content-types-and-errors", test_content_types_and_errors);
	g_test_add_func("/admin/values-move", test_values_move);
	g_test_add_func("/admin/health-and-ready", test_health_and_ready);
	g_test_add_func("/admin/churn-while-scraped", test_churn_while_scraped);
	g_test_add_func("/admin/decimal-comma-locale", test_decimal_comma_locale);
	g_test_add_func("/admin/store-locked", test_store_locked);
	g_test_add_func("/admin/slow-connections", test_slow_connections);
	g_test_add_func("/admin/slow-from-many-addresses", test_slow_from_many_addresses);
	g_test_add_func("/admin/ambiguous-framing", test_ambiguous_framing);
	g_test_add_func("/admin/out-of-descriptors", test_out_of_descriptors);
	return g_test_run();
}
