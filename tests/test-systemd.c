/* Integration tests: socket activation, sd_notify (ready, status,
 * watchdog, reload, stop), reload semantics and journal fields, against
 * the real daemon.  Units and the journal catalog are checked with
 * systemd's own tools. */
#include "util/log.h"
#include "testd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A listening socket on 127.0.0.1 with a free port. */
static int listen_local(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	g_assert_cmpint(listen(fd, 64), ==, 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A datagram socket bound at a fresh path (NOTIFY_SOCKET, journal). */
static int bind_dgram(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), big = 4 << 20;
	g_strlcpy(sun.sun_path, path, sizeof sun.sun_path);
	unlink(path);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sun, sizeof sun), ==, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	return fd;
}

/* The next datagram within TIMEOUT_MS, or NULL. */
static char *recv_dgram(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[65536];
	if (poll(&p, 1, timeout_ms) != 1)
		return NULL;
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return g_strdup(buf);
}

/* The next datagram holding NEEDLE; earlier ones are dropped. */
static char *await_dgram(int fd, const char *needle, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	for (;;) {
		int left = (int)((deadline - g_get_monotonic_time()) / 1000);
		if (left <= 0)
			g_error("no datagram with \"%s\" within %d ms", needle, timeout_ms);
		char *m = recv_dgram(fd, left);
		if (m && strstr(m, needle))
			return m;
		g_free(m);
	}
}

