/* Runs the real rtcsignald for a test: on a free loopback port, with its
 * stderr captured so a test can await a log event instead of sleeping. */
#pragma once

#include "ctl/httpc.h"
#include "wsclient.h"

#include <glib.h>
#include <stdbool.h>

struct testd {
	GPid pid;
	int port;       /* WebSocket on 127.0.0.1, 0 if not listening there */
	int admin_port; /* admin on 127.0.0.1, 0 if none */
	int err_fd;
	GThread *reader;
	GMutex lock;
	GCond cond;
	GString *log;
	bool exited;
	int status;
	char *dir;
	char *conf;
};

/* Starts the daemon with CONF_TEXT as its config file (NULL: an empty
 * file) and ARGS (NULL-terminated, may be NULL) after the defaults
 * (--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-level debug).  Fails the test when the
 * daemon does not come up. */
struct testd *testd_start(const char *conf_text, const char *const *args);

struct testd_opts {
	const char *conf;
	const char *const *args;   /* after the defaults */
	const char *const *prefix; /* argv in front of the daemon, e.g. systemd-socket-activate */
	const char *const *env;    /* extra NAME=VALUE */
	const int *fds;            /* become descriptors 3, 4, ... of the daemon */
	unsigned n_fds;
	bool no_listen_defaults;   /* leave out --listen and --admin-listen */
	bool no_wait;              /* return at once, do not await "event=ready" */
	bool journal_stream;       /* JOURNAL_STREAM names the daemon's stderr */
};
struct testd *testd_start_opts(const struct testd_opts *o);
/* Waits until the log holds NEEDLE (counting from the start); false on
 * timeout or exit. */
bool testd_wait_log(struct testd *d, const char *needle, int timeout_ms);
/* The same until NEEDLE occurs N times. */
bool testd_wait_log_count(struct testd *d, const char *needle, unsigned n, int timeout_ms);
/* The port logged right after PREFIX ("admin listening on 127.0.0.1:"),
 * or 0. */
int testd_logged_port(struct testd *d, const char *prefix);
/* How often NEEDLE occurs in the log so far. */
unsigned testd_log_count(struct testd *d, const char *needle);
char *testd_log_copy(struct testd *d);
void testd_signal(struct testd *d, int sig);
/* Waits for the daemon to exit: its exit status, or -1 on timeout. */
int testd_wait_exit(struct testd *d, int timeout_ms);
/* SIGTERM and wait; the exit status. */
int testd_stop(struct testd *d);
long testd_rss_kib(struct testd *d);
void testd_free(struct testd *d);
/* Rewrites the config file (for reload tests). */
void testd_write_conf(struct testd *d, const char *conf_text);

/* METHOD PATH on 127.0.0.1:PORT with extra header lines (each ending in
 * \r\n, may be NULL) and BODY (may be NULL), through httpc: 0 or a negative
 * errno; clear OUT either way. */
int testd_http(int port, const char *method, const char *path, const char *headers,
	       const char *body, struct httpc_reply *out);

/* The value of the sample NAME (with its labels, as written) in the
 * Prometheus text TEXT, or NAN. */
double testd_series(const char *text, const char *name);
/* The same from a scrape of D's /metrics. */
double testd_metric(struct testd *d, const char *name);
/* Scrapes until the sample NAME reaches AT_LEAST or TIMEOUT_MS pass: its
 * last value. */
double testd_await_metric(struct testd *d, const char *name, double at_least, int timeout_ms);
/* False when D's RSS says little of the daemon's own memory: run under
 * ThreadSanitizer or valgrind, whose shadow memory grows with it. */
bool testd_rss_meaningful(struct testd *d);

struct wsc *testd_connect(struct testd *d);
/* Connects and registers PEER_ID in ROOM as a 2.1 session (every error
 * of docs/protocol.md); EXTRA is appended inside the
 * register object (e.g. ",\"role\":\"worker\""), may be NULL.  Returns a
 * client whose registered_auth has been received and checked. */
struct wsc *testd_register(struct testd *d, const char *room, const char *peer_id,
			   const char *extra);
/* The same without EXTRA on a connection with a 4 KiB receive buffer, for
 * a peer the test then leaves unread: a slow reader. */
struct wsc *testd_register_slow(struct testd *d, const char *room, const char *peer_id);
/* A peer_message to TO_PEER of BYTES bytes (payload a run of 'q'). */
char *testd_message_to(const char *to_peer, size_t bytes);

/* O's member KEY as a string (a number as its text), or NULL when absent
 * or null. */
const char *testd_str(json_object *o, const char *key);

/* GET /ready on D answers STATUS, its body holding REASON_PART unless
 * NULL; fails the test otherwise. */
void testd_expect_ready(struct testd *d, int status, const char *reason_part);

/* METHOD PATH on D's admin API with the bearer TOKEN and a JSON BODY (may
 * be NULL): the answer's JSON.  Fails the test unless the status is WANT. */
json_object *testd_admin_api(struct testd *d, const char *token, const char *method,
			     const char *path, const char *body, int want);

/* Issue 15: the next message on C is a presence event (WATCH_ID NULL) or
 * a watch event of TYPE (peer_joined, peer_updated) about PEER_ID, its
 * keys exactly type[, watch_id], peer and its peer exactly a peer_list
 * entry, with no private ("_") key anywhere; fails the test otherwise.
 * Returns the message. */
json_object *testd_expect_peer_event(struct wsc *c, const char *type, const char *watch_id,
				     const char *peer_id);
/* The same for peer_left about PEER_ID with REASON. */
void testd_expect_peer_left(struct wsc *c, const char *watch_id, const char *peer_id, const char *reason);
/* The next message on C as JSON within TIMEOUT_MS (reading answers the
 * server's pings meanwhile); NULL on timeout or close. */
json_object *testd_recv_json_within(struct wsc *c, int timeout_ms);
