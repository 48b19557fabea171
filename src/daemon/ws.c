#include "daemon/ws.h"

#include "util/log.h"
#include "util/metrics.h"
#include "util/netaddr.h"
#include "util/ratelimit.h"
#include "core/protocol.h"
#include "auth/jwt.h"
#include "daemon/keyapi.h"
#include "daemon/linger.h"
#include "daemon/roomhttp.h"
#include "daemon/tlscert.h"
#include "core/router.h"

#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(LWS_PRE <= MSGBUF_HEADROOM, "msgbuf headroom too small for lws");

/* lws allocates this for every connection: keep it small and reassemble
 * larger messages ourselves (docs/performance.md, "Trade-offs kept"). */
#define RX_CHUNK 256
/* The most lws offers one send(): more than all but the rarest giant
 * messages, so the socket takes what it can at once.  At 64 KiB a
 * megabyte registered_auth went out over sixteen writeable rounds, and
 * filling a big room cost nine times the CPU (docs/performance.md). */
#define TX_MAX (16 << 20)
/* Closed sockets kept draining at once, at most (see linger.h). */
#define LINGER_MAX 1024
/* How long a closing session may take to flush before it is cut. */
#define CLOSE_GRACE_SECS 5
/* Overdue handshakes closed per housekeeping tick, at most. */
#define EXPIRE_PER_TICK 256

/* One per adopted socket (lws's opaque user data), from accept to
 * WSI_DESTROY: lws gives a connection its session only once a request
 * arrives, and a slowloris client never gets that far. */
struct conn {
	struct ws_server *ws;
	struct lws *wsi;
	GList link;           /* in ws->handshakes while the deadline runs */
	uint64_t accepted_ms; /* loop time */
	struct netaddr addr;  /* the TCP peer, when counted */
	bool counted;         /* holds a count in the per-address table */
};

struct session {
	struct client client; /* first: the router's view of us */
	struct ws_server *ws;
	struct lws *wsi;
	GList link; /* in ws->sessions */
	GQueue outq;  /* of struct msgbuf */
	size_t queued; /* bytes in outq, but for answer */
	/* An answer over max_queued_bytes (router_ops.answer) in outq; while
	 * it or its rest in lws is unsent, client.answer_waiting is set. */
	struct msgbuf *answer;
	char *rx;
	size_t rx_len, rx_cap;
	struct ratelimit rl;
	bool addr_counted; /* holds a count in the per-address table */
	int close_code; /* nonzero: close once outq is empty */
	const char *close_reason;
	struct http_req *http; /* a plain HTTP request on this connection */
	bool linger_on_close;  /* closed by us after an HTTP answer */
	uint64_t heard_ms;     /* loop time the client last sent anything */
	uint64_t pinged_ms;    /* and we last pinged it (WebSocket ping) */
	uint64_t app_pinged_ms; /* and sent it {"type":"ping"} */
	bool ping_owed;        /* a ping frame to write */
	bool cut;              /* closed for not answering its ping */
};

/* Bodies of POST /create-room are small JSON objects. */
#define HTTP_BODY_MAX 65536
/* A creation the store has not finished in this time is given up on
 * (the room may still come to be): a connection does not wait forever. */
#define HTTP_PENDING_SECS 60
/* All of a request's headers: JWTs from OIDC providers are large. */
#define HTTP_HEADER_DATA_MAX 16384

/* What a plain HTTP request on this port asks for. */
enum http_route {
	ROUTE_OTHER,          /* 426: this port speaks WebSocket */
	ROUTE_CREATE_ROOM,    /* POST /create-room */
	ROUTE_DELETE,         /* POST /delete-peer, /delete-peers-and-room: ignored */
	ROUTE_PUBLIC_KEYS,    /* POST /api/auth/public-keys */
	ROUTE_AUTHORIZED_KEYS /* GET /api/rooms/{id}/authorized-keys */
};

struct http_req {
	enum http_route route;
	char *room_id;           /* ROUTE_AUTHORIZED_KEYS */
	bool head;               /* HEAD: the answer's headers only */
	GString *body;           /* what the client sent, when it sends one */
	struct roomhttp_pending *pending;
	struct keyapi_pending *key_pending;
	unsigned status;         /* the answer, once known */
	const char *type;
	char *answer;
	bool headers_sent;
	bool body_done;   /* its one completion has run */
	bool rx_paused;   /* reading stopped at the end of its body */
	bool close_after; /* no keep-alive: the connection ends with the answer */
};

struct ws_server {
	uv_loop_t *loop;
	const struct config *cfg;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct router *router;
	struct ws_env env;
	struct ratelimit_policy msg_policy;
	GQueue sessions;   /* established */
	struct linger_pool *linger;
	unsigned n_conns;  /* adopted sockets not yet destroyed */
	/* Refusals at max_sessions and per address, handshakes cut and
	 * sessions cut for not answering are logged once a second at most. */
	struct log_rate full_log, per_address_log, handshake_log, cut_log;
	GQueue handshakes;          /* of struct conn, oldest first */
	uv_timer_t housekeeping;    /* pings and dead peers, see on_housekeeping */
	GList *cursor;              /* where its walk through sessions is */
	struct msgbuf *ping_msg;
	lws_retry_bo_t retry; /* all zero: no lws keepalive (on_housekeeping) */
	/* wss://: the vhost's SSL_CTX and the certificate it serves (NULL
	 * both for plain ws://); a reload swaps the certificate. */
	SSL_CTX *ssl_ctx;
	struct tlscert *tls;
	bool draining;
	void (*drained)(void *data);
	void *drained_data;
};

/* The conn of a connection we adopted, or NULL. */
static struct conn *conn_of(struct ws_server *ws, struct lws *wsi)
{
	struct conn *c = ws ? lws_get_opaque_user_data(wsi) : NULL;
	return c && lws_get_vhost(wsi) == ws->vh ? c : NULL;
}

/* Its deadline no longer runs: it upgraded, or its request is in. */
static void handshake_done(struct conn *c)
{
	if (c && c->link.data) {
		g_queue_unlink(&c->ws->handshakes, &c->link);
		c->link.data = NULL;
	}
}

static const char http_426_body[] =
	"426 Upgrade Required: this is a WebSocket endpoint (rtcsignald)\n";

static struct session *session_of(struct client *c)
{
	return (struct session *)c;
}

