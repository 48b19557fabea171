/* Faults of a real host, against the real daemon: the identity provider's
 * key set endpoint down or hanging past the fetch timeout (test-auth
 * covers garbage and 404), then back; the room store's disk full while
 * running (a small tmpfs in a user and mount namespace of the daemon's
 * own), read-only at start, read-only while running (an ext4 image on a
 * loop device that an error turns read-only), and kill -9 after
 * acknowledged writes; the wall clock stepped (libfaketime); kill -9
 * under load with socket activation. */
#include "httpsd.h"
#include "jwtmint.h"
#include "testd.h"

#include <arpa/inet.h>
#include <openssl/rsa.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"
#define ADMIN "admin-secret-for-tests"

/* --- a TCP relay in front of the HTTPS server, on a port that stays the
 * same: it forwards, refuses (no listener: connection refused) or
 * accepts and never answers --- */

enum relay_mode { RELAY_FORWARD, RELAY_DOWN, RELAY_HANG };

struct relay {
	int port, target;
	GMutex lock;
	GCond cond;
	enum relay_mode mode, applied;
	bool stop;
	GThread *thread;
	GPtrArray *held; /* fds of HANG connections, as GINT_TO_POINTER */
};

static int listen_on(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(listen(fd, 64), ==, 0);
	return fd;
}

/* Copies both ways between two sockets until either ends. */
static gpointer pipe_main(gpointer p)
{
	int *fds = p;
	struct pollfd pf[2] = { { .fd = fds[0], .events = POLLIN }, { .fd = fds[1], .events = POLLIN } };
	char buf[16384];

	for (int spins = 0; spins < 100000 && poll(pf, 2, 30000) > 0; spins++) {
		int from = pf[0].revents ? 0 : 1;
		ssize_t n = read(pf[from].fd, buf, sizeof buf);
		if (n <= 0 || send(pf[!from].fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
			break;
	}
	close(fds[0]);
	close(fds[1]);
	g_free(fds);
	return NULL;
}

static void forward(struct relay *r, int cfd)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)r->target),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(sfd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(sfd);
		close(cfd);
		return;
	}
	int *fds = g_new(int, 2);
	fds[0] = cfd;
	fds[1] = sfd;
	g_thread_unref(g_thread_new("relay-pipe", pipe_main, fds));
}

static gpointer relay_main(gpointer p)
{
	struct relay *r = p;
	int lfd = listen_on(r->port);

	g_mutex_lock(&r->lock);
	while (!r->stop) {
		/* The listener exists but in RELAY_DOWN. */
		if (r->mode == RELAY_DOWN && lfd >= 0) {
			close(lfd);
			lfd = -1;
		} else if (r->mode != RELAY_DOWN && lfd < 0) {
			lfd = listen_on(r->port);
		}
		r->applied = r->mode;
		g_cond_broadcast(&r->cond);
		enum relay_mode mode = r->mode;
		g_mutex_unlock(&r->lock);
		struct pollfd pf = { .fd = lfd, .events = POLLIN };
		int cfd = -1;
		if (lfd >= 0 && poll(&pf, 1, 20) > 0)
			cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		else if (lfd < 0)
			g_usleep(20000);
		g_mutex_lock(&r->lock);
		if (cfd < 0)
			continue;
		if (mode == RELAY_HANG)
			g_ptr_array_add(r->held, GINT_TO_POINTER(cfd));
		else
			forward(r, cfd);
	}
	g_mutex_unlock(&r->lock);
	if (lfd >= 0)
		close(lfd);
	return NULL;
}

static struct relay *relay_start(int target)
{
	struct relay *r = g_new0(struct relay, 1);
	/* A free port: bind to 0 and let go of it. */
	int fd = listen_on(0);
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &len);
	r->port = ntohs(sa.sin_port);
	close(fd);
	r->target = target;
	r->held = g_ptr_array_new();
	g_mutex_init(&r->lock);
	g_cond_init(&r->cond);
	r->applied = (enum relay_mode)-1;
	r->thread = g_thread_new("relay", relay_main, r);
	g_mutex_lock(&r->lock);
	while (r->applied != RELAY_FORWARD)
		g_cond_wait(&r->cond, &r->lock);
	g_mutex_unlock(&r->lock);
	return r;
}

/* Returns once the relay works in MODE. */
static void relay_set(struct relay *r, enum relay_mode mode)
{
	gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	g_mutex_lock(&r->lock);
	r->mode = mode;
	while (r->applied != mode)
		g_assert_true(g_cond_wait_until(&r->cond, &r->lock, deadline));
	g_mutex_unlock(&r->lock);
}