static void test_socket_activation(void)
{
	g_autofree char *tool = g_find_program_in_path("systemd-socket-activate");
	int ws_port, admin_port;

	if (!tool) {
		g_test_skip("systemd-socket-activate not installed");
		return;
	}
	/* Free ports for systemd-socket-activate to bind (it needs numbers). */
	close(listen_local(&ws_port));
	close(listen_local(&admin_port));
	g_autofree char *l1 = g_strdup_printf("127.0.0.1:%d", ws_port);
	g_autofree char *l2 = g_strdup_printf("127.0.0.1:%d", admin_port);
	const char *prefix[] = { tool, "-l", l1, "-l", l2, "--fdname=ws:admin", NULL };
	const struct testd_opts o = { .prefix = prefix, .no_listen_defaults = true, .no_wait = true };
	struct testd *d = testd_start_opts(&o);

	/* systemd-socket-activate binds both, then starts the daemon on the
	 * first connection: made before the daemon runs, it is served. */
	g_autofree char *bound = g_strdup_printf("Listening on %s as 4.", l2);
	g_assert_true(testd_wait_log(d, bound, 5000));
	g_assert_false(testd_wait_log(d, "event=started", 0)); /* not started yet */
	d->port = ws_port;
	struct wsc *c = testd_register(d, "act", "first", NULL);
	g_assert_true(testd_wait_log(d, "(socket activation; [server] listen ignored)", 5000));
	g_assert_true(testd_wait_log(d, "admin listening on", 5000));
	g_assert_true(testd_wait_log(d, "event=ready", 5000));
	struct httpc_reply r;
	g_assert_cmpint(testd_http(admin_port, "GET", "/health", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	httpc_reply_clear(&r);
	/* The passed sockets, not ports of its own. */
	g_assert_cmpuint(testd_log_count(d, "listening on 127.0.0.1:0"), ==, 0);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Starts the daemon on two passed listening sockets as systemd passes
 * them: FDS[0] named "ws", FDS[1] "admin", LISTEN_PID set by a shell that
 * then execs it.  Returns at once (no_wait). */
static struct testd *start_on_passed_sockets(const int fds[2])
{
	const char *prefix[] = { "/bin/sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", NULL };
	const char *env[] = { "LISTEN_FDS=2", "LISTEN_FDNAMES=ws:admin", NULL };
	const struct testd_opts o = { .prefix = prefix, .env = env, .fds = fds, .n_fds = 2,
				      .no_listen_defaults = true, .no_wait = true };
	return testd_start_opts(&o);
}

/* Connections queued on a passed socket before the daemon starts are
 * served, not refused: the socket outlives the process (a restart). */
static void test_served_before_ready(void)
{
	int ws_port, admin_port;
	int fds[2] = { listen_local(&ws_port), listen_local(&admin_port) };
	g_autoptr(GError) err = NULL;
	int raw[3];

	/* connect() completes in the listen backlog with no daemon yet. */
	for (int i = 0; i < 3; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ws_port),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		raw[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		g_assert_cmpint(connect(raw[i], (struct sockaddr *)&sin, sizeof sin), ==, 0);
	}
	struct testd *d = start_on_passed_sockets(fds);
	close(fds[0]);
	close(fds[1]);
	for (int i = 0; i < 3; i++) {
		struct wsc *c = wsc_adopt(raw[i], "127.0.0.1", ws_port, "/", NULL, &err);
		g_assert_no_error(err);
		wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"early-%d\",\"room_id\":\"e\"}", i);
		json_object_put(wsc_expect(c, "registered_auth"));
		wsc_free(c);
	}
	g_assert_true(testd_wait_log(d, "admin listening on 127.0.0.1", 10000));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static bool still_listening(int fd)
{
	int on = 0;
	socklen_t len = sizeof on;
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* The passed sockets belong to systemd: a daemon that stops (a restart)
 * leaves them listening for the next one.  (libmicrohttpd used to
 * shutdown() the admin socket on stop, and the restarted service failed
 * with "not a listening stream socket".) */
static void test_passed_sockets_survive_stop(void)
{
	int ws_port, admin_port;
	int fds[2] = { listen_local(&ws_port), listen_local(&admin_port) };

	for (int round = 0; round < 2; round++) {
		struct testd *d = start_on_passed_sockets(fds);
		g_assert_true(testd_wait_log(d, "event=ready", 10000));
		struct httpc_reply r;
		g_assert_cmpint(testd_http(admin_port, "GET", "/health", NULL, NULL, &r), ==, 0);
		g_assert_cmpint(r.status, ==, 200);
		httpc_reply_clear(&r);
		g_assert_cmpint(testd_stop(d), ==, 0);
		testd_free(d);
		g_assert_true(still_listening(fds[0]));
		g_assert_true(still_listening(fds[1]));
	}
	close(fds[0]);
	close(fds[1]);
}

static unsigned long long monotonic_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
}

static void test_notify(void)
{
	/* A directory of its own: tests running side by side must not share
	 * a notify socket. */
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-notify-XXXXXX", NULL);
	g_autofree char *path = g_build_filename(dir, "notify.sock", NULL);
	int nfd = bind_dgram(path);
	g_autofree char *notify = g_strconcat("NOTIFY_SOCKET=", path, NULL);
	const char *env[] = { notify, "WATCHDOG_USEC=400000", NULL };
	const struct testd_opts o = { .env = env };
	struct testd *d = testd_start_opts(&o);
	g_autofree char *ready = await_dgram(nfd, "READY=1", 5000);
	g_assert_nonnull(strstr(ready, "STATUS=0 peers in 0 rooms, "));

	/* STATUS follows what happens. */
	struct wsc *a = testd_register(d, "n", "a", NULL);
	struct wsc *b = testd_register(d, "n", "b", NULL);
	g_autofree char *status = await_dgram(nfd, "STATUS=2 peers in 1 rooms", 5000);

	/* WATCHDOG=1 every WATCHDOG_USEC/2 (200 ms), from the loop. */
	g_autofree char *first = await_dgram(nfd, "WATCHDOG=1", 2000);
	gint64 t0 = g_get_monotonic_time(), last = t0, max_gap = 0;
	for (int i = 0; i < 10; i++) {
		g_free(await_dgram(nfd, "WATCHDOG=1", 2000));
		gint64 now = g_get_monotonic_time();
		max_gap = MAX(max_gap, now - last);
		last = now;
	}
	double mean_ms = (double)(last - t0) / 10 / 1000;
	g_test_message("watchdog: mean period %.0f ms, longest gap %.0f ms (expected 200 ms)", mean_ms,
		       (double)max_gap / 1000);
	g_assert_cmpfloat(mean_ms, >, 150);
	g_assert_cmpfloat(mean_ms, <, 300);
	g_assert_cmpint(max_gap, <, 400000); /* never a missed deadline */

	/* Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 again. */
	unsigned long long before = monotonic_usec();
	testd_signal(d, SIGHUP);
	g_autofree char *reloading = await_dgram(nfd, "RELOADING=1", 5000);
	const char *mono = strstr(reloading, "MONOTONIC_USEC=");
	g_assert_nonnull(mono);
	unsigned long long usec = g_ascii_strtoull(mono + strlen("MONOTONIC_USEC="), NULL, 10);
	g_assert_cmpuint(usec, >=, before);
	g_assert_cmpuint(usec, <=, monotonic_usec());
	g_free(await_dgram(nfd, "READY=1", 5000));

	/* Stop: STOPPING=1 first. */
	wsc_free(a);
	wsc_free(b);
	testd_signal(d, SIGTERM);
	g_autofree char *stopping = await_dgram(nfd, "STOPPING=1", 5000);
	g_assert_nonnull(strstr(stopping, "STATUS=Stopping"));
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 0);
	testd_free(d);
	close(nfd);
	unlink(path);
	rmdir(dir);
}

static void test_reload_restart_keys(void)
{
	struct testd *d = testd_start("[limits]\nmax_peers_per_room = 5\n", NULL);
	testd_write_conf(d, "[server]\nlisten = 127.0.0.1:1\n[admin]\nmax_connections = 3\n"
			    "[limits]\nmax_peers_per_room = 1\n");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "event=reloaded", 5000));
	/* --listen on the command line wins over the file, before and after */
	g_assert_false(testd_wait_log(d, "[server] listen changed", 0));
	g_assert_true(testd_wait_log(d, "[admin] max_connections changed, needs a restart", 0));
	g_assert_true(testd_wait_log(d, "[limits] max_peers_per_room changed, applied", 0));
	/* The applied one is in force; the daemon still serves its port. */
	struct wsc *a = testd_register(d, "rr", "a", NULL);
	struct wsc *b = testd_connect(d);
	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"b\",\"room_id\":\"rr\"}");
	json_object_put(wsc_expect_error(b, "ROOM_FULL"));
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* --- journal --- */