static void want_write(struct session *s)
{
	lws_callback_on_writable(s->wsi);
}

static void drop_outq(struct session *s)
{
	struct msgbuf *m;

	while ((m = g_queue_pop_head(&s->outq)))
		msgbuf_unref(m);
	s->queued = 0;
	s->answer = NULL;
	s->client.answer_waiting = false;
}

static void session_close(void *ctx, struct client *c, int code, const char *reason)
{
	struct session *s = session_of(c);

	if (s->close_code)
		return;
	s->client.closing = true;
	s->close_code = code;
	s->close_reason = reason;
	want_write(s);
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
}

/* What is queued, and which bound it meets (router_ops). */
enum out_kind {
	OUT_SEND,   /* from another peer: over max_queued_bytes closes */
	OUT_ANSWER, /* to the client's own request: may go past it once */
	OUT_EVENT,  /* presence and watches: refused past half of it */
	OUT_FORCED, /* a watch_lost: queued whatever */
};

static int queue_out(struct ws_server *ws, struct session *s, struct msgbuf *m, enum out_kind kind)
{
	struct client *c = &s->client;
	uint64_t max = ws->cfg->max_queued_bytes;

	if (s->close_code)
		return -EPIPE;
	/* An answer lists at most a full room's metadata (max_peers_per_room
	 * x max_metadata_bytes, kept in range by config validation): it may
	 * exceed the queue bound, which is for what others send us. */
	bool answer = kind == OUT_ANSWER && !s->answer && s->queued + m->len > max;
	/* Events leave half of the queue to relayed messages: a watcher too
	 * slow for its events loses its watch (the router says so), never
	 * its connection. */
	if (kind == OUT_EVENT && s->queued + m->len > max / 2)
		return -ENOBUFS;
	if (kind != OUT_FORCED && !answer && s->queued + m->len > max) {
		/* Memory first: what this peer has not read is dropped now. */
		drop_outq(s);
		metrics_inc(limit_hits[LIMIT_QUEUED_BYTES]);
		struct log_fields f = { .remote = client_remote(c), .close_code = 1008,
					.peer = s->client.peer ? s->client.peer->id : NULL,
					.room = s->client.peer ? s->client.peer->room->id : NULL };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f, "outbound queue over max_queued_bytes; closing");
		session_close(ws, c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "outbound queue overflow");
		return -ENOBUFS;
	}
	if (g_queue_is_empty(&s->outq) && !s->ping_owed && !lws_partial_buffered(s->wsi)) {
		/* Nothing ahead of it: straight to the socket.  Waiting for a
		 * writeable event costs two epoll_ctl and a turn of the loop per
		 * message; a send() the socket cannot take whole, lws keeps (that
		 * one message) and finishes on its own. */
		metrics_add(bytes_sent, m->len);
		if (lws_write(s->wsi, (unsigned char *)msgbuf_text(m), m->len, LWS_WRITE_TEXT) < 0) {
			lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			return -EPIPE;
		}
		if (answer && lws_partial_buffered(s->wsi)) {
			/* lws holds its rest: in flight until on_writeable. */
			c->answer_waiting = true;
			want_write(s);
		}
		return 0;
	}
	if (g_queue_is_empty(&s->outq))
		want_write(s);
	g_queue_push_tail(&s->outq, msgbuf_ref(m));
	if (answer) {
		s->answer = m;
		c->answer_waiting = true;
	} else {
		s->queued += m->len;
	}
	return 0;
}

static int session_send(void *ctx, struct client *c, struct msgbuf *m)
{
	return queue_out(ctx, session_of(c), m, OUT_SEND);
}

static int session_answer(void *ctx, struct client *c, struct msgbuf *m)
{
	return queue_out(ctx, session_of(c), m, OUT_ANSWER);
}

static int session_event(void *ctx, struct client *c, struct msgbuf *m, bool force)
{
	return queue_out(ctx, session_of(c), m, force ? OUT_FORCED : OUT_EVENT);
}

static const struct router_ops ws_router_ops = {
	.send = session_send,
	.answer = session_answer,
	.event = session_event,
	.close = session_close,
};

/* The client: the TCP peer, or behind trusted proxies the address their
 * X-Forwarded-For names.  Headers are readable up to ESTABLISHED.  The
 * whole header is read, however long: the entries that count are at its
 * end, and a client padding the front must not make us fall back to the
 * proxy's own address.  -EAFNOSUPPORT for a unix socket. */
static int client_addr(struct ws_server *ws, struct lws *wsi, struct netaddr *out)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	g_autofree char *xff = NULL;
	int n = 0;

	if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ws->cfg->trusted && lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR) > 0) {
		xff = g_malloc(HTTP_HEADER_DATA_MAX);
		n = lws_hdr_copy(wsi, xff, HTTP_HEADER_DATA_MAX, WSI_TOKEN_X_FORWARDED_FOR);
		if (n < 0)
			return -EMSGSIZE;
	}
	return netaddr_client(ws->cfg->trusted, (struct sockaddr *)&ss, n > 0 ? xff : NULL,
			      n > 0 ? (size_t)n : 0, out);
}

/* Per-address refusals are logged once a second at most: a flood from
 * one address is what they look like. */
static void refuse(struct ws_server *ws, struct lws *wsi, const struct netaddr *remote,
		   enum metrics_refusal why, unsigned status, const char *text)
{
	struct log_fields f = { .remote = remote, .code = metrics_refusal_name(why) };
	unsigned skipped = 0;

	metrics_inc(sessions_refused[why]);
	if (why != REFUSED_PER_ADDRESS)
		log_event(LOG_NOTICE, LOG_EVENT_CONNECTION_REFUSED, &f, "connection refused: %s", text);
	else if (log_rate_due(&ws->per_address_log, uv_now(ws->loop), &skipped))
		log_event(LOG_NOTICE, LOG_EVENT_CONNECTION_REFUSED, &f,
			  "connection refused: %s (%u more refused since the last such line)", text, skipped);
	lws_return_http_status(wsi, status, text);
}

/* Before the upgrade.  Open mode (no authentication configured) serves
 * loopback clients only, unless the operator said allow_anonymous; with
 * authentication on, registration is where callers prove who they are.
 * A client holding connections_per_address connections gets no more.
 * A refusal is answered with an HTTP status, so the client can tell why. */