static void relay_stop(struct relay *r)
{
	g_mutex_lock(&r->lock);
	r->stop = true;
	g_mutex_unlock(&r->lock);
	g_thread_join(r->thread);
	for (guint i = 0; i < r->held->len; i++)
		close(GPOINTER_TO_INT(r->held->pdata[i]));
	g_ptr_array_unref(r->held);
	g_mutex_clear(&r->lock);
	g_cond_clear(&r->cond);
	g_free(r);
}

/* --- the daemon with one issuer whose keys come through the relay --- */

static EVP_PKEY *key1, *key2;

static struct testd *start_issuer(struct relay *r, struct httpsd *h)
{
	g_autofree char *conf = g_strdup_printf(
		"[admin]\ntoken = " ADMIN "\n[rooms]\nmax_ttl = 0\n[issuer lab]\nissuer = " ISS
		"\naudience = " AUD "\njwks_url = https://127.0.0.1:%d/lab.json\njwks_ca_file = %s\n"
		"jwks_refresh_min = 1\n",
		r->port, h->ca_file);
	return testd_start(conf, NULL);
}

static void new_room(struct testd *d, char **id, char **token)
{
	json_object *o = testd_admin_api(d, ADMIN, "POST", "/api/rooms", "{}", 201);
	*id = g_strdup(testd_str(o, "room_id"));
	*token = g_strdup(testd_str(o, "token"));
	json_object_put(o);
}

/* Registers with a token signed by K as KID: CODE expected, NULL for
 * success; how long the answer took, in ms. */
static gint64 reg(struct testd *d, const char *room, const char *room_token, const char *peer,
		  EVP_PKEY *k, const char *kid, const char *code)
{
	g_autofree char *jwt = jwtmint_token(k, kid, jwtmint_claims(ISS, AUD, peer));
	struct wsc *c = testd_connect(d);
	gint64 t0 = g_get_monotonic_time();
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"protocol\":\"2.1\","
		     "\"token\":\"%s\",\"id_token\":\"%s\"}",
		  peer, room, room_token, jwt);
	json_object *o = code ? wsc_expect_error(c, code) : wsc_expect(c, "registered_auth");
	gint64 ms = (g_get_monotonic_time() - t0) / 1000;
	json_object_put(o);
	wsc_free(c);
	return ms;
}

/* /ready's body, for what it must not say. */
static const char *ready_body(struct testd *d)
{
	static char body[1024];
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/ready", NULL, NULL, &r), ==, 0);
	g_strlcpy(body, r.body->str, sizeof body);
	httpc_reply_clear(&r);
	return body;
}

#define FAILED "rtcsignald_jwks_fetches_total{result=\"error\"}"
#define OK "rtcsignald_jwks_fetches_total{result=\"ok\"}"

/* Down at start: not ready, and why; ready once it answers.  Down while
 * running: cached keys keep working, the failure is counted and logged,
 * and the next fetch after it returns brings the new key. */
static void test_jwks_down(void)
{
	struct httpsd *h = httpsd_start();
	struct relay *r = relay_start(h->port_good);
	g_autofree char *doc1 = jwtmint_key_set(key1, "k1", NULL, NULL), *doc2 = jwtmint_key_set(key1, "k1", key2, "k2");
	g_autofree char *room = NULL, *room_token = NULL;

	httpsd_put(h, "lab.json", doc1, strlen(doc1));
	relay_set(r, RELAY_DOWN);
	struct testd *d = start_issuer(r, h);
	g_assert_true(testd_wait_log(d, "no keys yet, next try in 5 s", 10000));
	testd_expect_ready(d, 503, "key set");
	g_assert_cmpfloat(testd_metric(d, FAILED), >=, 1);

	/* Back: the retry (5 s) fetches, and the daemon is ready. */
	relay_set(r, RELAY_FORWARD);
	g_assert_true(testd_wait_log(d, "1 keys (the identity provider answers again)", 10000));
	testd_expect_ready(d, 200, NULL);
	new_room(d, &room, &room_token);
	reg(d, room, room_token, "ada", key1, "k1", NULL);

	/* Down again, and the provider rotates meanwhile: a token with the
	 * cached key still registers; one with the new key cannot be
	 * checked and is refused at once (no wait on a dead endpoint). */
	relay_set(r, RELAY_DOWN);
	httpsd_put(h, "lab.json", doc2, strlen(doc2));
	double failed = testd_metric(d, FAILED);
	g_assert_cmpint(reg(d, room, room_token, "k2-early", key2, "k2", "AUTH_FAILED"), <, 2000);
	g_assert_true(testd_wait_log(d, "keeping the previous one", 5000));
	g_assert_cmpfloat(testd_metric(d, FAILED), ==, failed + 1);
	reg(d, room, room_token, "bob", key1, "k1", NULL);
	/* Still ready, and /ready and the metrics say why a new key fails. */
	testd_expect_ready(d, 200, "\"key_sets\":\"1 could not be refreshed");
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_jwks_stale"), ==, 1);

	/* Back: the retry brings k2, and the note goes. */
	relay_set(r, RELAY_FORWARD);
	g_assert_true(testd_wait_log(d, "2 keys (the identity provider answers again)", 15000));
	reg(d, room, room_token, "k2-late", key2, "k2", NULL);
	testd_expect_ready(d, 200, NULL);
	g_assert_null(strstr(ready_body(d), "key_sets"));
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_jwks_stale"), ==, 0);

	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	relay_stop(r);
	httpsd_stop(h);
}

