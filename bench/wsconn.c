#include "wsconn.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xa

/* What one read(2) may take; shared by every connection of a loop. */
#define READ_CHUNK (256 * 1024)
/* A buffer that grew past this is released once empty. */
#define BUF_KEEP 16384
/* Largest message accepted from the server. */
#define MAX_MESSAGE (64u << 20)
#define MAX_EVENTS 256

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct buf {
	char *data;
	size_t len, cap, off; /* bytes [off, len) are pending */
};

enum state { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_DEAD };

struct wsconn {
	struct wsloop *loop;
	int fd;
	enum state state;
	uint32_t events; /* registered with epoll */
	bool dirty;      /* on loop->dirty */
	struct buf in, out, frag;
	int frag_opcode;
	char accept[29]; /* expected Sec-WebSocket-Accept */
	const struct wsconn_ops *ops;
	void *user;
};

struct wsloop {
	int epfd;
	uint64_t rng;
	GPtrArray *dirty; /* connections with output to flush */
	GPtrArray *dead;  /* closed, freed after the current batch */
	char *scratch;    /* READ_CHUNK bytes */
	int64_t timer_at; /* wsloop_timer's, 0: none */
	void (*timer_fn)(void *data);
	void *timer_data;
};

int64_t wsloop_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* xorshift64*: mask keys and handshake nonces.  RFC 6455 asks for
 * unpredictable masks to protect proxies; a load generator on loopback
 * only needs them to vary. */
static uint64_t rng_next(struct wsloop *l)
{
	l->rng ^= l->rng >> 12;
	l->rng ^= l->rng << 25;
	l->rng ^= l->rng >> 27;
	return l->rng * 0x2545F4914F6CDD1Dull;
}

/* ---- buffers ---- */

static char *buf_reserve(struct buf *b, size_t n)
{
	if (b->len + n > b->cap) {
		if (b->off) { /* move pending bytes to the front first */
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		if (b->len + n > b->cap) {
			b->cap = MAX(b->len + n, MAX(b->cap * 2, 256));
			b->data = g_realloc(b->data, b->cap);
		}
	}
	return b->data + b->len;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
	memcpy(buf_reserve(b, n), p, n);
	b->len += n;
}

static size_t buf_pending(const struct buf *b)
{
	return b->len - b->off;
}

static void buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	if (b->off == b->len) {
		b->off = b->len = 0;
		if (b->cap > BUF_KEEP) {
			g_clear_pointer(&b->data, g_free);
			b->cap = 0;
		}
	}
}

static void buf_free(struct buf *b)
{
	g_clear_pointer(&b->data, g_free);
	b->len = b->cap = b->off = 0;
}

/* ---- loop ---- */

struct wsloop *wsloop_new(void)
{
	struct wsloop *l = g_new0(struct wsloop, 1);

	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		g_free(l);
		return NULL;
	}
	l->rng = (uint64_t)wsloop_now() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
	l->dirty = g_ptr_array_new();
	l->dead = g_ptr_array_new();
	l->scratch = g_malloc(READ_CHUNK);
	return l;
}

static void conn_release(struct wsconn *c)
{
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->frag);
	g_free(c);
}

static void reap(struct wsloop *l)
{
	for (guint i = 0; i < l->dead->len; i++)
		conn_release(g_ptr_array_index(l->dead, i));
	g_ptr_array_set_size(l->dead, 0);
}

void wsloop_free(struct wsloop *l)
{
	if (!l)
		return;
	reap(l);
	g_ptr_array_free(l->dirty, TRUE);
	g_ptr_array_free(l->dead, TRUE);
	g_free(l->scratch);
	close(l->epfd);
	g_free(l);
}

static void set_events(struct wsconn *c)
{
	uint32_t want = EPOLLIN;

	if (c->state == ST_CONNECTING || buf_pending(&c->out))
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	struct epoll_event ev = { .events = want, .data.ptr = c };
	epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->events = want;
}

/* Marks C dead: the socket is closed now, the memory after the batch. */
static void kill_conn(struct wsconn *c)
{
	if (c->state == ST_DEAD)
		return;
	c->state = ST_DEAD;
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	g_ptr_array_add(c->loop->dead, c);
}

static void fail(struct wsconn *c, const char *why, int code)
{
	if (c->state == ST_DEAD)
		return;
	kill_conn(c);
	c->ops->closed(c, why, code);
}