static bool admit_connection(struct ws_server *ws, struct lws *wsi)
{
	struct conn *c = conn_of(ws, wsi);
	struct netaddr addr;

	if (ws->draining) {
		metrics_inc(sessions_refused[REFUSED_DRAINING]);
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "shutting down");
		return false;
	}
	int r = client_addr(ws, wsi, &addr);
	if (r == -EAFNOSUPPORT)
		return true; /* a unix socket: local */
	if (r < 0) {
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "cannot tell the client's address");
		return false;
	}
	if (!ws->cfg->allow_anonymous && router_open_mode(ws->router) &&
	    !netaddr_is_loopback_addr(&addr)) {
		refuse(ws, wsi, &addr, REFUSED_NOT_LOOPBACK, HTTP_STATUS_FORBIDDEN,
		       "authentication is off: only loopback clients are served");
		return false;
	}
	/* Counted since accept (see ws_server_adopt), or behind a proxy:
	 * counted from the upgrade, by the address the proxy names. */
	if (!(c && c->counted) &&
	    addrlimit_conn_count(ws->env.addrlimit, &addr) >= ws->cfg->connections_per_address) {
		metrics_inc(limit_hits[LIMIT_CONNECTIONS_PER_ADDRESS]);
		refuse(ws, wsi, &addr, REFUSED_PER_ADDRESS, 429,
		       "too many connections from this address ([limits] connections_per_address)");
		return false;
	}
	return true;
}

static void on_established(struct ws_server *ws, struct session *s, struct lws *wsi)
{
	handshake_done(conn_of(ws, wsi));
	s->ws = ws;
	s->wsi = wsi;
	g_queue_init(&s->outq);
	s->link.data = s;
	g_queue_push_tail_link(&ws->sessions, &s->link);
	s->heard_ms = s->app_pinged_ms = uv_now(ws->loop);
	metrics_inc(connections_total);
	metrics_set(connections, ws->sessions.length);
	ratelimit_init(&s->rl, &ws->msg_policy, g_get_monotonic_time());
	if (client_addr(ws, wsi, &s->client.addr) < 0)
		return;
	s->client.addr_known = true;
	struct conn *c = conn_of(ws, wsi);
	if (c && c->counted)
		return; /* since accept, by the conn */
	/* Behind a proxy: counted here, with the session;
	 * admit_connection() only looked. */
	if (addrlimit_conn_open(ws->env.addrlimit, &s->client.addr) == 0)
		s->addr_counted = true;
	else
		session_close(ws, &s->client, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			      "too many connections from this address");
}

/* A complete message, within the session's rate. */
static void deliver_in(struct ws_server *ws, struct session *s, const char *text, size_t len)
{
	switch (ratelimit_take(&s->rl, &ws->msg_policy, g_get_monotonic_time())) {
	case RATELIMIT_ALLOW:
		router_receive(ws->router, &s->client, text, len, !lws_frame_is_binary(s->wsi));
		return;
	case RATELIMIT_REFUSE:
		metrics_inc(limit_hits[LIMIT_MESSAGES_PER_SECOND]);
		router_rate_limited(ws->router, &s->client);
		return;
	case RATELIMIT_ABUSE:
		metrics_inc(limit_hits[LIMIT_MESSAGES_PER_SECOND]);
		if (s->close_code)
			return;
		struct log_fields f = { .remote = client_remote(&s->client), .close_code = 1008,
					.peer = s->client.peer ? s->client.peer->id : NULL };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f,
			  "kept sending over messages_per_second; closing");
		/* Its backlog of refusals would only delay the close frame. */
		drop_outq(s);
		session_close(ws, &s->client, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit exceeded");
		return;
	}
}

static int on_receive(struct ws_server *ws, struct session *s, const char *in, size_t len)
{
	s->heard_ms = uv_now(ws->loop);
	size_t remaining = lws_remaining_packet_payload(s->wsi);
	bool complete = lws_is_final_fragment(s->wsi) && remaining == 0;

	metrics_add(bytes_received, len);
	/* An empty frame (FIN=0 with no payload, an empty continuation) may
	 * come with IN NULL: nothing to copy, and nothing copied from it. */
	if (len == 0)
		in = "";
	if (s->rx_len + len + remaining > ws->cfg->max_message_bytes) {
		static const char why[] = "message too large";
		metrics_inc(limit_hits[LIMIT_MESSAGE_BYTES]);
		struct log_fields f = { .remote = client_remote(&s->client), .close_code = 1009 };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f, "message over max_message_bytes; closing");
		lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
				 sizeof why - 1);
		return -1;
	}
	if (s->rx_len == 0 && complete) {
		/* The common case: the whole message in one chunk, no copy. */
		deliver_in(ws, s, in, len);
		return 0;
	}
	if (len) {
		if (s->rx_len + len > s->rx_cap) {
			s->rx_cap = MIN(MAX(s->rx_len + len + remaining, s->rx_cap * 2),
					ws->cfg->max_message_bytes);
			s->rx = g_realloc(s->rx, s->rx_cap);
		}
		memcpy(s->rx + s->rx_len, in, len);
		s->rx_len += len;
	}
	if (complete) {
		deliver_in(ws, s, s->rx ? s->rx : "", s->rx_len);
		/* Released at once: most peers send one large message (their
		 * register) and then idle, and what the next allocation reuses
		 * costs no memory per peer. */
		s->rx_len = 0;
		s->rx_cap = 0;
		g_clear_pointer(&s->rx, g_free);
	}
	return 0;
}

/* Closes with a close frame carrying our code.  lws 4.1 treats a nonzero
 * return from SERVER_WRITEABLE as a dead socket and sends no close frame;
 * its idle-timeout close is the path that goes through the WebSocket
 * closing handshake, so we schedule that, at once. */
static void close_politely(struct session *s)
{
	lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
			 (unsigned char *)s->close_reason, strlen(s->close_reason));
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE, LWS_TO_KILL_ASYNC);
}

static int write_ping(struct session *s)
{
	/* Not empty: lws 4.1 reports no pong without a payload. */
	unsigned char frame[LWS_PRE + 2] = { [LWS_PRE] = 'k', 'a' };
	s->ping_owed = false;
	return lws_write(s->wsi, frame + LWS_PRE, 2, LWS_WRITE_PING) < 0 ? -1 : 0;
}

