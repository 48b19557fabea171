/* Integration tests: start-up, command line and configuration, shutdown,
 * reload, addresses and the open-mode admission rule. */
#include "util/netaddr.h"
#include "testd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs rtcsignald with ARGS to completion, with the extra NAME=VALUE
 * settings ENV (may be NULL): exit status, and its output. */
static int run_env(const char *const *args, const char *const *env, char **out, char **err)
{
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_auto(GStrv) envp = g_get_environ();
	int status = -1;
	g_ptr_array_add(argv, (gpointer)g_getenv("RTCSIGNALD"));
	for (const char *const *a = args; *a; a++)
		g_ptr_array_add(argv, (gpointer)*a);
	g_ptr_array_add(argv, NULL);
	for (const char *const *e = env; e && *e; e++) {
		g_auto(GStrv) kv = g_strsplit(*e, "=", 2);
		envp = g_environ_setenv(envp, kv[0], kv[1], TRUE);
	}
	g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, envp, G_SPAWN_DEFAULT, NULL, NULL, out,
				   err, &status, NULL));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run(const char *const *args, char **out, char **err)
{
	return run_env(args, NULL, out, err);
}

static char *write_tmp(const char *name, const char *text)
{
	char *path = g_build_filename(g_get_tmp_dir(), name, NULL);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return path;
}