/* The endpoint accepts and never answers: the fetch runs into its
 * timeout on the loop without holding anything else up, and a token
 * with a cached key registers meanwhile at once. */
static void test_jwks_slow(void)
{
	struct httpsd *h = httpsd_start();
	struct relay *r = relay_start(h->port_good);
	g_autofree char *doc1 = jwtmint_key_set(key1, "k1", NULL, NULL), *doc2 = jwtmint_key_set(key1, "k1", key2, "k2");
	g_autofree char *room = NULL, *room_token = NULL;

	httpsd_put(h, "lab.json", doc1, strlen(doc1));
	struct testd *d = start_issuer(r, h);
	g_assert_true(testd_wait_log(d, "key set https://127.0.0.1", 10000));
	new_room(d, &room, &room_token);
	reg(d, room, room_token, "ada", key1, "k1", NULL);

	relay_set(r, RELAY_HANG);
	httpsd_put(h, "lab.json", doc2, strlen(doc2));
	double failed = testd_metric(d, FAILED);
	/* An unknown kid starts a fetch that hangs; its register waits for
	 * it, on another connection. */
	g_autofree char *jwt2 = jwtmint_token(key2, "k2", jwtmint_claims(ISS, AUD, "k2-early"));
	struct wsc *waiting = testd_connect(d);
	wsc_sendf(waiting, "{\"type\":\"register\",\"peer_id\":\"k2-early\",\"room_id\":\"%s\",\"protocol\":\"2.1\","
			   "\"token\":\"%s\",\"id_token\":\"%s\"}", room, room_token, jwt2);
	g_assert_true(testd_wait_log(d, "a token names an unknown key", 5000));
	for (int i = 0; i < 5; i++) {
		g_autofree char *peer = g_strdup_printf("cached-%d", i);
		g_assert_cmpint(reg(d, room, room_token, peer, key1, "k1", NULL), <, 1000);
	}
	testd_expect_ready(d, 200, NULL);
	/* The fetch gives up (10 s): the waiting register is refused. */
	g_assert_true(testd_wait_log(d, "no complete response within", 15000));
	json_object_put(wsc_expect_error(waiting, "AUTH_FAILED"));
	wsc_free(waiting);
	g_assert_cmpfloat(testd_metric(d, FAILED), ==, failed + 1);

	/* The refused register's own refetch hung as well: the back-off
	 * (10 s) passes before the next try. */
	relay_set(r, RELAY_FORWARD);
	g_assert_true(testd_wait_log(d, "2 keys (the identity provider answers again)", 30000));
	reg(d, room, room_token, "k2-late", key2, "k2", NULL);

	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	relay_stop(r);
	httpsd_stop(h);
}

/* --- the room store --- */