static void mark_dirty(struct wsconn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		g_ptr_array_add(c->loop->dirty, c);
	}
}

static void flush(struct wsconn *c)
{
	while (buf_pending(&c->out)) {
		ssize_t n = send(c->fd, c->out.data + c->out.off, buf_pending(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			fail(c, "send", 0);
			return;
		}
		buf_consume(&c->out, (size_t)n);
	}
	set_events(c);
}

static void flush_dirty(struct wsloop *l)
{
	for (guint i = 0; i < l->dirty->len; i++) {
		struct wsconn *c = g_ptr_array_index(l->dirty, i);
		c->dirty = false;
		if (c->state != ST_DEAD && c->state != ST_CONNECTING)
			flush(c);
	}
	g_ptr_array_set_size(l->dirty, 0);
}

/* ---- framing ---- */

static void queue_frame(struct wsconn *c, int opcode, const void *data, size_t len)
{
	uint8_t hdr[14];
	size_t h = 0;
	uint32_t mask = (uint32_t)rng_next(c->loop);
	uint8_t m[4];

	hdr[h++] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		hdr[h++] = (uint8_t)(0x80 | len);
	} else if (len < 65536) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (uint8_t)(len >> 8);
		hdr[h++] = (uint8_t)len;
	} else {
		hdr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	memcpy(m, &mask, 4);
	memcpy(hdr + h, m, 4);
	h += 4;
	buf_append(&c->out, hdr, h);
	uint8_t *dst = (uint8_t *)buf_reserve(&c->out, len);
	const uint8_t *src = data;
	for (size_t i = 0; i < len; i++)
		dst[i] = src[i] ^ m[i & 3];
	c->out.len += len;
	mark_dirty(c);
}

void wsconn_send_text(struct wsconn *c, const char *text, size_t len)
{
	if (c->state == ST_OPEN)
		queue_frame(c, OP_TEXT, text, len);
}

void wsconn_close(struct wsconn *c, uint16_t code)
{
	uint8_t payload[2] = { (uint8_t)(code >> 8), (uint8_t)code };

	if (c->state != ST_OPEN) {
		if (c->state != ST_DEAD && c->state != ST_CLOSING)
			fail(c, "closed_before_open", 0);
		return;
	}
	queue_frame(c, OP_CLOSE, payload, 2);
	c->state = ST_CLOSING;
}

void wsconn_abort(struct wsconn *c)
{
	kill_conn(c);
}

static void deliver(struct wsconn *c, int opcode, bool fin, const char *p, size_t len)
{
	if (opcode != OP_CONT && c->frag.len) {
		fail(c, "protocol", 0);
		return;
	}
	if (fin && opcode != OP_CONT) {
		c->ops->message(c, p, len);
		return;
	}
	if (opcode != OP_CONT)
		c->frag_opcode = opcode;
	if (c->frag.len + len > MAX_MESSAGE) {
		fail(c, "too_large", 0);
		return;
	}
	buf_append(&c->frag, p, len);
	if (fin) {
		c->ops->message(c, c->frag.data, c->frag.len);
		buf_consume(&c->frag, c->frag.len);
	}
}

static void on_control(struct wsconn *c, int opcode, const char *p, size_t len)
{
	int code = len >= 2 ? (uint8_t)p[0] << 8 | (uint8_t)p[1] : 0;

	switch (opcode) {
	case OP_PING:
		if (c->state == ST_OPEN)
			queue_frame(c, OP_PONG, p, len);
		break;
	case OP_CLOSE:
		if (c->state == ST_CLOSING) {
			kill_conn(c);
			c->ops->closed(c, NULL, code);
			return;
		}
		/* The server closes: answer with its code, then go. */
		queue_frame(c, OP_CLOSE, p, MIN(len, 2));
		flush(c);
		fail(c, "server_close", code);
		break;
	default:
		break;
	}
}