static void test_cli(void)
{
	g_autofree char *out = NULL, *err = NULL;
	g_autofree char *good = write_tmp("good.conf", "[server]\nlisten = 127.0.0.1:9999;[::1]:9999\n"
						      "[limits]\nmax_sessions = 10\n[log]\nlevel = debug\n");
	g_autofree char *bad_value = write_tmp("bad-value.conf", "[limits]\nmax_sessions = lots\n");
	g_autofree char *bad_range = write_tmp("bad-range.conf", "[limits]\nmax_message_bytes = 5\n");
	g_autofree char *unknown = write_tmp("unknown.conf", "[limits]\nmax_sesions = 10\n");
	g_autofree char *bad_listen = write_tmp("bad-listen.conf", "[server]\nlisten = localhost:80\n");
	g_autofree char *syntax = write_tmp("syntax.conf", "[limits\nmax_sessions = 10\n");

	g_assert_cmpint(run((const char *[]){ "--version", NULL }, &out, &err), ==, 0);
	g_assert_true(g_str_has_prefix(out, "rtcsignald " PACKAGE_VERSION));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(run((const char *[]){ "--help", NULL }, &out, &err), ==, 0);
	g_assert_nonnull(strstr(out, "--check-config"));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(run((const char *[]){ "--no-such-flag", NULL }, &out, &err), ==, 64);
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);

	g_assert_cmpint(run((const char *[]){ "--check-config", "--config", good, NULL }, &out, &err), ==, 0);
	g_assert_nonnull(strstr(out, "valid"));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);

	struct {
		const char *path, *needle;
	} cases[] = {
		{ bad_value, "[limits] max_sessions: \"lots\" is not a valid non-negative integer" },
		{ bad_range, "max_message_bytes: 5 is out of range" },
		{ unknown, "[limits] max_sesions: unknown key" },
		{ bad_listen, "[server] listen" },
		{ syntax, "syntax.conf" },
		{ "/nonexistent/rtcsignald.conf", "/nonexistent/rtcsignald.conf" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_assert_cmpint(run((const char *[]){ "--check-config", "--config", cases[i].path, NULL },
				    &out, &err), ==, 78);
		if (!strstr(err, cases[i].needle))
			g_error("expected \"%s\" in: %s", cases[i].needle, err);
		g_clear_pointer(&out, g_free);
		g_clear_pointer(&err, g_free);
	}
	/* A bad value on the command line is a config error too. */
	g_assert_cmpint(run((const char *[]){ "--check-config", "--config", good, "--log-level", "loud", NULL },
			    &out, &err), ==, 78);
	g_assert_nonnull(strstr(err, "--log-level"));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	/* Without the daemon starting, a bad config exits 78 too. */
	g_assert_cmpint(run((const char *[]){ "--config", bad_value, NULL }, &out, &err), ==, 78);
	/* A port in use: a runtime failure, exit 1. */
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sin;
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	g_assert_cmpint(listen(fd, 1), ==, 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	g_autofree char *taken = g_strdup_printf("127.0.0.1:%u", ntohs(sin.sin_port));
	g_autofree char *state = g_build_filename(g_get_tmp_dir(), "state", NULL);
	g_assert_cmpint(run((const char *[]){ "--config", good, "--listen", taken, "--state-dir", state, NULL },
			    &out, &err), ==, 1);
	g_assert_nonnull(strstr(err, "cannot listen on"));
	close(fd);
}

/* An operator with LANGUAGE=de reads the command line in German; the
 * catalogue is the one built under tests/ (RTCSIGNALD_LOCALEDIR). */
static void test_german(void)
{
	g_autofree char *dir = g_test_build_filename(G_TEST_BUILT, "locale", NULL);
	g_autofree char *localedir = g_strconcat("RTCSIGNALD_LOCALEDIR=", dir, NULL);
	const char *de[] = { "LANGUAGE=de", "LANG=C.UTF-8", "LC_ALL=", "LC_MESSAGES=", localedir, NULL };
	g_autofree char *bad = write_tmp("bad-de.conf", "[limits]\nmax_sessions = lots\n");
	g_autofree char *out = NULL, *err = NULL;

	g_assert_cmpint(run_env((const char *[]){ "--help", NULL }, de, &out, &err), ==, 0);
	if (!strstr(out, "Konfiguration prüfen und beenden") || !strstr(out, "--config=PFAD"))
		g_error("--help is not in German:\n%s", out);
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(run_env((const char *[]){ "--config", bad, "--check-config", NULL }, de, &out, &err), ==, 78);
	/* The reason itself stays English: it is also what a reload logs. */
	g_assert_nonnull(strstr(err, "ungültige Konfiguration"));
	g_assert_nonnull(strstr(err, "is not a valid non-negative integer"));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(run_env((const char *[]){ "--no-such-flag", NULL }, de, &out, &err), ==, 64);
	g_assert_nonnull(strstr(err, "»rtcsignald --help«"));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	/* The version line is the same in every language. */
	g_assert_cmpint(run_env((const char *[]){ "--version", NULL }, de, &out, &err), ==, 0);
	g_assert_cmpstr(out, ==, "rtcsignald " PACKAGE_VERSION "\n");
}

static void test_sigterm_drain(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct wsc *a = testd_register(d, "bye", "a", NULL);
	struct wsc *b = testd_register(d, "bye", "b", NULL);
	struct wsc *anon = testd_connect(d);

	struct wsc *v20 = testd_register(d, "bye", "w", ",\"protocol\":\"2.0\"");
	GBytes *frame = NULL;

	wsc_expect_quiet(anon); /* taken in */
	testd_signal(d, SIGTERM);
	/* 2.1 sessions are told why... */
	struct wsc *all[] = { a, b };
	for (size_t i = 0; i < G_N_ELEMENTS(all); i++) {
		json_object *o = wsc_expect_error(all[i], "SERVER_SHUTTING_DOWN");
		g_assert_cmpstr(testd_str(o, "reason"), ==, "Server is shutting down");
		json_object_put(o);
		g_assert_cmpint(wsc_wait_close(all[i], WSC_TIMEOUT_MS), ==, 1001);
		wsc_free(all[i]);
	}
	/* ...a v2.0 session, or one that declared nothing yet, gets the 1001
	 * alone: today's sleap-rtc worker exits on an error frame and
	 * reconnects after a plain close. */
	struct wsc *quiet[] = { v20, anon };
	for (size_t i = 0; i < G_N_ELEMENTS(quiet); i++) {
		g_assert_cmpint(wsc_recv(quiet[i], WSC_TIMEOUT_MS, &frame, NULL), ==, -EPIPE);
		g_assert_cmpint(quiet[i]->close_code, ==, 1001);
		wsc_free(quiet[i]);
	}
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 0);
	g_assert_true(testd_wait_log(d, "event=stopping", 0));
	g_assert_true(testd_wait_log(d, "event=stopped", 0));
	testd_free(d);
}