/* "ok", or what PRAGMA integrity_check found, of the database at PATH. */
static char *integrity(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *out;

	g_assert_cmpint(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), ==, SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	g_assert_cmpint(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
	out = g_strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

/* The same of a copy of the database at PATH and its WAL, for one SQLite
 * cannot open in place (in another mount namespace, through
 * /proc/PID/root: it resolves the link and misses the mount). */
static char *integrity_of_copy(const char *path)
{
	g_autofree char *tmp = g_dir_make_tmp("rtcsignald-copy-XXXXXX", NULL);
	g_autofree char *copy = g_build_filename(tmp, "rooms.db", NULL);
	g_autofree char *cmd = g_strdup_printf("cp '%s' '%s' && { cp '%s-wal' '%s-wal' 2>/dev/null || true; }",
					       path, copy, path, copy);
	g_assert_cmpint(system(cmd), ==, 0);
	char *out = integrity(copy);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
	(void)!system(rm);
	return out;
}

static char *create_room(struct testd *d, int want)
{
	json_object *o = testd_admin_api(d, ADMIN, "POST", "/api/rooms", "{}", want);
	char *id = g_strdup(testd_str(o, "room_id"));
	json_object_put(o);
	return id;
}

/* Whether every room of IDS is in D's GET /api/rooms. */
static void expect_rooms(struct testd *d, GPtrArray *ids)
{
	json_object *o = testd_admin_api(d, ADMIN, "GET", "/api/rooms", NULL, 200);
	const char *text = json_object_to_json_string(o);
	for (guint i = 0; i < ids->len; i++)
		if (!strstr(text, ids->pdata[i]))
			g_error("room %s lost: %s", (char *)ids->pdata[i], text);
	json_object_put(o);
}

static bool userns_works(void)
{
	int status = -1;
	const char *argv[] = { "unshare", "-rm", "true", NULL };
	return g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
			    NULL, NULL, NULL, &status, NULL) &&
	       g_spawn_check_wait_status(status, NULL);
}

/* requests_per_second = 0: the tests create rooms as fast as they can. */
#define STORE_CONF "[admin]\ntoken = " ADMIN "\nrequests_per_second = 0\n[rooms]\nmax_ttl = 0\n"

/* The state directory on a 1 MiB tmpfs, filled up by a file the test
 * writes through /proc/PID/root: room creation fails with 503, a journal
 * line (event=backend_lost), rtcsignald_store_errors_total and /ready
 * say why, the database stays
 * sound, and once the file is gone the next write succeeds and the
 * daemon is ready again, with every acknowledged room still there. */
static void test_store_full(void)
{
	if (!userns_works()) {
		g_test_skip("unshare -rm does not work here (unprivileged user namespaces)");
		return;
	}
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-full-XXXXXX", NULL);
	const char *prefix[] = { "unshare", "-rm", "sh", "-c",
				 "mount -t tmpfs -o size=1m tmpfs \"$0\" && exec \"$@\"", dir, NULL };
	const char *args[] = { "--state-dir", dir, NULL };
	struct testd_opts o = { .conf = STORE_CONF, .prefix = prefix, .args = args };
	struct testd *d = testd_start_opts(&o);
	g_autoptr(GPtrArray) acked = g_ptr_array_new_with_free_func(g_free);

	g_ptr_array_add(acked, create_room(d, 201));
	g_autofree char *root = g_strdup_printf("/proc/%d/root%s", (int)d->pid, dir);
	g_autofree char *filler = g_build_filename(root, "filler", NULL);
	g_autofree char *db = g_build_filename(root, "rooms.db", NULL);
	FILE *f = fopen(filler, "w");
	g_assert_nonnull(f);
	static const char block[4096];
	for (int i = 0; i < 1024 && fwrite(block, sizeof block, 1, f) == 1; i++)
		;
	fclose(f);

	/* Full: the first write that needs a page more fails; WAL pages
	 * already there may take a few first. */
	int refused = 0;
	for (int i = 0; i < 200 && !refused; i++) {
		struct httpc_reply r;
		g_assert_cmpint(testd_http(d->admin_port, "POST", "/api/rooms",
					   "Authorization: Bearer " ADMIN "\r\n", "{}", &r), ==, 0);
		if (r.status == 201) {
			json_object *j = json_tokener_parse(r.body->str);
			g_ptr_array_add(acked, g_strdup(testd_str(j, "room_id")));
			json_object_put(j);
		} else {
			g_assert_cmpint(r.status, ==, 503);
			g_assert_nonnull(strstr(r.body->str, "room store is unavailable"));
			refused = 1;
		}
		httpc_reply_clear(&r);
	}
	g_assert_true(refused);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_store_errors_total{backend=\"sqlite\"}"), >=, 1);
	g_assert_true(testd_wait_log(d, "database or disk is full", 5000));
	g_assert_true(testd_wait_log(d, "event=backend_lost code=store", 1000));
	testd_expect_ready(d, 503, "room store unavailable");
	g_autofree char *check = integrity_of_copy(db);
	g_assert_cmpstr(check, ==, "ok");

	/* Space again: writes resume, and with the first one /ready. */
	g_assert_cmpint(unlink(filler), ==, 0);
	g_ptr_array_add(acked, create_room(d, 201));
	testd_expect_ready(d, 200, NULL);
	expect_rooms(d, acked);
	g_autofree char *check2 = integrity_of_copy(db);
	g_assert_cmpstr(check2, ==, "ok");
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_rmdir(dir);
}

/* A read-only state directory at start: the daemon says which and why,
 * and exits (1) rather than serve rooms it cannot keep; the database is
 * untouched. */