static int on_writeable(struct session *s)
{
	/* lws calls this once what it held is sent: so is a large answer
	 * that went out directly. */
	if (!s->answer)
		s->client.answer_waiting = false;
	if (s->ping_owed) {
		if (write_ping(s) < 0)
			return -1;
		if (!g_queue_is_empty(&s->outq) || s->close_code)
			want_write(s);
		return 0;
	}

	struct msgbuf *m = g_queue_pop_head(&s->outq);

	if (!m) {
		if (s->close_code)
			close_politely(s);
		return 0;
	}
	bool answer = m == s->answer;
	if (answer)
		s->answer = NULL; /* answer_waiting stays until lws has sent it all */
	else
		s->queued -= m->len;
	int n = lws_write(s->wsi, (unsigned char *)msgbuf_text(m), m->len, LWS_WRITE_TEXT);
	metrics_add(bytes_sent, m->len);
	msgbuf_unref(m);
	if (n < 0)
		return -1;
	if (!g_queue_is_empty(&s->outq) || s->close_code || answer)
		want_write(s);
	return 0;
}

static void maybe_drained(struct ws_server *ws)
{
	if (ws->draining && ws->drained && g_queue_is_empty(&ws->sessions)) {
		void (*done)(void *) = ws->drained;
		ws->drained = NULL;
		done(ws->drained_data);
	}
}

/* We closed on a peer that is still sending: lws would close() over its
 * unread input and the reset would destroy our close frame. */
static void linger_if_unread(struct ws_server *ws, struct lws *wsi)
{
	int fd = lws_get_socket_fd(wsi), unread = 0;

	if (fd >= 0 && ioctl(fd, FIONREAD, &unread) == 0 && unread > 0)
		linger_add(ws->linger, fcntl(fd, F_DUPFD_CLOEXEC, 3));
}

static void on_closed(struct ws_server *ws, struct session *s)
{
	if (!s->ws)
		return; /* never established */
	if (s->close_code)
		linger_if_unread(ws, s->wsi);
	router_disconnect(ws->router, &s->client);
	if (s->addr_counted)
		addrlimit_conn_close(ws->env.addrlimit, &s->client.addr);
	drop_outq(s);
	g_clear_pointer(&s->rx, g_free);
	if (ws->cursor == &s->link)
		ws->cursor = s->link.next;
	g_queue_unlink(&ws->sessions, &s->link);
	s->ws = NULL;
	metrics_set(connections, ws->sessions.length);
	maybe_drained(ws);
}

/* S is NULL for a connection closed before its request came: lws has
 * given it no session yet.  Frees the request and cancels its pending
 * creation, whose completion then never runs. */
static void http_free(struct session *s)
{
	struct http_req *h = s ? s->http : NULL;
	if (!h)
		return;
	roomhttp_cancel(h->pending);
	keyapi_cancel(h->key_pending);
	if (h->body)
		g_string_free(h->body, TRUE);
	g_free(h->room_id);
	g_free(h->answer);
	g_free(h);
	s->http = NULL;
}

/* The answer is known: write it when the socket can take it.  At most
 * once per request; a later one (none is expected) is dropped. */
static void http_answer(struct session *s, unsigned status, const char *type, char *text)
{
	struct http_req *h = s->http;

	h->pending = NULL;
	h->key_pending = NULL;
	if (h->answer) {
		g_free(text);
		return;
	}
	h->status = status;
	h->type = type;
	h->answer = text;
	/* lws 4.1 writes nothing on an HTTP connection that does not read:
	 * reading resumes for the answer, and what follows the body only
	 * reports the body's end again, which is ignored, until it is sent. */
	if (h->rx_paused)
		lws_rx_flow_control(s->wsi, 1);
	lws_callback_on_writable(s->wsi);
}

/* A pending request's answer (roomhttp_done_fn, keyapi_done_fn). */
static void answered(unsigned status, char *json, void *data)
{
	struct session *s = data;
	http_answer(s, status, "application/json", json);
}

static bool has_header(struct lws *wsi, enum lws_token_indexes t)
{
	return lws_hdr_total_length(wsi, t) > 0;
}

/* Whether the request carries a body: a Content-Length other than 0, or
 * any Transfer-Encoding. */
static bool has_body(struct lws *wsi)
{
	char cl[32] = "";

	if (has_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING))
		return true;
	if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
		return false;
	return strspn(cl, "0 \t") != strlen(cl);
}

/* What the request asks for; *ROOM_ID for ROUTE_AUTHORIZED_KEYS. */
static enum http_route http_route(struct lws *wsi, const char *uri, char **room_id)
{
	static const char rooms[] = "/api/rooms/", keys[] = "/authorized-keys";

	if (has_header(wsi, WSI_TOKEN_POST_URI)) {
		if (strcmp(uri, "/create-room") == 0)
			return ROUTE_CREATE_ROOM;
		if (strcmp(uri, "/delete-peer") == 0 || strcmp(uri, "/delete-peers-and-room") == 0)
			return ROUTE_DELETE;
		if (strcmp(uri, "/api/auth/public-keys") == 0)
			return ROUTE_PUBLIC_KEYS;
	} else if (has_header(wsi, WSI_TOKEN_GET_URI) && g_str_has_prefix(uri, rooms) &&
		   g_str_has_suffix(uri, keys)) {
		size_t n = strlen(uri) - strlen(rooms) - strlen(keys);
		const char *id = uri + strlen(rooms);
		if (strlen(uri) > strlen(rooms) + strlen(keys) && !memchr(id, '/', n)) {
			*room_id = g_strndup(id, n);
			return ROUTE_AUTHORIZED_KEYS;
		}
	}
	return ROUTE_OTHER;
}