static void test_drain_is_bounded(void)
{
	struct testd *d = testd_start("[server]\ndrain_timeout = 1\n", NULL);
	/* A client that never reads, with megabytes waiting for it: its
	 * session cannot finish, so only drain_timeout ends the drain. */
	struct wsc *stuck = testd_register_slow(d, "s", "stuck");
	struct wsc *sender = testd_register(d, "s", "sender", NULL);
	g_autofree char *msg = testd_message_to("stuck", 60000);
	for (int i = 0; i < 100; i++) /* 6 MB: kernel buffers plus a queue */
		wsc_send_text(sender, msg);
	wsc_free(sender);
	g_assert_true(testd_wait_log(d, "event=peer_left room=s peer=sender", 10000));

	gint64 t0 = g_get_monotonic_time();
	testd_signal(d, SIGTERM);
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 0);
	double took = (g_get_monotonic_time() - t0) / 1e6;
	g_test_message("exited %.2f s after SIGTERM with drain_timeout = 1", took);
	g_assert_true(testd_wait_log(d, "drain timeout", 0));
	g_assert_cmpfloat(took, >=, 0.9);
	g_assert_cmpfloat(took, <, 4.0);
	wsc_free(stuck);
	testd_free(d);
}

/* A client that stops reading (its loop stalled) with data waiting for
 * it is cut for not answering its ping, and lws then takes seconds to
 * close it (it tries to flush first; for a client that never reads, for
 * ever): the line saying so was logged on every pass of the keepalive
 * walk, 42 times in 2.5 s (issue 19).  Once per connection now, and the
 * connection goes. */
static void test_no_answer_logged_once(void)
{
	struct testd *d = testd_start("[server]\nws_ping_interval = 1\nws_ping_timeout = 2\n", NULL);
	struct wsc *deaf = testd_register_slow(d, "na", "deaf");
	struct wsc *sender = testd_register(d, "na", "sender", NULL);
	g_autofree char *msg = testd_message_to("deaf", 60000);

	deaf->auto_pong = false;
	for (int i = 0; i < 20; i++) /* 1.2 MB: kernel buffers full, lws holds the rest */
		wsc_send_text(sender, msg);
	g_assert_true(testd_wait_log(d, "no answer for", 10000));
	/* And closed: lws, flushing first, held it open for ever. */
	gint64 t0 = g_get_monotonic_time();
	g_assert_true(testd_wait_log(d, "event=peer_left room=na peer=deaf", 15000));
	double took = (g_get_monotonic_time() - t0) / 1e6;
	g_test_message("logged %u times; gone %.2f s after the line", testd_log_count(d, "no answer for"),
		       took);
	g_assert_cmpfloat(took, <, 3.0);
	g_assert_cmpuint(testd_log_count(d, "no answer for"), ==, 1);
	wsc_free(deaf);
	wsc_free(sender);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A plain TCP connection to D's WebSocket port, saying nothing. */
static int tcp_connect(struct testd *d)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)d->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	return fd;
}

/* A client that connects and goes without a word (a port scanner, a load
 * balancer's TCP check) is nothing to the daemon. */
