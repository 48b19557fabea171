/* wss:// served by the daemon itself ([server] tls_certificate, tls_key):
 * a test CA made here with the openssl command, the project's client and
 * Python's, names and dates checked by the clients, the protocol floor,
 * ALPN, rotation by SIGHUP, plain ws:// to the TLS port, the key's mode. */
#include "testd.h"
#include "wsclient.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A directory with ca.pem and, per name, NAME.pem / NAME.key signed by
 * it for localhost and 127.0.0.1. */
static char *pki;

static void sh(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	g_autofree char *cmd = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_autofree char *full = g_strdup_printf("cd '%s' && %s", pki, cmd);
	g_autofree char *out = NULL, *err_text = NULL;
	g_autoptr(GError) err = NULL;
	int status = -1;

	const char *argv[] = { "/bin/sh", "-c", full, NULL };
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err_text,
				   &status, &err));
	if (!g_spawn_check_wait_status(status, NULL))
		g_error("%s failed:\n%s%s", cmd, out, err_text);
}

/* NAME.pem (serial SERIAL, valid DAYS days; negative: expired) and
 * NAME.key, mode 0600. */
static void make_cert(const char *name, const char *serial, int days)
{
	sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.csr "
	   "-subj /CN=localhost 2>/dev/null && openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
	   "-set_serial %s -days %d -extfile ext.cnf -out %s.pem 2>/dev/null && chmod 600 %s.key",
	   name, name, name, serial, days, name, name);
}

static void make_pki(void)
{
	pki = g_dir_make_tmp("rtcsignald-tls-XXXXXX", NULL);
	sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
	   "-days 2 -subj /CN=rtcsignald-test-ca 2>/dev/null && "
	   "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf");
	make_cert("one", "0x1001", 2);
	make_cert("two", "0x2002", 2);
	make_cert("old", "0x3003", -1);
}

static char *path_in_pki(const char *name)
{
	return g_build_filename(pki, name, NULL);
}

/* The daemon serving NAME.pem / NAME.key, handed over the way systemd's
 * LoadCredential= does: relative names in $CREDENTIALS_DIRECTORY.  An
 * empty OpenSSL configuration, so that the floor seen is the daemon's
 * own and not Debian's system-wide MinProtocol. */
static struct testd *start_tls(const char *name)
{
	g_autofree char *conf = g_strdup_printf("[server]\ntls_certificate = %s.pem\ntls_key = %s.key\n", name, name);
	g_autofree char *creds = g_strdup_printf("CREDENTIALS_DIRECTORY=%s", pki);
	g_autofree char *empty = g_strdup_printf("OPENSSL_CONF=%s/empty.cnf", pki);
	sh(": > empty.cnf");
	const char *env[] = { creds, empty, NULL };
	struct testd_opts o = { .conf = conf, .env = env };
	return testd_start_opts(&o);
}

static struct wsc *connect_tls(struct testd *d, const char *name, GError **err)
{
	g_autofree char *ca = path_in_pki("ca.pem");
	struct wsc_opts o = { .tls_ca = ca, .tls_name = name };
	return wsc_connect_opts(&o, "127.0.0.1", d->port, "/", err);
}

static struct wsc *register_tls(struct testd *d, const char *room, const char *peer)
{
	g_autoptr(GError) err = NULL;
	struct wsc *c = connect_tls(d, NULL, &err);
	g_assert_no_error(err);
	g_assert_cmpint(wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\"}", peer, room),
			==, 0);
	json_object_put(wsc_expect(c, "registered_auth"));
	return c;
}

/* The serial of the certificate the server showed C, in hex. */
static char *peer_serial(struct wsc *c)
{
	X509 *x = SSL_get1_peer_certificate(c->ssl);
	g_assert_nonnull(x);
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = BN_bn2hex(bn);
	char *out = g_strdup(hex);
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
	return out;
}

/* A message from A reaches B: both sessions work. */
static void relay(struct wsc *a, struct wsc *b, const char *to)
{
	g_assert_cmpint(wsc_sendf(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"%s\",\"payload\":{\"n\":1}}", to),
			==, 0);
	json_object_put(wsc_expect(b, "peer_message"));
}