static bool have_private_journal;

/* A private /run/systemd for this process and its children, so the
 * daemon's journal datagrams come to a socket the test binds.  Must run
 * before any thread exists (a user namespace needs that). */
static void private_journal(void)
{
	if (getuid() != 0) {
		uid_t uid = getuid();
		gid_t gid = getgid();
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return;
		g_autofree char *uidmap = g_strdup_printf("0 %u 1", uid);
		g_autofree char *gidmap = g_strdup_printf("0 %u 1", gid);
		if (!g_file_set_contents("/proc/self/setgroups", "deny", -1, NULL) ||
		    !g_file_set_contents("/proc/self/uid_map", uidmap, -1, NULL) ||
		    !g_file_set_contents("/proc/self/gid_map", gidmap, -1, NULL))
			return;
	} else if (unshare(CLONE_NEWNS) != 0) {
		return;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return;
	g_mkdir_with_parents("/run/systemd", 0755);
	if (mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755") != 0)
		return;
	have_private_journal = g_mkdir_with_parents("/run/systemd/journal", 0755) == 0;
}

/* FIELD's value in a native journal datagram (KEY=value lines), or NULL. */
static char *field(const char *dgram, const char *key)
{
	g_autofree char *needle = g_strconcat(key, "=", NULL);
	for (const char *p = dgram; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (g_str_has_prefix(p, needle)) {
			const char *v = p + strlen(needle), *end = strchr(v, '\n');
			return end ? g_strndup(v, (gsize)(end - v)) : g_strdup(v);
		}
	}
	return NULL;
}

static char *await_event(int jfd, GPtrArray *all, enum log_event ev, const char *also)
{
	const char *id = log_event_message_id(ev);
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	for (;;) {
		int left = (int)((deadline - g_get_monotonic_time()) / 1000);
		char *m = left > 0 ? recv_dgram(jfd, left) : NULL;
		if (!m)
			g_error("no journal entry %s (%s)", log_event_name(ev), also ? also : "");
		g_ptr_array_add(all, m);
		g_autofree char *mid = field(m, "MESSAGE_ID");
		if (g_strcmp0(mid, id) == 0 && (!also || strstr(m, also)))
			return m;
	}
}

static void test_journal(void)
{
	if (!have_private_journal) {
		g_test_skip("cannot make a private /run/systemd (needs root or user namespaces)");
		return;
	}
	int jfd = bind_dgram("/run/systemd/journal/socket");
	g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func(g_free);
	const struct testd_opts o = { .conf = "[limits]\nmax_peers_per_room = 1\n", .journal_stream = true,
				      .no_wait = true };
	const char *marker = "PAYLOAD-NEVER-LOGGED-b71f";
	struct testd *d = testd_start_opts(&o);

	char *listening = await_event(jfd, all, LOG_EVENT_LISTENING, "WebSocket listening on 127.0.0.1:");
	g_autofree char *msg = field(listening, "MESSAGE");
	d->port = atoi(strrchr(msg, ':') + 1);
	await_event(jfd, all, LOG_EVENT_READY, NULL);

	struct wsc *a = testd_register(d, "jr", "journal-peer", ",\"role\":\"worker\"");
	char *reg = await_event(jfd, all, LOG_EVENT_PEER_REGISTERED, NULL);
	struct {
		const char *key, *want;
	} reg_fields[] = {
		{ "PRIORITY", "6" },
		{ "RTCSIGNALD_EVENT", "peer_registered" },
		{ "RTCSIGNALD_ROOM", "jr" },
		{ "RTCSIGNALD_PEER", "journal-peer" },
		{ "RTCSIGNALD_ROLE", "worker" },
		{ "RTCSIGNALD_REMOTE", "127.0.0.1" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(reg_fields); i++) {
		g_autofree char *v = field(reg, reg_fields[i].key);
		g_assert_cmpstr(v, ==, reg_fields[i].want);
	}
	/* The values in MESSAGE too, for journalctl without -o verbose. */
	g_autofree char *reg_msg = field(reg, "MESSAGE");
	g_assert_nonnull(strstr(reg_msg, " [room=jr peer=journal-peer role=worker remote=127.0.0.1]"));
	g_autofree char *code_file = field(reg, "CODE_FILE");
	g_assert_nonnull(code_file);
	g_assert_true(g_str_has_suffix(code_file, "router.c")); /* the caller, not log.c */

	struct wsc *b = testd_connect(d);
	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"second\",\"room_id\":\"jr\"}");
	json_object_put(wsc_expect_error(b, "ROOM_FULL"));
	char *refused = await_event(jfd, all, LOG_EVENT_REGISTRATION_REFUSED, NULL);
	g_autofree char *prio = field(refused, "PRIORITY");
	g_autofree char *code = field(refused, "RTCSIGNALD_CODE");
	g_autofree char *peer = field(refused, "RTCSIGNALD_PEER");
	g_assert_cmpstr(prio, ==, "5");
	g_assert_cmpstr(code, ==, "ROOM_FULL");
	g_assert_cmpstr(peer, ==, "second");
	g_autofree char *refused_msg = field(refused, "MESSAGE");
	g_assert_nonnull(strstr(refused_msg, "peer=second remote=127.0.0.1 code=ROOM_FULL]"));

	/* A payload through the server never reaches the journal. */
	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"second\",\"room_id\":\"jr2\"}");
	json_object_put(wsc_expect(b, "registered_auth"));
	wsc_sendf(b, "{\"type\":\"peer_message\",\"to_peer_id\":\"ghost\",\"payload\":\"%s\"}", marker);
	json_object_put(wsc_expect_error(b, "PEER_NOT_FOUND"));
	wsc_sendf(b, "{\"type\":\"%s\"}", marker);
	json_object_put(wsc_expect_error(b, "UNKNOWN_MESSAGE_TYPE"));
	wsc_free(a);
	wsc_free(b);
	testd_signal(d, SIGTERM);
	await_event(jfd, all, LOG_EVENT_STOPPED, NULL);
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 0);
	for (char *m; (m = recv_dgram(jfd, 0));)
		g_ptr_array_add(all, m);
	for (guint i = 0; i < all->len; i++)
		if (strstr(g_ptr_array_index(all, i), marker))
			g_error("the payload reached the journal: %s", (char *)g_ptr_array_index(all, i));
	g_test_message("%u journal entries checked", all->len);
	/* Nothing went to stderr instead. */
	g_autofree char *stderr_text = testd_log_copy(d);
	g_assert_null(strstr(stderr_text, "event=peer_registered"));
	testd_free(d);
	close(jfd);
}