static void test_silent_close(void)
{
	struct testd *d = testd_start(NULL, NULL);

	for (int i = 0; i < 20; i++)
		close(tcp_connect(d));
	g_assert_true(testd_wait_log_count(d, "connection released", 20, 10000));
	struct wsc *c = testd_register(d, "r", "after", NULL);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Out of descriptors, the daemon pauses accepting instead of spinning on
 * a listening socket that stays readable, and takes the waiting clients
 * once descriptors are free again. */
static void test_out_of_descriptors(void)
{
	enum { N = 200 };
	const struct testd_opts o = { .prefix = (const char *const[]){ "prlimit", "--nofile=128", NULL } };
	struct testd *d = testd_start_opts(&o);
	int fds[N];

	/* Plain TCP clients that never speak: each holds a descriptor. */
	for (int i = 0; i < N; i++)
		fds[i] = tcp_connect(d);
	g_assert_true(testd_wait_log(d, "pausing new connections", 10000));
	for (int i = 0; i < N; i++)
		close(fds[i]);
	g_assert_true(testd_wait_log(d, "accepting connections again", 10000));
	/* One warning per pause, not one per turn of the loop. */
	g_assert_cmpuint(testd_log_count(d, "accept failed"), <=, 3);
	struct wsc *c = testd_register(d, "r", "after", NULL);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_http_426(void)
{
	struct testd *d = testd_start(NULL, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)d->port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char buf[1024] = "";
	size_t got = 0;
	const char *req = "GET /any/path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

	g_assert_cmpint(connect(fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	g_assert_cmpint(write(fd, req, strlen(req)), ==, (ssize_t)strlen(req));
	for (ssize_t n; got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0;)
		got += (size_t)n;
	close(fd);
	g_assert_true(g_str_has_prefix(buf, "HTTP/1.1 426"));
	g_assert_nonnull(strstr(buf, "WebSocket endpoint"));
	/* The port still upgrades afterwards, on any path. */
	g_autoptr(GError) err = NULL;
	struct wsc *c = wsc_connect("127.0.0.1", d->port, "/some/where?x=1", &err);
	g_assert_no_error(err);
	wsc_expect_quiet(c);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_reload(void)
{
	struct testd *d = testd_start("[limits]\nmax_message_bytes = 65536\n", NULL);
	struct wsc *c = testd_register(d, "rl", "r", NULL);
	GString *msg = g_string_new("{\"type\":\"ping\",\"pad\":\"");
	while (msg->len < 4000)
		g_string_append_c(msg, 'x');
	g_string_append(msg, "\"}");
	wsc_send_text(c, msg->str);
	json_object_put(wsc_expect(c, "pong"));

	/* A bad file is refused; the daemon keeps its configuration. */
	testd_write_conf(d, "[limits]\nmax_message_bytes = tiny\n");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "event=reload_failed", 5000));
	g_assert_true(testd_wait_log(d, "max_message_bytes", 0));
	wsc_send_text(c, msg->str);
	json_object_put(wsc_expect(c, "pong"));

	/* A good one applies: the lower limit now closes with 1009. */
	testd_write_conf(d, "[limits]\nmax_message_bytes = 2048\n");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "event=reloaded", 5000));
	wsc_send_text(c, msg->str);
	g_assert_cmpint(wsc_wait_close(c, WSC_TIMEOUT_MS), ==, 1009);
	g_string_free(msg, TRUE);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static bool have_ipv6_loopback(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&s6, sizeof s6) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static void test_ipv6_and_several_listeners(void)
{
	if (!have_ipv6_loopback()) {
		g_test_skip("no IPv6 loopback on this machine");
		return;
	}
	struct testd *d = testd_start(NULL, (const char *[]){ "--listen", "[::1]:0;127.0.0.1:0", NULL });
	g_assert_true(testd_wait_log(d, "listening on [::1]:", 0));
	int port6 = testd_logged_port(d, "listening on [::1]:");
	g_autoptr(GError) err = NULL;
	struct wsc *v6 = wsc_connect("::1", port6, "/", &err);
	g_assert_no_error(err);
	wsc_send_text(v6, "{\"type\":\"register\",\"peer_id\":\"six\",\"room_id\":\"dual\"}");
	json_object_put(wsc_expect(v6, "registered_auth"));
	struct wsc *v4 = testd_register(d, "dual", "four", NULL);
	wsc_send_text(v4, "{\"type\":\"peer_message\",\"to_peer_id\":\"six\",\"payload\":\"over v6\"}");
	json_object *o = wsc_expect(v6, "peer_message");
	g_assert_cmpstr(testd_str(o, "payload"), ==, "over v6");
	json_object_put(o);
	wsc_free(v6);
	wsc_free(v4);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_turn_credentials(void)
{
	const char *secret = "coturn-shared-secret";
	g_autofree char *conf = g_strdup_printf(
		"[turn]\nstun_uris = stun:stun.example.org:3478\n"
		"turn_uris = turn:turn.example.org:3478?transport=udp;turns:turn.example.org:5349\n"
		"secret = %s\ncredential_ttl = 600\n", secret);
	struct testd *d = testd_start(conf, NULL);
	struct wsc *c = testd_connect(d);
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;

	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"w\",\"room_id\":\"turn\"}");
	json_object *o = wsc_expect(c, "registered_auth");
	json_object *ice = json_object_object_get(o, "ice_servers");
	g_assert_cmpint(json_object_array_length(ice), ==, 2);
	json_object *stun = json_object_array_get_idx(ice, 0), *turn = json_object_array_get_idx(ice, 1);
	g_assert_cmpstr(json_object_get_string(json_object_array_get_idx(json_object_object_get(stun, "urls"), 0)), ==,
			"stun:stun.example.org:3478");
	g_assert_cmpint(json_object_array_length(json_object_object_get(turn, "urls")), ==, 2);
	const char *user = testd_str(turn, "username");
	g_assert_nonnull(user);
	long long expiry = g_ascii_strtoll(user, NULL, 10);
	g_assert_cmpint(expiry, >=, now + 600 - 5);
	g_assert_cmpint(expiry, <=, now + 600 + 5);
	g_assert_cmpstr(strchr(user, ':'), ==, ":w");
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mac_len;
	HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)user, strlen(user), mac, &mac_len);
	g_autofree char *want = g_base64_encode(mac, mac_len);
	g_assert_cmpstr(testd_str(turn, "credential"), ==, want);
	g_assert_cmpstr(json_object_to_json_string(json_object_object_get(o, "mesh_ice_servers")), ==,
			json_object_to_json_string(ice));
	json_object_put(o);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, secret));
	testd_free(d);
}