/* The Authorization header's bearer token copied into BUF, or NULL. */
static const char *http_bearer(struct lws *wsi, char *buf, size_t size)
{
	if (lws_hdr_copy(wsi, buf, (int)size, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
	    g_ascii_strncasecmp(buf, "Bearer ", 7) == 0)
		return buf + 7;
	return NULL;
}

static void http_dispatch(struct ws_server *ws, struct session *s, struct lws *wsi);

/* Every request is answered, once.  A request without a body is answered
 * at once and the connection kept alive (lws reads the next); one with a
 * body is read whole (up to HTTP_BODY_MAX) before it is answered, and its
 * answer says Connection: close.
 *
 * The lifecycle of a request with a body: one request, one completion.
 * Its body ends once (lws reports the end again for any byte that
 * follows it: a pipelined request), so nothing is read from the
 * connection after it; a pending creation belongs to the request, which
 * belongs to the connection, and is cancelled when either goes
 * (http_free).  So a request pipelined behind one with a body is never
 * read, let alone answered: the Connection: close tells its client so. */
static int on_http(struct ws_server *ws, struct session *s, struct lws *wsi, const char *uri)
{
	if (s->http)
		return -1; /* a second request while one is open: not ours to queue */
	s->wsi = wsi;
	s->http = g_new0(struct http_req, 1);
	s->http->head = has_header(wsi, WSI_TOKEN_HEAD_URI);
	s->http->route = http_route(wsi, uri, &s->http->room_id);
	if (s->http->route == ROUTE_CREATE_ROOM || has_body(wsi)) {
		s->http->body = g_string_new(NULL);
		s->http->close_after = true;
		if (has_body(wsi))
			return 0; /* the body comes next */
	}
	http_dispatch(ws, s, wsi);
	return 0;
}

static int on_http_body(struct session *s, const char *in, size_t len)
{
	if (!s->http)
		return 1;
	if (!s->http->body) {
		/* lws reports an empty body (Content-Length: 0), or takes what
		 * follows a POST without Content-Length for its body: dropped,
		 * and the connection ends with the answer. */
		if (len)
			s->http->close_after = true;
		return 0;
	}
	if (s->http->answer || s->http->body_done)
		return 0; /* refused already: the rest is dropped */
	if (s->http->body->len + len > HTTP_BODY_MAX) {
		metrics_inc(limit_hits[LIMIT_HTTP_BODY]);
		http_answer(s, 413, "application/json", g_strdup("{\"error\":\"body too large\"}"));
		return 0;
	}
	if (len)
		g_string_append_len(s->http->body, in, (gssize)len);
	return 0;
}

static void create_room(struct ws_server *ws, struct session *s, struct lws *wsi)
{
	char auth[JWT_MAX_TOKEN_BYTES + 16] = "";
	const char *bearer = http_bearer(wsi, auth, sizeof auth);
	struct netaddr from; /* for the room quota per address */
	bool from_known = client_addr(ws, wsi, &from) == 0;
	struct http_req *h = s->http;

	struct roomhttp_pending *p = roomhttp_create(&ws->env.rooms, ws->cfg, from_known ? &from : NULL,
						     bearer, h->body->str, h->body->len, answered, s);
	/* Answered already (the request was refused), or pending. */
	if (!h->answer) {
		h->pending = p;
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HTTP_PENDING_SECS);
	}
	explicit_bzero(auth, sizeof auth);
}

/* The request is in, body and all: answer it, now or (create-room) once
 * the store has the room. */
static void http_dispatch(struct ws_server *ws, struct session *s, struct lws *wsi)
{
	struct http_req *h = s->http;

	/* The request is in: the time it takes now is ours. */
	handshake_done(conn_of(ws, wsi));
	/* Its one completion: lws may yet report the end of an empty body,
	 * which then changes nothing. */
	h->body_done = true;
	switch (h->route) {
	case ROUTE_CREATE_ROOM:
		create_room(ws, s, wsi);
		return;
	case ROUTE_DELETE:
		/* The original server deleted the named peer or room for anyone
		 * who asked (docs/protocol.md): nothing is deleted here, and
		 * the client, which posts this on its way out, hears 200. */
		metrics_inc(http_deletes_ignored);
		http_answer(s, 200, "application/json", g_strdup("{\"status\":\"ignored\"}"));
		return;
	case ROUTE_PUBLIC_KEYS: {
		char auth[JWT_MAX_TOKEN_BYTES + 16] = "";
		const char *bearer = http_bearer(wsi, auth, sizeof auth);
		struct netaddr from;
		bool from_known = client_addr(ws, wsi, &from) == 0;
		struct keyapi_pending *p = keyapi_publish(&ws->env.keys, ws->cfg, from_known ? &from : NULL, bearer,
							  h->body ? h->body->str : "",
							  h->body ? h->body->len : 0, answered, s);
		explicit_bzero(auth, sizeof auth);
		if (!h->answer) {
			h->key_pending = p;
			lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HTTP_PENDING_SECS);
		}
		return;
	}
	case ROUTE_AUTHORIZED_KEYS: {
		char auth[JWT_MAX_TOKEN_BYTES + 16] = "";
		char *json = NULL;
		struct netaddr from;
		bool from_known = client_addr(ws, wsi, &from) == 0;
		unsigned status = keyapi_authorized(&ws->env.keys, ws->cfg, from_known ? &from : NULL,
						    h->room_id, http_bearer(wsi, auth, sizeof auth), &json);
		explicit_bzero(auth, sizeof auth);
		http_answer(s, status, "application/json", json);
		return;
	}
	case ROUTE_OTHER:
		break;
	}
	http_answer(s, 426, "text/plain", g_strdup(http_426_body));
}

static int on_http_body_done(struct ws_server *ws, struct session *s, struct lws *wsi)
{
	struct http_req *h = s->http;

	if (!h || !h->body || h->body_done)
		return 0;
	if (h->answer) {
		/* Refused while it was read (413): the answer is on its way. */
		h->body_done = true;
		handshake_done(conn_of(ws, wsi));
		return 0;
	}
	/* Nothing more from this client while its request is answered: lws
	 * would otherwise hand back whatever follows the body, again and
	 * again.  (Without a body lws reads nothing more until the answer
	 * is written, as for a GET.) */
	lws_rx_flow_control(wsi, 0);
	h->rx_paused = true;
	http_dispatch(ws, s, wsi);
	return 0;
}

/* A failed write closes: lws 4.1 closes an HTTP connection on a negative
 * return from HTTP_WRITEABLE only, and one whose next bytes wait in its
 * buffer would not notice the reset otherwise. */