static void test_store_readonly_at_start(void)
{
	if (!userns_works()) {
		g_test_skip("unshare -rm does not work here (unprivileged user namespaces)");
		return;
	}
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-ro-XXXXXX", NULL);
	const char *args[] = { "--state-dir", dir, NULL };
	struct testd_opts o = { .conf = STORE_CONF, .args = args };
	struct testd *d = testd_start_opts(&o);
	g_autofree char *room = create_room(d, 201);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	const char *prefix[] = { "unshare", "-rm", "sh", "-c",
				 "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$@\"", dir,
				 NULL };
	o.prefix = prefix;
	o.no_wait = true;
	d = testd_start_opts(&o);
	int status = testd_wait_exit(d, 10000);
	g_assert_true(WIFEXITED(status) ? WEXITSTATUS(status) == 1 : status == 1);
	g_autofree char *log = testd_log_copy(d);
	g_assert_nonnull(strstr(log, "the state directory is not writable: Read-only file system"));
	testd_free(d);

	g_autofree char *db = g_build_filename(dir, "rooms.db", NULL);
	g_autofree char *check = integrity(db);
	g_assert_cmpstr(check, ==, "ok");
	o.prefix = NULL;
	o.no_wait = false;
	d = testd_start_opts(&o);
	g_autoptr(GPtrArray) ids = g_ptr_array_new();
	g_ptr_array_add(ids, room);
	expect_rooms(d, ids);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", dir);
	(void)!system(rm);
}

/* Runs the shell command CMD; its exit status (-1 when it did not run). */
static int sh(const char *cmd)
{
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	int status = -1;
	g_autofree char *out = NULL;

	if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &out, NULL,
			  &status, NULL))
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The device mounted on DIR in PID's mount namespace ("loop3"), or NULL. */
static char *mounted_device(GPid pid, const char *dir)
{
	g_autofree char *path = g_strdup_printf("/proc/%d/mountinfo", (int)pid), *text = NULL;
	char *dev = NULL;

	g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l && !dev; l++) {
		g_auto(GStrv) f = g_strsplit(*l, " ", -1);
		const char *sep = strstr(*l, " - ");
		if (g_strv_length(f) > 4 && strcmp(f[4], dir) == 0 && sep) {
			g_auto(GStrv) tail = g_strsplit(sep + 3, " ", 3);
			if (g_strv_length(tail) > 1 && g_str_has_prefix(tail[1], "/dev/"))
				dev = g_strdup(tail[1] + 5);
		}
	}
	return dev;
}

#define EXT4_MOUNT "mount -o loop,errors=remount-ro '%s' '%s'"

/* The state directory's file system (ext4 on a loop device, mounted
 * errors=remount-ro in the daemon's own mount namespace) turns read-only
 * under it, as on an I/O error: the kernel fails every write, through the
 * descriptors the database already has too (a bind mount made read-only
 * would not: those keep writing).  Room creation fails with 503, a
 * journal line (event=backend_lost), rtcsignald_store_errors_total and
 * /ready say why, and rooms already there keep taking registrations.  The
 * daemon lets go of the database, so the operator can unmount, repair
 * and mount it again without stopping the daemon; the next write then
 * succeeds, /ready is 200 again, and PRAGMA integrity_check finds the
 * database sound with every room acknowledged. */