static void test_loopback_rule_unit(void)
{
	struct sockaddr_in v4 = { .sin_family = AF_INET };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };

	inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
	g_assert_true(netaddr_is_loopback((struct sockaddr *)&v4));
	inet_pton(AF_INET, "127.200.3.4", &v4.sin_addr);
	g_assert_true(netaddr_is_loopback((struct sockaddr *)&v4));
	inet_pton(AF_INET, "10.0.0.1", &v4.sin_addr);
	g_assert_false(netaddr_is_loopback((struct sockaddr *)&v4));
	inet_pton(AF_INET, "128.0.0.1", &v4.sin_addr);
	g_assert_false(netaddr_is_loopback((struct sockaddr *)&v4));
	inet_pton(AF_INET6, "::1", &v6.sin6_addr);
	g_assert_true(netaddr_is_loopback((struct sockaddr *)&v6));
	inet_pton(AF_INET6, "::ffff:127.0.0.9", &v6.sin6_addr);
	g_assert_true(netaddr_is_loopback((struct sockaddr *)&v6));
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &v6.sin6_addr);
	g_assert_false(netaddr_is_loopback((struct sockaddr *)&v6));
	inet_pton(AF_INET6, "fe80::1", &v6.sin6_addr);
	g_assert_false(netaddr_is_loopback((struct sockaddr *)&v6));
}

/* A test host: a network namespace joined to ours by a veth pair. */
static char netns[32];

