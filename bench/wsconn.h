/* wsconn: many non-blocking WebSocket client connections on one epoll
 * loop, with our own client-side RFC 6455 framing (masked frames, no
 * extensions).  Built for load generation: no per-message allocation on
 * the send path, output is batched per loop iteration, and an idle
 * connection holds no buffers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct wsloop;
struct wsconn;

struct wsconn_ops {
	/* The upgrade succeeded. */
	void (*open)(struct wsconn *c);
	/* One complete data message; TEXT is valid during the call only. */
	void (*message)(struct wsconn *c, const char *text, size_t len);
	/* The connection is gone and C is released after this returns.  WHY
	 * is NULL after a closing handshake we started, else a short
	 * reason ("connect", "handshake", "eof", "server_close", ...);
	 * CODE is the close code the server sent, or 0. */
	void (*closed)(struct wsconn *c, const char *why, int code);
};

/* Monotonic clock in nanoseconds. */
int64_t wsloop_now(void);

struct wsloop *wsloop_new(void);
void wsloop_free(struct wsloop *l);

/* Runs until DONE(DATA) is true (checked every iteration) or the
 * monotonic DEADLINE (ns) passes; TICK(DATA), if given, runs at least
 * every TICK_MS.  0, or -ETIMEDOUT at the deadline. */
int wsloop_run(struct wsloop *l, bool (*done)(void *data), void (*tick)(void *data),
	       void *data, int tick_ms, int64_t deadline);

/* One timer per loop: FN(DATA) runs from wsloop_run once the monotonic
 * clock (wsloop_now) reaches AT, a time already past at once.  The loop's
 * epoll timeout is set to it to the nanosecond (epoll_pwait2; the kernel's
 * timer slack, 50 us, may add to it).  Each call replaces the previous
 * one; AT 0 disarms. */
void wsloop_timer(struct wsloop *l, int64_t at, void (*fn)(void *data), void *data);

/* Starts connecting to DST (from SRC when not NULL; its port is chosen at
 * connect time, so many connections can share one source address) and
 * upgrading on path "/".  NULL with errno set when the socket cannot even
 * be created; later failures come through ops->closed. */
struct wsconn *wsconn_open(struct wsloop *l, const struct sockaddr *dst, socklen_t dst_len,
			   const struct sockaddr *src, socklen_t src_len,
			   const struct wsconn_ops *ops, void *user);
void *wsconn_user(const struct wsconn *c);
void wsconn_set_user(struct wsconn *c, void *user);
bool wsconn_is_open(const struct wsconn *c);
/* "connect", "upgrade", "open", "closing" or "closed". */
const char *wsconn_state(const struct wsconn *c);

/* Queues one text message; sent when the loop next flushes. */
void wsconn_send_text(struct wsconn *c, const char *text, size_t len);
/* Starts the closing handshake with CODE; ops->closed(c, NULL, code)
 * follows once the server answers (or with a reason on failure). */
void wsconn_close(struct wsconn *c, uint16_t code);
/* Closes the socket now, without a closing handshake and without calling
 * ops->closed. */
void wsconn_abort(struct wsconn *c);