static void test_store_readonly_running(void)
{
	if (geteuid() != 0 || sh("command -v mkfs.ext4 && command -v e2fsck && command -v nsenter") != 0) {
		g_test_skip("needs root, mkfs.ext4, e2fsck and nsenter (Debian: e2fsprogs, util-linux)");
		return;
	}
	g_autofree char *tmp = g_dir_make_tmp("rtcsignald-rorun-XXXXXX", NULL);
	g_autofree char *img = g_build_filename(tmp, "fs.img", NULL);
	g_autofree char *dir = g_build_filename(tmp, "state", NULL);
	g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
	g_autofree char *mkfs = g_strdup_printf("truncate -s 16M '%s' && mkfs.ext4 -q -F '%s'", img, img);
	g_assert_cmpint(sh(mkfs), ==, 0);
	g_autofree char *probe = g_strdup_printf("unshare -m sh -c \"" EXT4_MOUNT "\"", img, dir);
	if (sh(probe) != 0) {
		g_test_skip("cannot mount an ext4 image on a loop device here (no /dev/loop*?)");
		g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
		(void)!system(rm);
		return;
	}
	g_autofree char *mount_cmd = g_strdup_printf(EXT4_MOUNT " && exec \"$@\"", img, dir);
	/* Killed with the test, should it fail: a daemon left over would
	 * keep the loop device. */
	const char *prefix[] = { "setpriv", "--pdeathsig", "KILL", "unshare", "-m", "sh", "-c", mount_cmd, "sh", NULL };
	const char *args[] = { "--state-dir", dir, NULL };
	struct testd_opts o = { .conf = STORE_CONF, .prefix = prefix, .args = args };
	struct testd *d = testd_start_opts(&o);
	g_autoptr(GPtrArray) acked = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *room = NULL, *room_token = NULL;

	new_room(d, &room, &room_token);
	g_ptr_array_add(acked, g_strdup(room));
	for (int i = 0; i < 5; i++)
		g_ptr_array_add(acked, create_room(d, 201));
	g_autofree char *dev = mounted_device(d->pid, dir);
	g_assert_nonnull(dev);
	/* Written back first: synchronous=NORMAL leaves commits to the page
	 * cache, which a file system that fails loses, as a power cut would. */
	g_autofree char *sync = g_strdup_printf("sync -f /proc/%d/root%s/rooms.db", (int)d->pid, dir);
	g_assert_cmpint(sh(sync), ==, 0);

	g_autofree char *trigger = g_strdup_printf("/sys/fs/ext4/%s/trigger_fs_error", dev);
	/* Not g_file_set_contents: it writes a new file and renames it. */
	FILE *f = fopen(trigger, "w");
	if (!f || fputs("test-faults: read-only while running", f) < 0 || fclose(f) != 0) {
		g_test_skip("this kernel has no /sys/fs/ext4/DEV/trigger_fs_error");
		testd_stop(d);
		testd_free(d);
		g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
		(void)!system(rm);
		return;
	}

	/* Read-only: a clear error, counted, logged, and on /ready. */
	struct httpc_reply r;
	for (int i = 0; i < 2; i++) {
		g_assert_cmpint(testd_http(d->admin_port, "POST", "/api/rooms",
					   "Authorization: Bearer " ADMIN "\r\n", "{}", &r), ==, 0);
		g_assert_cmpint(r.status, ==, 503);
		g_assert_nonnull(strstr(r.body->str, "room store is unavailable"));
		httpc_reply_clear(&r);
	}
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_store_errors_total{backend=\"sqlite\"}"), >=, 2);
	g_assert_true(testd_wait_log(d, "event=backend_lost code=store", 5000));
	g_assert_true(testd_wait_log(d, "Read-only file system", 1000));
	testd_expect_ready(d, 503, "room store unavailable");
	/* Rooms in memory keep serving. */
	g_autofree char *extra = g_strdup_printf(",\"token\":\"%s\"", room_token);
	wsc_free(testd_register(d, room, "during", extra));

	/* The operator repairs the file system with the daemon running: it
	 * holds nothing open there (else umount says "target is busy"). */
	g_autofree char *repair = g_strdup_printf(
		"nsenter -t %d -m sh -c \"umount '%s' && { e2fsck -fy '%s' >/dev/null; [ \\$? -le 1 ]; } && " EXT4_MOUNT "\"",
		(int)d->pid, dir, img, img, dir);
	g_assert_cmpint(sh(repair), ==, 0);

	/* Writable again: the next write succeeds, without a restart. */
	g_ptr_array_add(acked, create_room(d, 201));
	testd_expect_ready(d, 200, NULL);
	expect_rooms(d, acked);
	wsc_free(testd_register(d, room, "after", extra));
	g_autofree char *db = g_strdup_printf("/proc/%d/root%s/rooms.db", (int)d->pid, dir);
	g_autofree char *check = integrity_of_copy(db);
	g_assert_cmpstr(check, ==, "ok");
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* And from the file system alone, in a daemon of its own. */
	d = testd_start_opts(&o);
	expect_rooms(d, acked);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
	(void)!system(rm);
}

/* Every room whose creation was acknowledged survives kill -9 right
 * after, in a database PRAGMA integrity_check finds sound. */
static void test_store_kill9(void)
{
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-kill-XXXXXX", NULL);
	const char *args[] = { "--state-dir", dir, NULL };
	struct testd_opts o = { .conf = STORE_CONF, .args = args };
	g_autoptr(GPtrArray) acked = g_ptr_array_new_with_free_func(g_free);

	for (int round = 0; round < 3; round++) {
		struct testd *d = testd_start_opts(&o);
		if (round)
			expect_rooms(d, acked);
		for (int i = 0; i < 50; i++)
			g_ptr_array_add(acked, create_room(d, 201));
		testd_signal(d, SIGKILL);
		g_assert_cmpint(testd_wait_exit(d, 10000), !=, -1);
		testd_free(d);
		g_autofree char *db = g_build_filename(dir, "rooms.db", NULL);
		g_autofree char *check = integrity(db);
		g_assert_cmpstr(check, ==, "ok");
	}
	struct testd *d = testd_start_opts(&o);
	expect_rooms(d, acked);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", dir);
	(void)!system(rm);
}

/* --- kill -9 under load, with socket activation --- */

/* A listening socket on a free loopback port, as systemd's .socket unit
 * holds it (Backlog= defaults to SOMAXCONN). */