static int sh(const char *cmd)
{
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	int status;
	if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
			  NULL, NULL, NULL, NULL, &status, NULL))
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool netns_up(void)
{
	/* Namespaces of earlier runs that died before cleaning up. */
	sh("for n in $(ip netns list 2>/dev/null | sed -n 's/^\\(rtcsig[0-9]*\\).*/\\1/p'); do "
	   "kill -0 ${n#rtcsig} 2>/dev/null || { ip link del ${n}h; ip netns del $n; }; done");
	g_snprintf(netns, sizeof netns, "rtcsig%d", (int)getpid());
	g_auto(GStrv) cmds = g_new0(char *, 8);
	char *list[] = {
		g_strdup_printf("ip netns add %s", netns),
		g_strdup_printf("ip link add %sh type veth peer name %sn", netns, netns),
		g_strdup_printf("ip link set %sn netns %s", netns, netns),
		g_strdup_printf("ip addr add 10.213.77.1/24 dev %sh", netns),
		g_strdup_printf("ip link set %sh up", netns),
		g_strdup_printf("ip netns exec %s ip addr add 10.213.77.2/24 dev %sn", netns, netns),
		g_strdup_printf("ip netns exec %s ip link set %sn up", netns, netns),
	};
	memcpy(cmds, list, sizeof list);
	for (size_t i = 0; cmds[i]; i++)
		if (sh(cmds[i]) != 0)
			return false;
	return true;
}

static void netns_down(void)
{
	g_autofree char *a = g_strdup_printf("ip link del %sh", netns);
	g_autofree char *b = g_strdup_printf("ip netns del %s", netns);
	sh(a);
	sh(b);
}

/* Connects from inside the test host; the outcome as an exit code:
 * 0 upgraded and registered, 2 refused with 403. */
static int connect_from_netns(int port)
{
	pid_t pid = fork();
	if (pid == 0) {
		g_autofree char *path = g_strdup_printf("/var/run/netns/%s", netns);
		int nsfd = open(path, O_RDONLY);
		if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0)
			_exit(3);
		GError *err = NULL;
		struct wsc *c = wsc_connect("10.213.77.1", port, "/", &err);
		if (!c) /* refused with an HTTP status, or something else went wrong */
			_exit(strstr(err->message, " 403 ") ? 2 : 5);
		wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"remote\",\"room_id\":\"far\"}");
		GBytes *b = NULL;
		_exit(wsc_recv(c, WSC_TIMEOUT_MS, &b, NULL) == 0 &&
			      strstr(g_bytes_get_data(b, NULL), "registered_auth") ? 0 : 4);
	}
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_open_mode_non_loopback(void)
{
	if (getuid() != 0 || !netns_up()) {
		netns_down();
		g_test_skip("cannot create a network namespace here (needs root and iproute2); "
			    "the rule itself is covered by /lifecycle/loopback-rule-unit");
		return;
	}
	const char *listen[] = { "--listen", "10.213.77.1:0", NULL };
	struct testd *d = testd_start(NULL, listen);
	int port = testd_logged_port(d, "listening on 10.213.77.1:");
	g_assert_cmpint(connect_from_netns(port), ==, 2);
	g_assert_true(testd_wait_log(d, "code=not_loopback", 5000));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* allow_anonymous lets the same client in. */
	d = testd_start("[server]\nallow_anonymous = true\n", listen);
	port = testd_logged_port(d, "listening on 10.213.77.1:");
	g_assert_cmpint(connect_from_netns(port), ==, 0);
	g_assert_true(testd_wait_log(d, "remote=10.213.77.2", 5000));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	netns_down();
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/lifecycle/cli", test_cli);
	g_test_add_func("/lifecycle/cli-german", test_german);
	g_test_add_func("/lifecycle/sigterm-drain", test_sigterm_drain);
	g_test_add_func("/lifecycle/drain-is-bounded", test_drain_is_bounded);
	g_test_add_func("/lifecycle/http-426", test_http_426);
	g_test_add_func("/lifecycle/reload", test_reload);
	g_test_add_func("/lifecycle/ipv6-and-several-listeners", test_ipv6_and_several_listeners);
	g_test_add_func("/lifecycle/turn-credentials", test_turn_credentials);
	g_test_add_func("/lifecycle/loopback-rule-unit", test_loopback_rule_unit);
	g_test_add_func("/lifecycle/open-mode-non-loopback", test_open_mode_non_loopback);
	g_test_add_func("/lifecycle/silent-close", test_silent_close);
	g_test_add_func("/lifecycle/no-answer-logged-once", test_no_answer_logged_once);
	g_test_add_func("/lifecycle/out-of-descriptors", test_out_of_descriptors);
	return g_test_run();
}
