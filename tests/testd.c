#include "testd.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static gpointer reader_main(gpointer data)
{
	struct testd *d = data;
	char buf[4096];

	for (;;) {
		ssize_t n = read(d->err_fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		g_mutex_lock(&d->lock);
		if (n <= 0) {
			int status = 0;
			waitpid(d->pid, &status, 0);
			d->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			d->exited = true;
			g_cond_broadcast(&d->cond);
			g_mutex_unlock(&d->lock);
			return NULL;
		}
		g_string_append_len(d->log, buf, n);
		if (g_getenv("TESTD_VERBOSE"))
			fwrite(buf, 1, (size_t)n, stderr);
		g_cond_broadcast(&d->cond);
		g_mutex_unlock(&d->lock);
	}
}

void testd_write_conf(struct testd *d, const char *conf_text)
{
	g_assert_true(g_file_set_contents(d->conf, conf_text ? conf_text : "", -1, NULL));
}

struct testd *testd_start(const char *conf_text, const char *const *args)
{
	const struct testd_opts o = { .conf = conf_text, .args = args };
	return testd_start_opts(&o);
}

static void add_argv(GPtrArray *argv, const char *const *list)
{
	for (const char *const *a = list; a && *a; a++)
		g_ptr_array_add(argv, g_strdup(*a));
}

struct testd *testd_start_opts(const struct testd_opts *o)
{
	struct testd *d = g_new0(struct testd, 1);
	const char *bin = g_getenv("RTCSIGNALD");
	const char *wrapper = g_getenv("RTCSIGNALD_WRAPPER");
	g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
	g_auto(GStrv) envp = g_get_environ();
	g_autoptr(GError) err = NULL;
	int err_pipe[2] = { -1, -1 };
	int targets[8];

	g_mutex_init(&d->lock);
	g_cond_init(&d->cond);
	d->log = g_string_new(NULL);
	d->dir = g_dir_make_tmp("rtcsignald-test-XXXXXX", NULL);
	d->conf = g_build_filename(d->dir, "rtcsignald.conf", NULL);
	testd_write_conf(d, o->conf);

	add_argv(argv, o->prefix);
	if (wrapper && *wrapper) {
		g_auto(GStrv) w = NULL;
		g_assert_true(g_shell_parse_argv(wrapper, NULL, &w, NULL));
		add_argv(argv, (const char *const *)w);
	}
	g_ptr_array_add(argv, g_strdup(bin ? bin : "src/rtcsignald"));
	g_autofree char *state = g_build_filename(d->dir, "state", NULL);
	add_argv(argv, (const char *[]){ "--config", d->conf, "--log-level", "debug", "--state-dir", state,
					 NULL });
	if (!o->no_listen_defaults)
		add_argv(argv, (const char *[]){ "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", NULL });
	add_argv(argv, o->args);
	g_ptr_array_add(argv, NULL);

	/* GLib 2.74's slice allocator hands memory between threads behind
	 * futexes ThreadSanitizer cannot see: plain malloc for the daemon. */
	envp = g_environ_setenv(envp, "G_SLICE", "always-malloc", FALSE);
	for (const char *const *e = o->env; e && *e; e++) {
		g_auto(GStrv) kv = g_strsplit(*e, "=", 2);
		envp = g_environ_setenv(envp, kv[0], kv[1], TRUE);
	}
	/* Our own pipe for stderr, so its identity can go in JOURNAL_STREAM. */
	g_assert_cmpint(pipe2(err_pipe, O_CLOEXEC), ==, 0);
	if (o->journal_stream) {
		struct stat st;
		g_assert_cmpint(fstat(err_pipe[1], &st), ==, 0);
		g_autofree char *stream = g_strdup_printf("%lu:%lu", (unsigned long)st.st_dev,
							  (unsigned long)st.st_ino);
		envp = g_environ_setenv(envp, "JOURNAL_STREAM", stream, TRUE);
	}
	g_assert_cmpuint(o->n_fds, <=, G_N_ELEMENTS(targets));
	for (unsigned i = 0; i < o->n_fds; i++)
		targets[i] = 3 + (int)i;
	if (!g_spawn_async_with_pipes_and_fds(NULL, (const char *const *)argv->pdata,
					      (const char *const *)envp,
					      G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
						      G_SPAWN_SEARCH_PATH,
					      NULL, NULL, -1, -1, err_pipe[1], o->fds, targets, o->n_fds,
					      &d->pid, NULL, NULL, NULL, &err))
		g_error("cannot start rtcsignald: %s", err->message);
	close(err_pipe[1]);
	d->err_fd = err_pipe[0];
	d->reader = g_thread_new("testd-stderr", reader_main, d);
	if (o->no_wait)
		return d;

	/* Ready means every listener is up. */
	if (!testd_wait_log(d, "event=ready", 20000)) {
		g_autofree char *log = testd_log_copy(d);
		g_error("rtcsignald did not start:\n%s", log);
	}
	d->port = testd_logged_port(d, "WebSocket listening on 127.0.0.1:");
	d->admin_port = testd_logged_port(d, "admin listening on 127.0.0.1:");
	return d;
}

int testd_logged_port(struct testd *d, const char *prefix)
{
	g_mutex_lock(&d->lock);
	const char *at = strstr(d->log->str, prefix);
	int port = at ? atoi(at + strlen(prefix)) : 0;
	g_mutex_unlock(&d->lock);
	return port;
}

static unsigned count_locked(struct testd *d, const char *needle)
{
	unsigned n = 0;
	for (const char *p = d->log->str; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

bool testd_wait_log_count(struct testd *d, const char *needle, unsigned n, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	bool found;

	g_mutex_lock(&d->lock);
	while (!(found = count_locked(d, needle) >= n) && !d->exited)
		if (!g_cond_wait_until(&d->cond, &d->lock, deadline))
			break;
	if (!found)
		found = count_locked(d, needle) >= n;
	g_mutex_unlock(&d->lock);
	return found;
}

bool testd_wait_log(struct testd *d, const char *needle, int timeout_ms)
{
	return testd_wait_log_count(d, needle, 1, timeout_ms);
}

unsigned testd_log_count(struct testd *d, const char *needle)
{
	g_mutex_lock(&d->lock);
	unsigned n = count_locked(d, needle);
	g_mutex_unlock(&d->lock);
	return n;
}

char *testd_log_copy(struct testd *d)
{
	g_mutex_lock(&d->lock);
	char *copy = g_strdup(d->log->str);
	g_mutex_unlock(&d->lock);
	return copy;
}

void testd_signal(struct testd *d, int sig)
{
	kill(d->pid, sig);
}

int testd_wait_exit(struct testd *d, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	int status = -1;

	g_mutex_lock(&d->lock);
	while (!d->exited)
		if (!g_cond_wait_until(&d->cond, &d->lock, deadline))
			break;
	if (d->exited)
		status = d->status;
	g_mutex_unlock(&d->lock);
	return status;
}

static bool maps_name(struct testd *d, const char *lib)
{
	g_autofree char *path = g_strdup_printf("/proc/%d/maps", (int)d->pid);
	g_autofree char *maps = NULL;

	return g_file_get_contents(path, &maps, NULL, NULL) && strstr(maps, lib);
}

int testd_stop(struct testd *d)
{
	/* ThreadSanitizer defers a signal that arrives outside its
	 * interceptors and, with the loop then asleep in epoll_wait, may
	 * never deliver it (seen under load: the daemon idle, SIGTERM lost).
	 * Under TSan alone, it is sent again; a daemon built normally must
	 * stop on the first. */
	bool tsan = maps_name(d, "libtsan");
	int status = -1;

	for (int waited = 0; status < 0 && waited < 30000; waited += tsan ? 2000 : 30000) {
		testd_signal(d, SIGTERM);
		status = testd_wait_exit(d, tsan ? 2000 : 30000);
	}
	return status;
}

long testd_rss_kib(struct testd *d)
{
	g_autofree char *path = g_strdup_printf("/proc/%d/status", d->pid);
	g_autofree char *status = NULL;
	const char *at;

	if (!g_file_get_contents(path, &status, NULL, NULL) || !(at = strstr(status, "VmRSS:")))
		return -1;
	return atol(at + strlen("VmRSS:"));
}

void testd_free(struct testd *d)
{
	if (!d)
		return;
	if (testd_wait_exit(d, 0) < 0) {
		kill(d->pid, SIGKILL);
		testd_wait_exit(d, 30000);
	}
	g_thread_join(d->reader);
	close(d->err_fd);
	g_spawn_close_pid(d->pid);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", d->dir);
	g_spawn_command_line_sync(rm, NULL, NULL, NULL, NULL);
	g_free(d->conf);
	g_free(d->dir);
	g_string_free(d->log, TRUE);
	g_mutex_clear(&d->lock);
	g_cond_clear(&d->cond);
	g_free(d);
}

int testd_http(int port, const char *method, const char *path, const char *headers,
	       const char *body, struct httpc_reply *out)
{
	g_autofree char *text = g_strdup_printf("127.0.0.1:%d", port);
	const struct httpc_request req = { .method = method, .target = path, .headers = headers,
					   .body = body };
	struct listen_addr to;

	g_assert_cmpint(config_parse_listen(text, &to), ==, 0);
	return httpc_request(&to, &req, out);
}

double testd_series(const char *text, const char *name)
{
	g_autofree char *needle = g_strdup_printf("\n%s ", name);
	const char *at = strstr(text, needle);
	return at ? g_ascii_strtod(at + strlen(needle), NULL) : NAN;
}

double testd_metric(struct testd *d, const char *name)
{
	struct httpc_reply r;

	g_assert_cmpint(testd_http(d->admin_port, "GET", "/metrics", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	double v = testd_series(r.body->str, name);
	httpc_reply_clear(&r);
	return v;
}

struct wsc *testd_connect(struct testd *d)
{
	g_autoptr(GError) err = NULL;
	struct wsc *c = wsc_connect("127.0.0.1", d->port, "/", &err);
	g_assert_no_error(err);
	return c;
}

static struct wsc *register_on(struct wsc *c, const char *room, const char *peer_id,
				const char *extra)
{
	json_object *o, *v;

	/* 2.1: the tests check every error of docs/protocol.md; EXTRA may
	 * say "protocol":"2.0" again (the last of a repeated key counts). */
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"protocol\":\"2.1\"%s}",
		  peer_id, room, extra ? extra : "");
	o = wsc_expect(c, "registered_auth");
	g_assert_true(json_object_object_get_ex(o, "peer_id", &v));
	g_assert_cmpstr(json_object_get_string(v), ==, peer_id);
	json_object_put(o);
	return c;
}

struct wsc *testd_register(struct testd *d, const char *room, const char *peer_id,
			   const char *extra)
{
	return register_on(testd_connect(d), room, peer_id, extra);
}

struct wsc *testd_register_slow(struct testd *d, const char *room, const char *peer_id)
{
	const struct wsc_opts small = { .rcvbuf = 4096 };
	g_autoptr(GError) err = NULL;
	struct wsc *c = wsc_connect_opts(&small, "127.0.0.1", d->port, "/", &err);

	g_assert_no_error(err);
	return register_on(c, room, peer_id, NULL);
}

char *testd_message_to(const char *to_peer, size_t bytes)
{
	GString *msg = g_string_new(NULL);

	g_string_printf(msg, "{\"type\":\"peer_message\",\"to_peer_id\":\"%s\",\"payload\":\"", to_peer);
	while (msg->len + 2 < bytes)
		g_string_append_c(msg, 'q');
	g_string_append(msg, "\"}");
	return g_string_free(msg, FALSE);
}

const char *testd_str(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

json_object *testd_admin_api(struct testd *d, const char *token, const char *method,
			     const char *path, const char *body, int want)
{
	g_autofree char *headers =
		g_strdup_printf("Authorization: Bearer %s\r\nContent-Type: application/json\r\n", token);
	struct httpc_reply r;

	g_assert_cmpint(testd_http(d->admin_port, method, path, headers, body, &r), ==, 0);
	if (r.status != want)
		g_error("%s %s: %d, wanted %d: %s", method, path, r.status, want, r.body->str);
	json_object *o = json_tokener_parse(r.body->str);
	g_assert_nonnull(o);
	httpc_reply_clear(&r);
	return o;
}

double testd_await_metric(struct testd *d, const char *name, double at_least, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	double v;

	while (!((v = testd_metric(d, name)) >= at_least) && g_get_monotonic_time() < deadline)
		g_usleep(20 * 1000);
	return v;
}

bool testd_rss_meaningful(struct testd *d)
{
	return !maps_name(d, "libtsan") && !maps_name(d, "vgpreload");
}

void testd_expect_ready(struct testd *d, int status, const char *reason_part)
{
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/ready", NULL, NULL, &r), ==, 0);
	if (r.status != status)
		g_test_message("/ready answered %d: %s", r.status, r.body->str);
	g_assert_cmpint(r.status, ==, status);
	if (reason_part)
		g_assert_nonnull(strstr(r.body->str, reason_part));
	httpc_reply_clear(&r);
}

static void assert_keys(json_object *o, const char *want)
{
	GString *got = g_string_new(NULL);
	json_object_object_foreach(o, k, v) {
		(void)v;
		g_string_append_printf(got, "%s%s", got->len ? " " : "", k);
	}
	if (strcmp(got->str, want) != 0)
		g_error("keys \"%s\", wanted \"%s\" in %s", got->str, want, json_object_to_json_string(o));
	g_string_free(got, TRUE);
}

static json_object *next_event(struct wsc *c, const char *type, const char *watch_id)
{
	json_object *o = wsc_expect(c, type);

	if (strstr(json_object_to_json_string(o), "\"_"))
		g_error("a private key in %s", json_object_to_json_string(o));
	g_assert_cmpstr(testd_str(o, "watch_id"), ==, watch_id);
	return o;
}

json_object *testd_expect_peer_event(struct wsc *c, const char *type, const char *watch_id,
				     const char *peer_id)
{
	json_object *o = next_event(c, type, watch_id), *p, *at;

	assert_keys(o, watch_id ? "type watch_id peer" : "type peer");
	p = json_object_object_get(o, "peer");
	assert_keys(p, "peer_id role metadata connected_at");
	g_assert_cmpstr(testd_str(p, "peer_id"), ==, peer_id);
	g_assert_true(json_object_is_type(json_object_object_get(p, "role"), json_type_string));
	g_assert_true(json_object_is_type(json_object_object_get(p, "metadata"), json_type_object));
	at = json_object_object_get(p, "connected_at");
	g_assert_true(json_object_is_type(at, json_type_double) || json_object_is_type(at, json_type_int));
	g_assert_cmpfloat(json_object_get_double(at), >, 1.6e9);
	return o;
}

void testd_expect_peer_left(struct wsc *c, const char *watch_id, const char *peer_id, const char *reason)
{
	json_object *o = next_event(c, "peer_left", watch_id);

	assert_keys(o, watch_id ? "type watch_id peer_id reason" : "type peer_id reason");
	g_assert_cmpstr(testd_str(o, "peer_id"), ==, peer_id);
	g_assert_cmpstr(testd_str(o, "reason"), ==, reason);
	json_object_put(o);
}

json_object *testd_recv_json_within(struct wsc *c, int timeout_ms)
{
	GBytes *b = NULL;
	gsize len;

	if (wsc_recv(c, timeout_ms, &b, NULL) < 0)
		return NULL;
	const char *text = g_bytes_get_data(b, &len);
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	json_tokener_free(tok);
	g_bytes_unref(b);
	g_assert_nonnull(o);
	return o;
}