static int on_http_writeable(struct ws_server *ws, struct session *s, struct lws *wsi)
{
	struct http_req *h = s->http;
	size_t len;

	if (!h || !h->answer)
		return 0;
	len = strlen(h->answer);
	if (!h->headers_sent) {
		unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf;
		if (lws_add_http_common_headers(wsi, h->status, h->type, len, &p, end) ||
		    (h->status == 426 &&
		     lws_add_http_header_by_token(wsi, WSI_TOKEN_UPGRADE, (unsigned char *)"websocket", 9, &p, end)) ||
		    (h->close_after &&
		     lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5, &p, end)) ||
		    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (unsigned char *)"no-store", 8,
						 &p, end) ||
		    lws_finalize_write_http_header(wsi, start, &p, end))
			return -1;
		h->headers_sent = true;
		if (!h->head) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	} else {
		g_autofree unsigned char *buf = g_malloc(LWS_PRE + len);
		memcpy(buf + LWS_PRE, h->answer, len);
		explicit_bzero(h->answer, len); /* it may hold a room token */
		if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) < 0)
			return -1;
		explicit_bzero(buf + LWS_PRE, len);
	}
	bool close_after = h->close_after;
	http_free(s);
	if (close_after) {
		/* lws sends what it still holds before closing; what the client
		 * sent after its request is then drained (CLOSED_HTTP), not
		 * reset over the answer. */
		s->linger_on_close = true;
		return -1;
	}
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The connection is gone: its count and its deadline with it. */
static void conn_free(struct ws_server *ws, struct conn *c)
{
	if (!c)
		return;
	handshake_done(c);
	if (c->counted)
		addrlimit_conn_close(ws->env.addrlimit, &c->addr);
	lws_set_opaque_user_data(c->wsi, NULL);
	g_free(c);
	ws->n_conns--;
	log_debug("connection released, %u open", ws->n_conns);
}