/* --- units and catalog, with systemd's tools --- */

static int run(const char *cmd, char **out)
{
	int status = -1;
	g_autofree char *err = NULL;
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, &err,
				   &status, NULL));
	if (out && err) {
		char *both = g_strconcat(*out, err, NULL);
		g_free(*out);
		*out = both;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_units_verify(void)
{
	g_autofree char *tool = g_find_program_in_path("systemd-analyze");
	if (!tool) {
		g_test_skip("systemd-analyze not installed");
		return;
	}
	g_autofree char *dir = g_dir_make_tmp("units-XXXXXX", NULL);
	g_autofree char *src = g_test_build_filename(G_TEST_DIST, "..", "systemd", NULL);
	g_autofree char *bin = g_path_get_dirname(g_getenv("RTCSIGNALD"));
	g_autofree char *cmd = g_strdup_printf(
		"sed 's|@sbindir@|%s|g' %s/rtcsignald.service.in > %s/rtcsignald.service && "
		"cp %s/rtcsignald.socket %s/rtcsignald-admin.socket %s/ && cd %s && "
		"systemd-analyze verify --man=no rtcsignald.service rtcsignald.socket rtcsignald-admin.socket",
		bin, src, dir, src, src, dir, dir);
	g_autofree char *out = NULL;
	int rc = run(cmd, &out);
	if (rc != 0 || *out)
		g_error("systemd-analyze verify (rc %d):\n%s", rc, out);
	g_autofree char *rm = g_strdup_printf("rm -rf %s", dir);
	run(rm, NULL);
}

static void test_catalog(void)
{
	g_autofree char *tool = g_find_program_in_path("journalctl");
	if (!tool) {
		g_test_skip("journalctl not installed");
		return;
	}
	g_autofree char *root = g_dir_make_tmp("catalog-XXXXXX", NULL);
	g_autofree char *catalog = g_test_build_filename(G_TEST_DIST, "..", "data", "rtcsignald.catalog", NULL);
	g_autofree char *cmd = g_strdup_printf(
		"mkdir -p %s/usr/lib/systemd/catalog && cp %s %s/usr/lib/systemd/catalog/ && "
		"journalctl --root=%s --update-catalog && journalctl --root=%s --list-catalog",
		root, catalog, root, root, root);
	g_autofree char *out = NULL;
	g_assert_cmpint(run(cmd, &out), ==, 0);
	/* Every event the daemon logs is explained. */
	for (int ev = LOG_EVENT_NONE + 1; ev < LOG_EVENT__COUNT; ev++) {
		const char *id = log_event_message_id(ev);
		if (!strstr(out, id))
			g_error("catalog lacks %s (%s):\n%s", id, log_event_name(ev), out);
	}
	g_autofree char *rm = g_strdup_printf("rm -rf %s", root);
	run(rm, NULL);
}

int main(int argc, char *argv[])
{
	private_journal(); /* before GLib starts any thread */
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/systemd/socket-activation", test_socket_activation);
	g_test_add_func("/systemd/served-before-ready", test_served_before_ready);
	g_test_add_func("/systemd/passed-sockets-survive-stop", test_passed_sockets_survive_stop);
	g_test_add_func("/systemd/notify", test_notify);
	g_test_add_func("/systemd/reload-restart-keys", test_reload_restart_keys);
	g_test_add_func("/systemd/journal", test_journal);
	g_test_add_func("/systemd/units-verify", test_units_verify);
	g_test_add_func("/systemd/catalog", test_catalog);
	return g_test_run();
}