static int listen_passed(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	g_assert_cmpint(listen(fd, 4096), ==, 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* The daemon killed with SIGKILL while 100 peers relay: the listening
 * sockets are systemd's (here the test's), so the clients' reconnects
 * while no daemon runs are queued, not refused; the next daemon (systemd's
 * Restart=) serves them and every peer registers again under its id; the
 * room store is sound and keeps the rooms it acknowledged. */
static void test_kill9_socket_activation(void)
{
	enum { N = 100 };
	int ws_port, admin_port;
	int fds[2] = { listen_passed(&ws_port), listen_passed(&admin_port) };
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-restart-XXXXXX", NULL);
	const char *prefix[] = { "/bin/sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", NULL };
	const char *env[] = { "LISTEN_FDS=2", "LISTEN_FDNAMES=ws:admin", NULL };
	const char *args[] = { "--state-dir", dir, NULL };
	/* On the default limits: this reconnecting lab on one address only
	 * succeeds, and successes have a high ceiling (issue 16). */
	const char *conf = STORE_CONF;
	const struct testd_opts o = { .conf = conf, .prefix = prefix, .env = env, .fds = fds, .n_fds = 2,
				      .no_listen_defaults = true, .args = args };
	struct wsc *c[N];
	int raw[N];
	g_autoptr(GError) err = NULL;
	g_autoptr(GPtrArray) acked = g_ptr_array_new_with_free_func(g_free);

	struct testd *d = testd_start_opts(&o);
	d->port = ws_port;
	d->admin_port = admin_port;
	g_ptr_array_add(acked, create_room(d, 201));
	for (int i = 0; i < N; i++) {
		g_autofree char *id = g_strdup_printf("p%d", i);
		c[i] = testd_register(d, "load", id, NULL);
	}
	for (int i = 0; i < N; i++)
		wsc_sendf(c[i], "{\"type\":\"peer_message\",\"to_peer_id\":\"p%d\",\"payload\":{}}", (i + 1) % N);
	g_ptr_array_add(acked, create_room(d, 201));
	testd_signal(d, SIGKILL);
	g_assert_cmpint(testd_wait_exit(d, 10000), !=, -1);
	testd_free(d);

	/* No daemon now: every connection ends, and reconnecting works. */
	for (int i = 0; i < N; i++) {
		g_assert_cmpint(wsc_wait_close(c[i], 5000), ==, 1006);
		wsc_free(c[i]);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ws_port),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		raw[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		g_assert_cmpint(connect(raw[i], (struct sockaddr *)&sin, sizeof sin), ==, 0);
	}
	g_autofree char *db = g_build_filename(dir, "rooms.db", NULL);
	g_autofree char *check = integrity(db);
	g_assert_cmpstr(check, ==, "ok");

	/* The next daemon on the same sockets serves the queued clients. */
	d = testd_start_opts(&o);
	d->port = ws_port;
	d->admin_port = admin_port;
	for (int i = 0; i < N; i++) {
		c[i] = wsc_adopt(raw[i], "127.0.0.1", ws_port, "/", NULL, &err);
		g_assert_no_error(err);
		wsc_sendf(c[i], "{\"type\":\"register\",\"peer_id\":\"p%d\",\"room_id\":\"load\"}", i);
	}
	for (int i = 0; i < N; i++)
		json_object_put(wsc_expect(c[i], "registered_auth"));
	wsc_sendf(c[0], "{\"type\":\"peer_message\",\"to_peer_id\":\"p%d\",\"payload\":{}}", N - 1);
	json_object_put(wsc_expect(c[N - 1], "peer_message"));
	expect_rooms(d, acked);
	for (int i = 0; i < N; i++)
		wsc_free(c[i]);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	close(fds[0]);
	close(fds[1]);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", dir);
	(void)!system(rm);
}

/* --- the wall clock stepped --- */

#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

/* A token whose iat is OFFSET seconds from the real now (exp 600 s
 * later), signed with key1 as "k1". */
static char *token_at(const char *sub, gint64 offset)
{
	json_object *c = jwtmint_claims(ISS, AUD, sub);
	gint64 now = g_get_real_time() / G_USEC_PER_SEC + offset;
	json_object_object_add(c, "iat", json_object_new_int64(now - 5));
	json_object_object_add(c, "exp", json_object_new_int64(now + 600));
	return jwtmint_token(key1, "k1", c);
}

static void reg_token(struct testd *d, struct wsc **out, const char *room, const char *room_token,
		      const char *peer, const char *jwt, const char *code)
{
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"protocol\":\"2.1\","
		     "\"token\":\"%s\",\"id_token\":\"%s\"}", peer, room, room_token, jwt);
	json_object_put(code ? wsc_expect_error(c, code) : wsc_expect(c, "registered_auth"));
	if (out && !code)
		*out = c;
	else
		wsc_free(c);
}

/* libfaketime steps the daemon's wall clock (only: its monotonic clock
 * stays real) a day forward, then a day back.  Token lifetimes follow
 * the wall clock (exp, iat, with the leeway), and so does the expiry of
 * a room (an absolute time its creator was told); timers do not: a
 * session open across both steps is neither pinged out nor cut, and the
 * loop stays healthy. */