/* Parses the frames in [P, P+LEN); returns the bytes consumed. */
static size_t parse_frames(struct wsconn *c, const char *p, size_t len)
{
	size_t used = 0;

	while (c->state == ST_OPEN || c->state == ST_CLOSING) {
		const uint8_t *d = (const uint8_t *)p + used;
		size_t have = len - used, h = 2;
		uint64_t plen;

		if (have < 2)
			break;
		if (d[1] & 0x80 || d[0] & 0x70) { /* servers never mask; no extensions */
			fail(c, "protocol", 0);
			break;
		}
		plen = d[1] & 0x7f;
		if (plen == 126) {
			if (have < 4)
				break;
			plen = (uint64_t)d[2] << 8 | d[3];
			h = 4;
		} else if (plen == 127) {
			if (have < 10)
				break;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | d[2 + i];
			h = 10;
		}
		if (plen > MAX_MESSAGE) {
			fail(c, "too_large", 0);
			break;
		}
		if (have < h + plen)
			break;
		int opcode = d[0] & 0x0f;
		bool fin = d[0] & 0x80;
		const char *payload = (const char *)d + h;
		used += h + (size_t)plen;
		if (opcode & 0x8)
			on_control(c, opcode, payload, (size_t)plen);
		else
			deliver(c, opcode, fin, payload, (size_t)plen);
	}
	return used;
}

/* ---- handshake ---- */

static void compute_accept(const char *key, char out[29])
{
	unsigned char sha[SHA_DIGEST_LENGTH];
	char src[64];
	int n = snprintf(src, sizeof src, "%s%s", key, ws_guid);

	SHA1((const unsigned char *)src, (size_t)n, sha);
	g_autofree char *b64 = g_base64_encode(sha, sizeof sha);
	g_strlcpy(out, b64, 29);
}

static void send_upgrade(struct wsconn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[64] = "localhost", req[256];
	uint64_t nonce[2] = { rng_next(c->loop), rng_next(c->loop) };
	g_autofree char *key = g_base64_encode((const guchar *)nonce, sizeof nonce);

	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
		uint32_t a = ntohl(s4->sin_addr.s_addr);
		snprintf(host, sizeof host, "%u.%u.%u.%u:%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
			 a & 255, ntohs(s4->sin_port));
	}
	int n = snprintf(req, sizeof req,
			 "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
			 host, key);
	compute_accept(key, c->accept);
	buf_append(&c->out, req, (size_t)n);
	c->state = ST_HANDSHAKE;
	flush(c);
}

/* Checks the HTTP answer in c->in; 1 when done (101 and the right
 * accept), 0 when more bytes are needed, -1 when refused. */
static int take_upgrade(struct wsconn *c)
{
	const char *p = c->in.data + c->in.off;
	size_t have = buf_pending(&c->in);
	const char *end = memmem(p, have, "\r\n\r\n", 4);

	if (!end)
		return have > 8192 ? -1 : 0;
	size_t head_len = (size_t)(end - p) + 4;
	g_autofree char *head = g_ascii_strdown(p, (gssize)head_len);
	char want[64];
	snprintf(want, sizeof want, "sec-websocket-accept: %s\r\n", c->accept);
	g_autofree char *want_lower = g_ascii_strdown(want, -1);
	if (strncmp(head, "http/1.1 101", 12) != 0 || !strstr(head, want_lower))
		return -1;
	buf_consume(&c->in, head_len);
	return 1;
}

/* ---- events ---- */

static void on_readable(struct wsconn *c)
{
	struct wsloop *l = c->loop;
	ssize_t n = read(c->fd, l->scratch, READ_CHUNK);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		fail(c, n == 0 ? "eof" : "read", 0);
		return;
	}
	if (c->state == ST_HANDSHAKE) {
		buf_append(&c->in, l->scratch, (size_t)n);
		int r = take_upgrade(c);
		if (r < 0) {
			fail(c, "handshake", 0);
			return;
		}
		if (r == 0)
			return;
		c->state = ST_OPEN;
		c->ops->open(c);
		if (c->state == ST_DEAD)
			return;
		size_t used = parse_frames(c, c->in.data + c->in.off, buf_pending(&c->in));
		if (c->state != ST_DEAD)
			buf_consume(&c->in, used);
		return;
	}
	if (buf_pending(&c->in) == 0) {
		/* The common case: parse straight from the read buffer and keep
		 * only an incomplete tail. */
		size_t used = parse_frames(c, l->scratch, (size_t)n);
		if (c->state != ST_DEAD && used < (size_t)n)
			buf_append(&c->in, l->scratch + used, (size_t)n - used);
		return;
	}
	buf_append(&c->in, l->scratch, (size_t)n);
	size_t used = parse_frames(c, c->in.data + c->in.off, buf_pending(&c->in));
	if (c->state != ST_DEAD)
		buf_consume(&c->in, used);
}