static int tls_setup(struct ws_server *ws, SSL_CTX *ctx)
{
	g_autoptr(GError) err = NULL;

	tlscert_harden(ctx);
	if (tlscert_apply(ws->tls, ctx, &err) < 0) {
		log_err("%s", err->message);
		return -1;
	}
	ws->ssl_ctx = ctx;
	return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	struct ws_server *ws = lws_context_user(lws_get_context(wsi));
	struct session *s = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_http(ws, s, wsi, in);
	case LWS_CALLBACK_HTTP_BODY:
		return on_http_body(s, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		return on_http_body_done(ws, s, wsi);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_http_writeable(ws, s, wsi);
	case LWS_CALLBACK_CLOSED_HTTP:
		handshake_done(conn_of(ws, wsi)); /* closing: no deadline to enforce */
		if (s && s->linger_on_close)
			linger_if_unread(ws, wsi);
		http_free(s);
		return 0;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		/* >0: refused, with the HTTP answer already written */
		return admit_connection(ws, wsi) ? 0 : 1;
	case LWS_CALLBACK_ESTABLISHED:
		on_established(ws, s, wsi);
		if (ws->draining)
			session_close(ws, &s->client, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return on_receive(ws, s, in, len);
	case LWS_CALLBACK_RECEIVE_PONG:
		s->heard_ms = uv_now(ws->loop);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(s);
	case LWS_CALLBACK_CLOSED:
		on_closed(ws, s);
		return 0;
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		/* Our vhost's server SSL_CTX, made because ws_server_new()
		 * asked for one: the certificate is ours to set. */
		return ws && ws->tls && !ws->ssl_ctx ? tls_setup(ws, user) : 0;
	case LWS_CALLBACK_WSI_DESTROY:
		http_free(s);
		conn_free(ws, conn_of(ws, wsi));
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols protocols[] = {
	/* tx_packet_size: without it lws cuts every send() to rx_buffer_size,
	 * one writeable round per 256-byte piece. */
	{ .name = "rtcsignal", .callback = callback, .per_session_data_size = sizeof(struct session),
	  .rx_buffer_size = RX_CHUNK, .tx_packet_size = TX_MAX },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void lws_emit(int level, const char *line)
{
	char buf[512];
	size_t n = strnlen(line, sizeof buf - 1);

	memcpy(buf, line, n);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	log_event(level == LLL_ERR ? LOG_ERR : LOG_WARNING, LOG_EVENT_NONE, NULL, "lws: %s", buf);
}

/* Keepalive, done here rather than by lws: lws 4.1 keeps its
 * per-connection validity timers in one sorted list and re-inserts on
 * every message received, a walk over all connections each time.  This
 * walks the sessions round-robin instead, a slice every
 * HOUSEKEEPING_TICK_MS so that each is seen once a second: a client
 * silent for ws_ping_interval gets a WebSocket ping, one that leaves it
 * unanswered until ws_ping_timeout is cut, and a registered peer gets
 * {"type":"ping"} every app_ping_interval.  Pings are spread out (due
 * times follow connection times, and at most a budget per tick go out):
 * tens of thousands sent in one pass would stall every message behind
 * them. */
#define HOUSEKEEPING_TICK_MS 20
#define PINGS_PER_TICK_MIN 32

static void keep_alive(struct ws_server *ws, struct session *s, uint64_t now, unsigned *budget)
{
	uint64_t silent = now - s->heard_ms;
	bool pinged = s->pinged_ms > s->heard_ms;

	/* One cut already: lws may take a while to close a socket that does
	 * not read (it flushes first), and the walk comes by every tick. */
	if (s->close_code || s->cut)
		return;
	if (silent >= (uint64_t)ws->cfg->ws_ping_timeout * 1000 && pinged &&
	    now - s->pinged_ms >
		    (uint64_t)(ws->cfg->ws_ping_timeout - MIN(ws->cfg->ws_ping_timeout, ws->cfg->ws_ping_interval)) * 1000) {
		s->cut = true;
		s->client.timed_out = true; /* its room's watchers: peer_left "timeout" */
		unsigned skipped;
		if (log_rate_due(&ws->cut_log, now, &skipped)) {
			struct log_fields f = { .remote = client_remote(&s->client) };
			log_event(LOG_DEBUG, LOG_EVENT_NONE, &f,
				  "no answer for %" G_GUINT64_FORMAT " ms; closing (%u more closed for that "
				  "since the last such line)", silent, skipped);
		}
		/* lws closes a socket only once it has flushed what it holds
		 * for it, which a client that reads nothing never lets happen:
		 * the connection is ended under it, and lws sees it fail. */
		int fd = lws_get_socket_fd(s->wsi);
		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	if (!*budget)
		return;
	if (silent >= (uint64_t)ws->cfg->ws_ping_interval * 1000 && !pinged) {
		s->pinged_ms = now;
		(*budget)--;
		/* Like any message: at once when nothing is queued. */
		if (g_queue_is_empty(&s->outq) && !lws_partial_buffered(s->wsi)) {
			if (write_ping(s) < 0)
				lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		} else {
			s->ping_owed = true;
			want_write(s);
		}
	}
	/* A superseded socket is sent nothing (router.c, supersede). */
	if (*budget && s->client.peer && !s->client.superseded &&
	    now - s->app_pinged_ms >= (uint64_t)ws->cfg->app_ping_interval * 1000) {
		s->app_pinged_ms = now;
		(*budget)--;
		session_send(ws, &s->client, ws->ping_msg);
	}
}

/* Connections that have not upgraded (nor sent a whole create-room
 * request) within handshake_timeout_ms of their accept are cut: a client
 * sending its headers a byte at a time holds a header table and a slot
 * of its address, and lws's own timeouts restart with every request. */
static void expire_handshakes(struct ws_server *ws, uint64_t now)
{
	uint64_t limit = ws->cfg->handshake_timeout_ms;
	struct conn *c;
	unsigned skipped;

	for (unsigned n = 0; n < EXPIRE_PER_TICK && (c = g_queue_peek_head(&ws->handshakes)) &&
			     now - c->accepted_ms >= limit; n++) {
		handshake_done(c);
		metrics_inc(limit_hits[LIMIT_HANDSHAKE_TIMEOUT]);
		if (log_rate_due(&ws->handshake_log, now, &skipped)) {
			struct log_fields f = { .remote = c->counted ? &c->addr : NULL,
						.code = "handshake_timeout_ms" };
			log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f,
				  "connection closed: no WebSocket upgrade within handshake_timeout_ms (%u ms) "
				  "(%u more closed since the last such line)",
				  ws->cfg->handshake_timeout_ms, skipped);
		}
		/* From our timer, outside lws: closed now, C freed with it. */
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
	}
}

static void on_housekeeping(uv_timer_t *t)
{
	struct ws_server *ws = t->data;
	unsigned n = ws->sessions.length;
	/* Each session once a second, and room for twice the pings the
	 * sessions need at their intervals. */
	unsigned slice = (n * HOUSEKEEPING_TICK_MS + 999) / 1000;
	unsigned shortest = MIN(ws->cfg->ws_ping_interval, ws->cfg->app_ping_interval);
	unsigned budget = MAX(PINGS_PER_TICK_MIN, 2 * 2 * slice / MAX(shortest, 1u) + 1);
	uint64_t now = uv_now(ws->loop);

	expire_handshakes(ws, now);
	for (unsigned i = 0; i < slice && n; i++) {
		if (!ws->cursor)
			ws->cursor = ws->sessions.head;
		struct session *s = ws->cursor->data;
		ws->cursor = ws->cursor->next;
		keep_alive(ws, s, now, &budget);
	}
}

static void apply_limits(struct ws_server *ws)
{
	metrics_set(max_sessions, ws->cfg->max_sessions);
	/* The configuration parser keeps these in range. */
	ratelimit_policy_per_second(&ws->msg_policy, ws->cfg->messages_per_second,
				    ws->cfg->messages_burst);
	ratelimit_policy_set_abuse(&ws->msg_policy, RATELIMIT_ABUSE_REFUSALS,
				   RATELIMIT_ABUSE_REGAIN_PER_SECOND);
}

int ws_server_new(uv_loop_t *loop, const struct config *cfg, const struct ws_env *env,
		  struct ws_server **out)
{
	struct ws_server *ws = g_new0(struct ws_server, 1);
	struct lws_context_creation_info info;
	void *loops[1] = { loop };
	g_autoptr(GError) err = NULL;

	if (tlscert_load_config(cfg, &ws->tls, &err) < 0) {
		log_err("%s", err->message);
		g_free(ws);
		return -EINVAL;
	}

	ws->loop = loop;
	ws->cfg = cfg;
	ws->env = *env;
	g_queue_init(&ws->sessions);
	g_queue_init(&ws->handshakes);
	apply_limits(ws);
	ws->ping_msg = protocol_simple("ping");

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	/* DO_SSL_GLOBAL_INIT: lws sets up OpenSSL, so that fetch can make TLS
	 * client connections on this context, on vhosts of its own.  It also
	 * gives this vhost a client SSL_CTX that nothing uses: keep the
	 * system's CAs out of it (1.3 MB). */
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
		       LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
	info.foreign_loops = loops;
	info.user = ws;
	info.retry_and_idle_policy = &ws->retry;
	info.pcontext = &ws->ctx;
	info.max_http_header_pool = 256;
	info.max_http_header_data = HTTP_HEADER_DATA_MAX;
	info.timeout_secs = 10;
	info.uid = (uid_t)-1;
	info.gid = (gid_t)-1;
	info.vhost_name = "default";
	if (ws->tls) {
		/* lws makes the server SSL_CTX and hands it to tls_setup(),
		 * which loads what tlscert_load() read: every adopted socket
		 * then starts with a TLS handshake.  HTTP/1.1 alone: the
		 * WebSocket upgrade needs it. */
		info.options |= LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX;
		info.alpn = "http/1.1";
	}

	ws->ctx = lws_create_context(&info);
	if (!ws->ctx || (ws->tls && !ws->ssl_ctx)) {
		if (ws->ctx)
			lws_context_destroy(ws->ctx);
		tlscert_free(ws->tls);
		msgbuf_unref(ws->ping_msg);
		g_free(ws);
		return -EIO;
	}
	if (ws->tls)
		log_notice("serving wss:// with %s (serial %s, expires %s)", cfg->tls_certificate,
			   tlscert_serial(ws->tls), tlscert_expiry(ws->tls));
	ws->vh = lws_get_vhost_by_name(ws->ctx, "default");
	ws->router = env->router;
	if (ws->router)
		router_set_transport(ws->router, &ws_router_ops, ws);
	uv_timer_init(loop, &ws->housekeeping);
	ws->housekeeping.data = ws;
	uv_timer_start(&ws->housekeeping, on_housekeeping, HOUSEKEEPING_TICK_MS, HOUSEKEEPING_TICK_MS);
	ws->linger = linger_new(loop, LINGER_MAX, CLOSE_GRACE_SECS * 1000);
	*out = ws;
	return 0;
}

void ws_server_set_config(struct ws_server *ws, const struct config *cfg)
{
	ws->cfg = cfg;
	apply_limits(ws);
}

void ws_server_set_tls(struct ws_server *ws, struct tlscert *tc)
{
	g_autoptr(GError) err = NULL;

	if (!ws->ssl_ctx != !tc) {
		log_warning("reload: [server] tls_certificate switched %s: needs a restart; serving as before",
			    tc ? "on" : "off");
		tlscert_free(tc);
		return;
	}
	if (!tc)
		return;
	if (tlscert_apply(tc, ws->ssl_ctx, &err) < 0) {
		log_err("reload: %s; serving the previous certificate", err->message);
		tlscert_free(tc);
		return;
	}
	log_notice("reload: new connections get certificate serial %s (expires %s); open ones keep theirs",
		   tlscert_serial(tc), tlscert_expiry(tc));
	tlscert_free(ws->tls);
	ws->tls = tc;
}

unsigned ws_server_sessions(const struct ws_server *ws)
{
	return ws->sessions.length;
}

#define HTTP_429_BODY "too many connections from this address ([limits] connections_per_address)\n"
_Static_assert(sizeof HTTP_429_BODY - 1 == 74, "http_429: content-length");
static const char http_429[] =
	"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 74\r\n"
	"connection: close\r\ncache-control: no-store\r\n\r\n" HTTP_429_BODY;

/* Counts FD against its address from accept on, so that connections
 * still in their handshake count too.  A proxy's connections are not
 * counted here (admit_connection() counts the client it names); neither
 * are unix sockets.  False when the address has no slot left. */
static bool count_at_accept(struct ws_server *ws, int fd, struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    netaddr_from_sockaddr((struct sockaddr *)&ss, &c->addr) < 0 ||
	    netaddr_in_cidrs(ws->cfg->trusted, (struct sockaddr *)&ss))
		return true;
	if (addrlimit_conn_open(ws->env.addrlimit, &c->addr) < 0)
		return false;
	c->counted = true;
	return true;
}

/* Over connections_per_address: answered 429 without reading the
 * request, and drained rather than reset over the answer (linger).  The
 * log line is coalesced: this is what a flood from one address looks
 * like. */
static void refuse_at_accept(struct ws_server *ws, int fd, const struct netaddr *addr)
{
	unsigned skipped;

	(void)!send(fd, http_429, sizeof http_429 - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	linger_add(ws->linger, fd);
	metrics_inc(limit_hits[LIMIT_CONNECTIONS_PER_ADDRESS]);
	metrics_inc(sessions_refused[REFUSED_PER_ADDRESS]);
	if (log_rate_due(&ws->per_address_log, uv_now(ws->loop), &skipped)) {
		struct log_fields f = { .remote = addr, .code = metrics_refusal_name(REFUSED_PER_ADDRESS) };
		log_event(LOG_NOTICE, LOG_EVENT_CONNECTION_REFUSED, &f,
			  "connection refused: too many connections from this address ([limits] "
			  "connections_per_address = %u) (%u more refused since the last such line)",
			  ws->cfg->connections_per_address, skipped);
	}
}

void ws_server_adopt(struct ws_server *ws, int fd)
{
	unsigned skipped;

	if (ws->draining) {
		close(fd);
		return;
	}
	if (ws->n_conns >= ws->cfg->max_sessions) {
		metrics_inc(limit_hits[LIMIT_SESSIONS]);
		metrics_inc(sessions_refused[REFUSED_MAX_SESSIONS]);
		if (log_rate_due(&ws->full_log, uv_now(ws->loop), &skipped)) {
			struct log_fields f = { .code = metrics_refusal_name(REFUSED_MAX_SESSIONS) };
			log_event(LOG_WARNING, LOG_EVENT_CONNECTION_REFUSED, &f,
				  "connection refused: max_sessions (%u) reached (%u more refused since the last "
				  "such line)", ws->cfg->max_sessions, skipped);
		}
		close(fd);
		return;
	}
	struct conn *c = g_new0(struct conn, 1);
	if (!count_at_accept(ws, fd, c)) {
		refuse_at_accept(ws, fd, &c->addr);
		g_free(c);
		return;
	}
	struct lws *wsi = lws_adopt_socket_vhost(ws->vh, fd);
	if (!wsi) {
		/* With TLS, a handshake that fails at once ends here; it is
		 * counted and logged as such (tlscert.c). */
		if (!ws->ssl_ctx)
			log_warning("could not adopt an accepted connection");
		if (c->counted)
			addrlimit_conn_close(ws->env.addrlimit, &c->addr);
		g_free(c);
		return; /* lws closed it */
	}
	c->ws = ws;
	c->wsi = wsi;
	c->accepted_ms = uv_now(ws->loop);
	c->link.data = c;
	g_queue_push_tail_link(&ws->handshakes, &c->link);
	lws_set_opaque_user_data(wsi, c);
	ws->n_conns++;
}

void ws_server_drain(struct ws_server *ws, void (*done)(void *data), void *data)
{
	ws->draining = true;
	ws->drained = done;
	ws->drained_data = data;
	for (GList *l = ws->sessions.head; l; l = l->next) {
		struct session *s = l->data;
		if (s->close_code)
			continue;
		/* 2.1 sessions are told why; v2.0 ones get the 1001 alone. */
		router_shutting_down(ws->router, &s->client);
		session_close(ws, &s->client, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
	}
	maybe_drained(ws);
}

void ws_server_stop(struct ws_server *ws)
{
	/* The sessions lws closes now must not report a drain again. */
	ws->drained = NULL;
	uv_close((uv_handle_t *)&ws->housekeeping, NULL);
	if (ws->ctx)
		lws_context_destroy(ws->ctx);
	linger_free(g_steal_pointer(&ws->linger));
}

void ws_server_free(struct ws_server *ws)
{
	if (!ws)
		return;
	linger_free(g_steal_pointer(&ws->linger));
	/* With a foreign loop, lws finishes destroying its context in a
	 * second call once its libuv handles have closed; pcontext tells. */
	if (ws->ctx) {
		lws_context_destroy(ws->ctx);
		uv_run(ws->loop, UV_RUN_DEFAULT);
	}
	if (ws->ctx)
		log_warning("libwebsockets context not fully destroyed");
	tlscert_free(ws->tls);
	msgbuf_unref(ws->ping_msg);
	g_free(ws);
}