static void test_clock_steps(void)
{
	if (!g_file_test(FAKETIME_LIB, G_FILE_TEST_EXISTS)) {
		g_test_skip("libfaketime is not installed (Debian: faketime)");
		return;
	}
	g_autofree char *jwks = jwtmint_jwks_file(key1, "k1");
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-clock-XXXXXX", NULL);
	g_autofree char *stamp = g_build_filename(dir, "faketime", NULL);
	g_assert_true(g_file_set_contents(stamp, "+0\n", -1, NULL));
	g_autofree char *conf = g_strdup_printf(STORE_CONF "[issuer lab]\nissuer = " ISS "\naudience = " AUD
						"\njwks_file = %s\n", jwks);
	g_autofree char *env_file = g_strdup_printf("FAKETIME_TIMESTAMP_FILE=%s", stamp);
	/* An ASan build wants its runtime first; libfaketime only wraps
	 * the clock calls, which ASan does not intercept. */
	const char *asan = g_getenv("ASAN_OPTIONS");
	g_autofree char *asan_env = g_strdup_printf("ASAN_OPTIONS=%s%sverify_asan_link_order=0", asan ? asan : "",
						    asan && *asan ? ":" : "");
	const char *env[] = { "LD_PRELOAD=" FAKETIME_LIB, env_file, "FAKETIME_NO_CACHE=1",
			      "FAKETIME_DONT_FAKE_MONOTONIC=1", asan_env, NULL };
	struct testd_opts o = { .conf = conf, .env = env };
	struct testd *d = testd_start_opts(&o);
	struct wsc *a = NULL, *b = NULL;

	json_object *r = testd_admin_api(d, ADMIN, "POST", "/api/rooms", "{\"expires_in\":2592000}", 201);
	g_autofree char *room = g_strdup(testd_str(r, "room_id")), *room_token = g_strdup(testd_str(r, "token"));
	json_object_put(r);
	g_autofree char *short_room = create_room(d, 201); /* expires in default_ttl, 7200 s */
	g_autofree char *now_tok = token_at("ada", 0);
	reg_token(d, &a, room, room_token, "ada", now_tok, NULL);

	/* A day forward. */
	g_assert_true(g_file_set_contents(stamp, "+1d\n", -1, NULL));
	g_assert_true(testd_wait_log(d, "room expired, 0 peers closed", 5000));
	g_assert_true(testd_wait_log(d, short_room, 1000));
	g_autofree char *stale = token_at("bob", 0), *fresh = token_at("bob", 86400);
	reg_token(d, NULL, room, room_token, "bob", stale, "AUTH_FAILED");
	reg_token(d, &b, room, room_token, "bob", fresh, NULL);
	g_assert_cmpint(wsc_sendf(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"bob\",\"payload\":{}}"), ==, 0);
	json_object_put(wsc_expect(b, "peer_message"));
	wsc_free(b);

	/* A day back from the real time: a token issued "now" by the real
	 * clock is from the future now, past the leeway. */
	g_assert_true(g_file_set_contents(stamp, "-1d\n", -1, NULL));
	g_autofree char *ahead = token_at("cy", 0), *behind = token_at("cy", -86400);
	reg_token(d, NULL, room, room_token, "cy", ahead, "AUTH_FAILED");
	reg_token(d, &b, room, room_token, "cy", behind, NULL);
	g_assert_cmpint(wsc_sendf(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"cy\",\"payload\":{}}"), ==, 0);
	json_object_put(wsc_expect(b, "peer_message"));
	/* The first session saw both steps and is still served, and no
	 * session was cut for silence. */
	g_assert_cmpuint(testd_log_count(d, "no answer for"), ==, 0);
	testd_expect_ready(d, 200, NULL);
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	jwtmint_jwks_file_remove(g_steal_pointer(&jwks));
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", dir);
	(void)!system(rm);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	signal(SIGPIPE, SIG_IGN);
	key1 = EVP_RSA_gen(2048);
	key2 = EVP_RSA_gen(2048);
	g_test_add_func("/faults/jwks-down", test_jwks_down);
	g_test_add_func("/faults/jwks-slow", test_jwks_slow);
	g_test_add_func("/faults/store-full", test_store_full);
	g_test_add_func("/faults/store-readonly-at-start", test_store_readonly_at_start);
	g_test_add_func("/faults/store-readonly-running", test_store_readonly_running);
	g_test_add_func("/faults/store-kill9", test_store_kill9);
	g_test_add_func("/faults/clock-steps", test_clock_steps);
	g_test_add_func("/faults/kill9-socket-activation", test_kill9_socket_activation);
	int r = g_test_run();
	EVP_PKEY_free(key1);
	EVP_PKEY_free(key2);
	return r;
}
