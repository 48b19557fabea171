/* A blocking WebSocket client for the tests: real RFC 6455 framing over a
 * TCP socket, every wait bounded by a timeout. */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#define WSC_TEXT 0x1
#define WSC_BINARY 0x2
#define WSC_CLOSE 0x8
#define WSC_PING 0x9
#define WSC_PONG 0xa

/* Default wait for something the server should send. */
#define WSC_TIMEOUT_MS 5000

typedef struct ssl_st SSL;

struct wsc {
	int fd;
	SSL *ssl; /* wss://, else NULL */
	GByteArray *in;
	int close_code; /* -1 until a close frame (or EOF: 1006) arrives */
	char *close_reason;
	bool auto_pong;
};

/* Connects to HOST:PORT and upgrades; NULL with ERR on any failure,
 * including an HTTP status other than 101 (the status line is in ERR). */
struct wsc *wsc_connect(const char *host, int port, const char *path, GError **err);
struct wsc_opts {
	const char *source; /* local address to bind, e.g. "127.0.0.2" */
	int rcvbuf;         /* SO_RCVBUF before connecting; 0: the default */
	const char *headers; /* extra request header lines, each ending in \r\n */
	/* wss://: the CA file that must have signed the server's certificate
	 * and the name it must carry (NULL: "localhost") */
	const char *tls_ca;
	const char *tls_name;
};
struct wsc *wsc_connect_opts(const struct wsc_opts *o, const char *host, int port,
			     const char *path, GError **err);
/* Upgrades FD, already connected to HOST:PORT; takes it, even on error.
 * HEADERS: extra request lines, may be NULL. */
struct wsc *wsc_adopt(int fd, const char *host, int port, const char *path, const char *headers,
		      GError **err);
void wsc_free(struct wsc *c);

int wsc_send_frame(struct wsc *c, int opcode, bool fin, const void *data, size_t len);
int wsc_send_text(struct wsc *c, const char *text);
int wsc_sendf(struct wsc *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* The next data message.  0 and *OUT (with *OPCODE); -ETIMEDOUT; -EPIPE
 * once the connection is closed (c->close_code tells how). */
int wsc_recv(struct wsc *c, int timeout_ms, GBytes **out, int *opcode);
/* The next message as a JSON object; fails the test on timeout/close. */
json_object *wsc_recv_json(struct wsc *c);
/* The next message, which must have "type" TYPE. */
json_object *wsc_expect(struct wsc *c, const char *type);
/* The next message, which must be an error with code CODE. */
json_object *wsc_expect_error(struct wsc *c, const char *code);
/* Nothing but TYPE arrives before the server answers a ping: proves the
 * server sent nothing in between, without sleeping. */
void wsc_expect_quiet(struct wsc *c);
/* Waits for the server to close; returns its close code (1006 for a
 * close without a frame), or -1 on timeout. */
int wsc_wait_close(struct wsc *c, int timeout_ms);
/* Bytes the kernel holds unread for us. */
int wsc_unread(struct wsc *c);