static void test_own_client(void)
{
	struct testd *d = start_tls("one");
	g_assert_true(testd_wait_log(d, "serving wss://", 1000));
	struct wsc *a = register_tls(d, "lab", "a");
	struct wsc *b = register_tls(d, "lab", "b");
	g_autofree char *serial = peer_serial(a);
	g_assert_cmpstr(serial, ==, "1001");
	/* HTTP/1.1 is what was agreed (the client offered no ALPN). */
	g_assert_cmpstr(SSL_get_version(a->ssl), ==, "TLSv1.3");
	relay(a, b, "b");
	relay(b, a, "a");
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_tls_handshakes_total{result=\"ok\"}"), ==, 2);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_tls_certificate_expiry_timestamp_seconds"), >,
			  (double)(g_get_real_time() / G_USEC_PER_SEC));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_python_client(void)
{
	if (!g_file_test("/usr/bin/python3", G_FILE_TEST_IS_EXECUTABLE) ||
	    system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0) {
		g_test_skip("python3-websockets is not installed");
		return;
	}
	struct testd *d = start_tls("one");
	g_autofree char *ca = path_in_pki("ca.pem");
	g_autofree char *script = g_strdup_printf(
		"import asyncio, json, ssl, websockets\n"
		"async def main():\n"
		"    ctx = ssl.create_default_context(cafile='%s')\n"
		"    async with websockets.connect('wss://localhost:%d/', ssl=ctx, open_timeout=5) as ws:\n"
		"        await ws.send(json.dumps({'type': 'register', 'peer_id': 'py', 'room_id': 'lab'}))\n"
		"        m = json.loads(await asyncio.wait_for(ws.recv(), 5))\n"
		"        assert m['type'] == 'registered_auth', m\n"
		"        print('registered over', ws.transport.get_extra_info('ssl_object').version())\n"
		"asyncio.run(main())\n",
		ca, d->port);
	const char *argv[] = { "/usr/bin/python3", "-c", script, NULL };
	g_autofree char *out = NULL, *err_text = NULL;
	int status = -1;
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err_text,
				   &status, NULL));
	if (!g_spawn_check_wait_status(status, NULL))
		g_error("python client failed:\n%s%s", out, err_text);
	g_assert_nonnull(strstr(out, "registered over TLSv1.3"));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* The client refuses a certificate for another name, and an expired one;
 * the daemon says so of the expired one when it loads it. */
static void test_client_refuses(void)
{
	g_autoptr(GError) err = NULL;
	struct testd *d = start_tls("one");
	g_assert_null(connect_tls(d, "wrong.example.org", &err));
	g_assert_nonnull(strstr(err->message, "hostname mismatch"));
	g_clear_error(&err);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	d = start_tls("old");
	g_assert_true(testd_wait_log(d, "has expired", 1000));
	g_assert_null(connect_tls(d, NULL, &err));
	g_assert_nonnull(strstr(err->message, "certificate has expired"));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* openssl s_client ARGS against D's port: its exit status and output. */
static int s_client(struct testd *d, const char *args, char **out)
{
	g_autofree char *cmd = g_strdup_printf(
		"OPENSSL_CONF='%s/empty.cnf' timeout 10 openssl s_client -connect 127.0.0.1:%d -CAfile '%s/ca.pem' "
		"-servername localhost %s < /dev/null 2>&1",
		pki, d->port, pki, args);
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	int status = -1;
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, NULL, &status, NULL));
	return g_spawn_check_wait_status(status, NULL) ? 0 : 1;
}

/* TLS 1.2 and 1.3 only, whatever the system's OpenSSL configuration;
 * ALPN http/1.1 even to a client that would rather have h2. */
static void test_protocols(void)
{
	struct testd *d = start_tls("one");
	g_autofree char *out = NULL;

	g_assert_cmpint(s_client(d, "-tls1_1 -cipher DEFAULT@SECLEVEL=0", &out), !=, 0);
	g_assert_nonnull(strstr(out, "alert protocol version"));
	g_assert_true(testd_wait_log(d, "TLS handshake failed: unsupported protocol", 5000));
	g_assert_cmpfloat(testd_await_metric(d, "rtcsignald_tls_handshakes_total{result=\"error\"}", 1, 5000), ==, 1);
	g_clear_pointer(&out, g_free);
	g_assert_cmpint(s_client(d, "-tls1_2", &out), ==, 0);
	g_assert_nonnull(strstr(out, "Protocol  : TLSv1.2"));
	g_assert_nonnull(strstr(out, "Verify return code: 0 (ok)"));
	g_clear_pointer(&out, g_free);
	g_assert_cmpint(s_client(d, "-alpn h2,http/1.1", &out), ==, 0);
	g_assert_nonnull(strstr(out, "ALPN protocol: http/1.1"));
	g_assert_nonnull(strstr(out, "Compression: NONE"));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* SIGHUP with renewed files: new connections get the new certificate,
 * an open one keeps working; files that do not go together fail the
 * reload and the running certificate stays. */
static void test_rotation(void)
{
	struct testd *d = start_tls("one");
	struct wsc *a = register_tls(d, "lab", "a");

	sh("cp two.pem one.pem && cp two.key one.key");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "new connections get certificate serial 2002", 5000));
	struct wsc *b = register_tls(d, "lab", "b");
	g_autofree char *old_serial = peer_serial(a), *new_serial = peer_serial(b);
	g_assert_cmpstr(old_serial, ==, "1001");
	g_assert_cmpstr(new_serial, ==, "2002");
	relay(a, b, "b");
	relay(b, a, "a");

	/* A certificate without its key: the reload fails as a whole. */
	sh("cp old.pem one.pem");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "does not match the certificate", 5000));
	g_assert_true(testd_wait_log(d, "event=reload_failed", 5000));
	struct wsc *c = register_tls(d, "lab", "c");
	g_autofree char *kept = peer_serial(c);
	g_assert_cmpstr(kept, ==, "2002");
	relay(a, c, "c");
	wsc_free(a);
	wsc_free(b);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	sh("cp two.pem one.pem"); /* one.* hold two's pair now */
}