static void on_event(struct wsconn *c, uint32_t events)
{
	if (c->state == ST_DEAD)
		return;
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			fail(c, "connect", 0);
			return;
		}
		if (events & EPOLLOUT)
			send_upgrade(c);
		return;
	}
	if (events & EPOLLIN)
		on_readable(c);
	else if (events & (EPOLLERR | EPOLLHUP))
		fail(c, "reset", 0);
	if (c->state != ST_DEAD && (events & EPOLLOUT))
		flush(c);
}

struct wsconn *wsconn_open(struct wsloop *l, const struct sockaddr *dst, socklen_t dst_len,
			   const struct sockaddr *src, socklen_t src_len,
			   const struct wsconn_ops *ops, void *user)
{
	int one = 1;
	int fd = socket(dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (src) {
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, src, src_len) < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return NULL;
		}
	}
	if (connect(fd, dst, dst_len) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	struct wsconn *c = g_new0(struct wsconn, 1);
	c->loop = l;
	c->fd = fd;
	c->state = ST_CONNECTING;
	c->ops = ops;
	c->user = user;
	c->events = EPOLLIN | EPOLLOUT;
	struct epoll_event ev = { .events = c->events, .data.ptr = c };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		close(fd);
		g_free(c);
		errno = e;
		return NULL;
	}
	return c;
}

void *wsconn_user(const struct wsconn *c)
{
	return c->user;
}

void wsconn_set_user(struct wsconn *c, void *user)
{
	c->user = user;
}

bool wsconn_is_open(const struct wsconn *c)
{
	return c->state == ST_OPEN;
}

const char *wsconn_state(const struct wsconn *c)
{
	static const char *const names[] = {
		[ST_CONNECTING] = "connect", [ST_HANDSHAKE] = "upgrade", [ST_OPEN] = "open",
		[ST_CLOSING] = "closing", [ST_DEAD] = "closed",
	};
	return names[c->state];
}

void wsloop_timer(struct wsloop *l, int64_t at, void (*fn)(void *data), void *data)
{
	l->timer_at = at > 0 ? at : 0;
	l->timer_fn = fn;
	l->timer_data = data;
}

/* epoll_wait() until the monotonic time WAKE (ns) at the latest, to the
 * nanosecond with epoll_pwait2() (Linux 5.11); where that is missing or
 * not allowed, in milliseconds rounded up. */
static int wait_until(struct wsloop *l, struct epoll_event *evs, int64_t now, int64_t wake)
{
	static bool no_pwait2;
	int64_t d = wake > now ? wake - now : 0;

	if (!no_pwait2) {
		struct timespec ts = { .tv_sec = d / 1000000000, .tv_nsec = d % 1000000000 };
		int n = epoll_pwait2(l->epfd, evs, MAX_EVENTS, &ts, NULL);
		if (n >= 0 || (errno != ENOSYS && errno != EPERM))
			return n;
		no_pwait2 = true;
	}
	return epoll_wait(l->epfd, evs, MAX_EVENTS, (int)((d + 999999) / 1000000));
}

int wsloop_run(struct wsloop *l, bool (*done)(void *data), void (*tick)(void *data),
	       void *data, int tick_ms, int64_t deadline)
{
	struct epoll_event evs[MAX_EVENTS];
	int64_t next_tick = wsloop_now() + (int64_t)tick_ms * 1000000;

	for (;;) {
		flush_dirty(l);
		reap(l);
		if (done && done(data))
			return 0;
		int64_t now = wsloop_now();
		if (now >= deadline)
			return -ETIMEDOUT;
		int64_t wake = MIN(deadline, next_tick);
		if (l->timer_at)
			wake = MIN(wake, l->timer_at);
		int n = wait_until(l, evs, now, wake);
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
		if (l->timer_at && wsloop_now() >= l->timer_at) {
			l->timer_at = 0; /* FN may set the next one */
			l->timer_fn(l->timer_data);
		}
		/* Without TICK too: a NEXT_TICK left in the past would make
		 * every later epoll_wait() return at once. */
		if (wsloop_now() >= next_tick) {
			if (tick)
				tick(data);
			next_tick = wsloop_now() + (int64_t)tick_ms * 1000000;
		}
	}
}
