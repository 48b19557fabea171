#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define WSC_ERROR g_quark_from_static_string("wsc-error")

static gint64 deadline_after(int ms)
{
	return g_get_monotonic_time() + (gint64)ms * 1000;
}

static int remaining_ms(gint64 deadline)
{
	gint64 left = deadline - g_get_monotonic_time();
	return left <= 0 ? 0 : (int)((left + 999) / 1000);
}

/* Reads more bytes into c->in; -ETIMEDOUT or -EPIPE on EOF. */
static int fill(struct wsc *c, gint64 deadline)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	guint8 buf[65536];

	for (;;) {
		int r = c->ssl && SSL_pending(c->ssl) ? 1 : poll(&p, 1, remaining_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t n;
		if (c->ssl) {
			/* Non-blocking: a record that is not data (a session
			 * ticket) leaves nothing to read, and poll comes next. */
			int k = SSL_read(c->ssl, buf, sizeof buf);
			if (k <= 0 && SSL_get_error(c->ssl, k) == SSL_ERROR_WANT_READ)
				continue;
			n = k;
		} else {
			n = read(c->fd, buf, sizeof buf);
		}
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -EPIPE;
		g_byte_array_append(c->in, buf, (guint)n);
		return 0;
	}
}

static int write_all(struct wsc *c, const void *data, size_t len)
{
	const guint8 *p = data;
	unsigned spins = 0;
	while (len) {
		if (c->ssl) {
			int k = SSL_write(c->ssl, p, (int)len);
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				struct pollfd pw = { .fd = c->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT };
				if ((e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) || ++spins > 1000 ||
				    poll(&pw, 1, WSC_TIMEOUT_MS) <= 0)
					return -EPIPE;
				continue;
			}
			p += k;
			len -= (size_t)k;
			continue;
		}
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static struct wsc *adopt(int fd, SSL *ssl, const char *host, int port, const char *path,
			 const char *headers, GError **err);
static SSL *tls_handshake(int fd, const struct wsc_opts *o, GError **err);

static int tcp_connect(const struct wsc_opts *o, const char *host, int port, GError **err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
	struct addrinfo *res;
	char portbuf[16];
	int fd, one = 1;

	snprintf(portbuf, sizeof portbuf, "%d", port);
	if (getaddrinfo(host, portbuf, &hints, &res) != 0) {
		g_set_error(err, WSC_ERROR, 0, "bad address %s", host);
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (o && o->rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
	if (o && o->source) {
		struct addrinfo *src;
		if (getaddrinfo(o->source, NULL, &hints, &src) == 0) {
			bind(fd, src->ai_addr, src->ai_addrlen);
			freeaddrinfo(src);
		}
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		g_set_error(err, WSC_ERROR, 0, "connect: %s",
			    g_strerror(errno));
		close(fd);
		fd = -1;
	} else {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	freeaddrinfo(res);
	return fd;
}

struct wsc *wsc_connect_opts(const struct wsc_opts *o, const char *host, int port,
			     const char *path, GError **err)
{
	int fd = tcp_connect(o, host, port, err);
	SSL *ssl = NULL;

	if (fd < 0)
		return NULL;
	if (o && o->tls_ca && !(ssl = tls_handshake(fd, o, err))) {
		close(fd);
		return NULL;
	}
	return adopt(fd, ssl, host, port, path, o ? o->headers : NULL, err);
}

/* A TLS client on FD that checks the server's chain against O's CA and
 * its name; NULL with ERR saying why.  FD is non-blocking after. */
static SSL *tls_handshake(int fd, const struct wsc_opts *o, GError **err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;

	ERR_clear_error();
	if (!ctx || SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1) {
		g_set_error(err, WSC_ERROR, 0, "tls: cannot load %s", o->tls_ca);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	const char *name = o->tls_name ? o->tls_name : "localhost";
	SSL_set_tlsext_host_name(ssl, name);
	SSL_set1_host(ssl, name);
	SSL_set_fd(ssl, fd);
	/* Bounded like every wait of this client. */
	struct timeval tv = { .tv_sec = WSC_TIMEOUT_MS / 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (SSL_connect(ssl) != 1) {
		long v = SSL_get_verify_result(ssl);
		unsigned long e = ERR_peek_last_error();
		g_set_error(err, WSC_ERROR, 0, "tls: handshake failed: %s",
			    v != X509_V_OK ? X509_verify_cert_error_string(v)
			    : e ? ERR_reason_error_string(e) : "connection closed");
		SSL_free(g_steal_pointer(&ssl));
		goto out;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
out:
	ERR_clear_error();
	SSL_CTX_free(ctx); /* SSL holds its own reference */
	return ssl;
}

struct wsc *wsc_adopt(int fd, const char *host, int port, const char *path, const char *headers,
		      GError **err)
{
	return adopt(fd, NULL, host, port, path, headers, err);
}

static struct wsc *adopt(int fd, SSL *ssl, const char *host, int port, const char *path,
			 const char *headers, GError **err)
{
	guint8 nonce[16];
	unsigned char sha[SHA_DIGEST_LENGTH];

	RAND_bytes(nonce, sizeof nonce);
	g_autofree char *key = g_base64_encode(nonce, sizeof nonce);
	g_autofree char *req = g_strdup_printf("GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
					       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
					       "Sec-WebSocket-Version: 13\r\n%s\r\n",
					       path, strchr(host, ':') ? "[" : "", host,
					       strchr(host, ':') ? "]" : "", port, key, headers ? headers : "");
	struct wsc *c = g_new0(struct wsc, 1);
	c->fd = fd;
	c->ssl = ssl;
	c->in = g_byte_array_new();
	c->close_code = -1;
	c->auto_pong = true;
	write_all(c, req, strlen(req));

	gint64 deadline = deadline_after(WSC_TIMEOUT_MS);
	const char *end;
	while (c->in->len == 0 || !(end = memmem(c->in->data, c->in->len, "\r\n\r\n", 4))) {
		if (fill(c, deadline) < 0) {
			g_set_error(err, WSC_ERROR, 0,
				    "handshake: no HTTP response");
			wsc_free(c);
			return NULL;
		}
	}
	size_t head_len = (size_t)(end - (const char *)c->in->data) + 4;
	g_autofree char *head = g_strndup((const char *)c->in->data, head_len);
	g_byte_array_remove_range(c->in, 0, (guint)head_len);

	g_autofree char *accept_src = g_strconcat(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", NULL);
	SHA1((const unsigned char *)accept_src, strlen(accept_src), sha);
	g_autofree char *accept = g_base64_encode(sha, sizeof sha);
	g_autofree char *want = g_strdup_printf("sec-websocket-accept: %s", accept);
	g_autofree char *lower = g_ascii_strdown(head, -1);
	g_autofree char *want_lower = g_ascii_strdown(want, -1);
	if (!g_str_has_prefix(head, "HTTP/1.1 101") || !strstr(lower, want_lower)) {
		char *eol = strstr(head, "\r\n");
		if (eol)
			*eol = '\0';
		g_set_error(err, WSC_ERROR, 0, "handshake refused: %s", head);
		wsc_free(c);
		return NULL;
	}
	return c;
}

struct wsc *wsc_connect(const char *host, int port, const char *path, GError **err)
{
	return wsc_connect_opts(NULL, host, port, path, err);
}

void wsc_free(struct wsc *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	close(c->fd);
	g_byte_array_unref(c->in);
	g_free(c->close_reason);
	g_free(c);
}

int wsc_send_frame(struct wsc *c, int opcode, bool fin, const void *data, size_t len)
{
	guint8 hdr[14], mask[4];
	size_t h = 0;

	hdr[h++] = (guint8)((fin ? 0x80 : 0) | opcode);
	if (len < 126) {
		hdr[h++] = (guint8)(0x80 | len);
	} else if (len < 65536) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (guint8)(len >> 8);
		hdr[h++] = (guint8)len;
	} else {
		hdr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (guint8)((guint64)len >> (8 * i));
	}
	RAND_bytes(mask, 4);
	memcpy(hdr + h, mask, 4);
	h += 4;
	guint8 *buf = g_malloc(h + len);
	memcpy(buf, hdr, h);
	for (size_t i = 0; i < len; i++)
		buf[h + i] = ((const guint8 *)data)[i] ^ mask[i & 3];
	int r = write_all(c, buf, h + len);
	g_free(buf);
	return r;
}

int wsc_send_text(struct wsc *c, const char *text)
{
	return wsc_send_frame(c, WSC_TEXT, true, text, strlen(text));
}

int wsc_sendf(struct wsc *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	g_autofree char *text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return wsc_send_text(c, text);
}

/* One frame from c->in, or -EAGAIN when incomplete. */
static int take_frame(struct wsc *c, int *opcode, bool *fin, GByteArray *payload)
{
	const guint8 *d = c->in->data;
	size_t have = c->in->len, h = 2;
	guint64 len;

	if (have < 2)
		return -EAGAIN;
	len = d[1] & 0x7f;
	if (len == 126) {
		if (have < 4)
			return -EAGAIN;
		len = (guint64)d[2] << 8 | d[3];
		h = 4;
	} else if (len == 127) {
		if (have < 10)
			return -EAGAIN;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | d[2 + i];
		h = 10;
	}
	g_assert_false(d[1] & 0x80); /* servers never mask */
	if (have < h + len)
		return -EAGAIN;
	*fin = d[0] & 0x80;
	*opcode = d[0] & 0x0f;
	g_byte_array_append(payload, d + h, (guint)len);
	g_byte_array_remove_range(c->in, 0, (guint)(h + len));
	return 0;
}

int wsc_recv(struct wsc *c, int timeout_ms, GBytes **out, int *opcode)
{
	gint64 deadline = deadline_after(timeout_ms);
	g_autoptr(GByteArray) msg = g_byte_array_new();
	int msg_opcode = 0;

	if (c->close_code >= 0)
		return -EPIPE;
	for (;;) {
		g_autoptr(GByteArray) frame = g_byte_array_new();
		int op;
		bool fin;

		while (take_frame(c, &op, &fin, frame) == -EAGAIN) {
			int r = fill(c, deadline);
			if (r == -EPIPE)
				c->close_code = 1006;
			if (r < 0)
				return r;
		}
		switch (op) {
		case WSC_PING:
			if (c->auto_pong)
				wsc_send_frame(c, WSC_PONG, true, frame->data, frame->len);
			continue;
		case WSC_PONG:
			continue;
		case WSC_CLOSE:
			c->close_code = frame->len >= 2 ? frame->data[0] << 8 | frame->data[1] : 1005;
			if (frame->len > 2)
				c->close_reason = g_strndup((const char *)frame->data + 2, frame->len - 2);
			wsc_send_frame(c, WSC_CLOSE, true, frame->data, MIN(frame->len, 2));
			return -EPIPE;
		case 0: /* continuation */
			break;
		default:
			msg_opcode = op;
			break;
		}
		g_byte_array_append(msg, frame->data, frame->len);
		if (fin) {
			if (opcode)
				*opcode = msg_opcode;
			*out = g_byte_array_free_to_bytes(g_steal_pointer(&msg));
			return 0;
		}
	}
}

json_object *wsc_recv_json(struct wsc *c)
{
	GBytes *b = NULL;
	int opcode = 0;
	int r = wsc_recv(c, WSC_TIMEOUT_MS, &b, &opcode);
	if (r < 0)
		g_error("expected a message, got %s (close code %d)", r == -ETIMEDOUT ? "timeout" : "close",
			c->close_code);
	g_assert_cmpint(opcode, ==, WSC_TEXT);
	gsize len;
	const char *text = g_bytes_get_data(b, &len);
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object))
		g_error("server sent something that is not a JSON object: %.*s", (int)len, text);
	g_bytes_unref(b);
	return o;
}

static const char *type_of(json_object *o)
{
	json_object *t;
	return json_object_object_get_ex(o, "type", &t) ? json_object_get_string(t) : "(none)";
}

json_object *wsc_expect(struct wsc *c, const char *type)
{
	json_object *o = wsc_recv_json(c);
	if (strcmp(type_of(o), type) != 0)
		g_error("expected %s, got %s", type, json_object_to_json_string(o));
	return o;
}

json_object *wsc_expect_error(struct wsc *c, const char *code)
{
	json_object *o = wsc_expect(c, "error"), *v;
	g_assert_true(json_object_object_get_ex(o, "code", &v));
	if (strcmp(json_object_get_string(v), code) != 0)
		g_error("expected error %s, got %s", code, json_object_to_json_string(o));
	g_assert_true(json_object_object_get_ex(o, "message", &v));
	g_assert_cmpint(json_object_get_string_len(v), >, 0);
	return o;
}

void wsc_expect_quiet(struct wsc *c)
{
	wsc_send_text(c, "{\"type\":\"ping\"}");
	json_object_put(wsc_expect(c, "pong"));
}

int wsc_wait_close(struct wsc *c, int timeout_ms)
{
	gint64 deadline = deadline_after(timeout_ms);
	for (;;) {
		GBytes *b = NULL;
		int r = wsc_recv(c, remaining_ms(deadline), &b, NULL);
		if (r == -EPIPE)
			return c->close_code;
		if (r == -ETIMEDOUT)
			return -1;
		g_bytes_unref(b);
	}
}

int wsc_unread(struct wsc *c)
{
	int n = 0;
	ioctl(c->fd, FIONREAD, &n);
	return n;
}