/* Plain ws:// to the TLS port: refused at once (no hang until a
 * timeout), counted, and the daemon goes on serving. */
static void test_plain_to_tls_port(void)
{
	g_autoptr(GError) err = NULL;
	struct testd *d = start_tls("two");

	for (int i = 0; i < 3; i++) {
		gint64 t0 = g_get_monotonic_time();
		g_assert_null(wsc_connect("127.0.0.1", d->port, "/", &err));
		g_assert_cmpint(g_get_monotonic_time() - t0, <, WSC_TIMEOUT_MS * 1000 / 2);
		g_clear_error(&err);
	}
	g_assert_cmpfloat(testd_await_metric(d, "rtcsignald_tls_handshakes_total{result=\"error\"}", 3, 5000), ==, 3);
	g_assert_true(testd_wait_log(d, "TLS handshake failed: http request", 5000));
	struct wsc *a = register_tls(d, "lab", "a");
	wsc_free(a);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A client that connects and never says hello holds a socket only for
 * handshake_timeout_ms, as on a plain port. */
static void test_silent_client(void)
{
	g_autofree char *conf = g_strdup_printf("[server]\ntls_certificate = %s/two.pem\ntls_key = %s/two.key\n"
						"[limits]\nhandshake_timeout_ms = 300\n", pki, pki);
	struct testd *d = testd_start(conf, NULL);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)d->port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char b;

	g_assert_cmpint(connect(fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	gint64 t0 = g_get_monotonic_time();
	g_assert_cmpint(recv(fd, &b, 1, 0), <=, 0); /* closed, not timed out */
	g_assert_cmpint(g_get_monotonic_time() - t0, <, 3 * G_USEC_PER_SEC);
	close(fd);
	g_assert_cmpfloat(testd_await_metric(d, "rtcsignald_limit_hits_total{limit=\"handshake_timeout_ms\"}", 1, 5000),
			  ==, 1);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A key group or others may read is refused, saying what to run, by
 * --check-config and at start. */
static void test_key_mode(void)
{
	sh("chmod 640 two.key");
	g_autofree char *conf = g_strdup_printf("[server]\ntls_certificate = %s/two.pem\ntls_key = %s/two.key\n",
						pki, pki);
	struct testd_opts o = { .conf = conf, .no_wait = true };
	struct testd *d = testd_start_opts(&o);
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 78);
	g_autofree char *log = testd_log_copy(d);
	g_assert_nonnull(strstr(log, "two.key has mode 0640"));
	g_assert_nonnull(strstr(log, "run: chmod 600"));
	testd_free(d);

	/* The certificate without the key is a configuration error too. */
	g_autofree char *half = g_strdup_printf("[server]\ntls_certificate = %s/two.pem\n", pki);
	o.conf = half;
	d = testd_start_opts(&o);
	g_assert_cmpint(testd_wait_exit(d, 10000), ==, 78);
	g_assert_true(testd_wait_log(d, "tls_certificate and tls_key go together", 1000));
	testd_free(d);
	sh("chmod 600 two.key");
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	make_pki();
	g_test_add_func("/tls/own-client", test_own_client);
	g_test_add_func("/tls/python-client", test_python_client);
	g_test_add_func("/tls/client-refuses", test_client_refuses);
	g_test_add_func("/tls/protocols", test_protocols);
	g_test_add_func("/tls/rotation", test_rotation);
	g_test_add_func("/tls/plain-to-tls-port", test_plain_to_tls_port);
	g_test_add_func("/tls/silent-client", test_silent_client);
	g_test_add_func("/tls/key-mode", test_key_mode);
	int r = g_test_run();
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", pki);
	(void)!system(rm);
	return r;
}
