#include "ws.h"

#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "protocol.h"
#include "router.h"

#include <errno.h>
#include <libwebsockets.h>
#include <string.h>
#include <unistd.h>

_Static_assert(LWS_PRE <= MSGBUF_HEADROOM, "msgbuf headroom too small for lws");

/* lws allocates this for every connection: keep it small and reassemble
 * larger messages ourselves (DESIGN.md: 1.7 KiB per idle peer at 256). */
#define RX_CHUNK 256
/* A reassembly buffer larger than this is released after each message. */
#define RX_KEEP 4096
/* How long a closing session may take to flush before it is cut. */
#define CLOSE_GRACE_SECS 5

struct session {
	struct client client; /* first: the router's view of us */
	struct ws_server *ws;
	struct lws *wsi;
	GList link; /* in ws->sessions */
	GQueue outq;  /* of struct msgbuf */
	size_t queued; /* bytes in outq */
	char *rx;
	size_t rx_len, rx_cap;
	int close_code; /* nonzero: close once outq is empty */
	const char *close_reason;
	bool http_body_pending;
};

struct ws_server {
	uv_loop_t *loop;
	const struct config *cfg;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct router *router;
	GQueue sessions;   /* established */
	unsigned n_conns;  /* adopted sockets not yet destroyed */
	uv_timer_t ping_timer;
	struct msgbuf *ping_msg;
	lws_retry_bo_t retry; /* lws keeps a pointer to it */
	bool draining;
	void (*drained)(void *data);
	void *drained_data;
};

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

static int session_send(void *ctx, struct client *c, struct msgbuf *m)
{
	struct session *s = session_of(c);
	struct ws_server *ws = ctx;

	if (s->close_code)
		return -EPIPE;
	if (s->queued + m->len > ws->cfg->max_queued_bytes) {
		struct msgbuf *old;
		/* Memory first: what this peer has not read is dropped now. */
		while ((old = g_queue_pop_head(&s->outq)))
			msgbuf_unref(old);
		s->queued = 0;
		metrics_inc(limit_hits[LIMIT_QUEUED_BYTES]);
		struct log_fields f = { .remote = s->client.remote, .close_code = 1008,
					.peer = s->client.peer ? s->client.peer->id : NULL,
					.room = s->client.peer ? s->client.peer->room->id : NULL };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f, "outbound queue over max_queued_bytes; closing");
		s->client.closing = true;
		s->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
		s->close_reason = "outbound queue overflow";
		want_write(s);
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
		return -ENOBUFS;
	}
	if (g_queue_is_empty(&s->outq))
		want_write(s);
	g_queue_push_tail(&s->outq, msgbuf_ref(m));
	s->queued += m->len;
	return 0;
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

static const struct router_ops ws_router_ops = {
	.send = session_send,
	.close = session_close,
};

/* Open mode (no authentication configured) serves loopback clients only,
 * unless the operator said allow_anonymous.  A refusal is answered with an
 * HTTP status, so the client can tell why. */
static bool admit(struct ws_server *ws, struct lws *wsi)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (ws->draining) {
		metrics_inc(sessions_refused[REFUSED_DRAINING]);
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "shutting down");
		return false;
	}
	if (ws->cfg->allow_anonymous)
		return true;
	if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &len) == 0 &&
	    netaddr_is_loopback((struct sockaddr *)&ss))
		return true;
	char remote[48] = "";
	lws_get_peer_simple(wsi, remote, sizeof remote);
	struct log_fields f = { .remote = remote, .code = "not_loopback" };
	metrics_inc(sessions_refused[REFUSED_NOT_LOOPBACK]);
	log_event(LOG_NOTICE, LOG_EVENT_CONNECTION_REFUSED, &f,
		  "non-loopback client refused: authentication is off and allow_anonymous is false");
	lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN,
			       "authentication is off: only loopback clients are served");
	return false;
}

static void on_established(struct ws_server *ws, struct session *s, struct lws *wsi)
{
	s->ws = ws;
	s->wsi = wsi;
	g_queue_init(&s->outq);
	s->link.data = s;
	g_queue_push_tail_link(&ws->sessions, &s->link);
	lws_get_peer_simple(wsi, s->client.remote, sizeof s->client.remote);
	metrics_inc(connections_total);
	metrics_set(connections, ws->sessions.length);
}

static int on_receive(struct ws_server *ws, struct session *s, const char *in, size_t len)
{
	size_t remaining = lws_remaining_packet_payload(s->wsi);
	bool complete = lws_is_final_fragment(s->wsi) && remaining == 0;

	metrics_add(bytes_received, len);
	if (s->rx_len + len + remaining > ws->cfg->max_message_bytes) {
		static const char why[] = "message too large";
		metrics_inc(limit_hits[LIMIT_MESSAGE_BYTES]);
		struct log_fields f = { .remote = s->client.remote, .close_code = 1009 };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f, "message over max_message_bytes; closing");
		lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
				 sizeof why - 1);
		return -1;
	}
	if (s->rx_len == 0 && complete) {
		/* The common case: the whole message in one chunk, no copy. */
		router_receive(ws->router, &s->client, in, len);
		return 0;
	}
	if (s->rx_len + len > s->rx_cap) {
		s->rx_cap = MAX(s->rx_len + len + remaining, s->rx_cap * 2);
		s->rx = g_realloc(s->rx, s->rx_cap);
	}
	memcpy(s->rx + s->rx_len, in, len);
	s->rx_len += len;
	if (complete) {
		router_receive(ws->router, &s->client, s->rx, s->rx_len);
		s->rx_len = 0;
		if (s->rx_cap > RX_KEEP) {
			g_clear_pointer(&s->rx, g_free);
			s->rx_cap = 0;
		}
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

static int on_writeable(struct session *s)
{
	struct msgbuf *m = g_queue_pop_head(&s->outq);

	if (!m) {
		if (s->close_code)
			close_politely(s);
		return 0;
	}
	s->queued -= m->len;
	int n = lws_write(s->wsi, (unsigned char *)msgbuf_text(m), m->len, LWS_WRITE_TEXT);
	metrics_add(bytes_sent, m->len);
	msgbuf_unref(m);
	if (n < 0)
		return -1;
	if (!g_queue_is_empty(&s->outq) || s->close_code)
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

static void on_closed(struct ws_server *ws, struct session *s)
{
	struct msgbuf *m;

	if (!s->ws)
		return; /* never established */
	router_disconnect(ws->router, &s->client);
	while ((m = g_queue_pop_head(&s->outq)))
		msgbuf_unref(m);
	g_free(s->rx);
	s->rx = NULL;
	g_queue_unlink(&ws->sessions, &s->link);
	s->ws = NULL;
	metrics_set(connections, ws->sessions.length);
	maybe_drained(ws);
}

static int on_http(struct session *s, struct lws *wsi)
{
	unsigned char buf[LWS_PRE + 256], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf;

	if (lws_add_http_common_headers(wsi, 426, "text/plain", sizeof http_426_body - 1, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_UPGRADE, (unsigned char *)"websocket", 9, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	s->http_body_pending = true;
	lws_callback_on_writable(wsi);
	return 0;
}

static int on_http_writeable(struct session *s, struct lws *wsi)
{
	unsigned char buf[LWS_PRE + sizeof http_426_body];

	if (!s->http_body_pending)
		return 0;
	s->http_body_pending = false;
	memcpy(buf + LWS_PRE, http_426_body, sizeof http_426_body - 1);
	if (lws_write(wsi, buf + LWS_PRE, sizeof http_426_body - 1, LWS_WRITE_HTTP_FINAL) < 0)
		return 1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	struct ws_server *ws = lws_context_user(lws_get_context(wsi));
	struct session *s = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_http(s, wsi);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_http_writeable(s, wsi);
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		/* >0: refused, with the HTTP answer already written */
		return admit(ws, wsi) ? 0 : 1;
	case LWS_CALLBACK_ESTABLISHED:
		on_established(ws, s, wsi);
		if (ws->draining)
			session_close(ws, &s->client, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return on_receive(ws, s, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(s);
	case LWS_CALLBACK_CLOSED:
		on_closed(ws, s);
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		/* Only the connections we adopted carry this mark. */
		if (ws && lws_get_opaque_user_data(wsi) == ws) {
			ws->n_conns--;
			log_debug("connection released, %u open", ws->n_conns);
		}
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols protocols[] = {
	{ .name = "rtcsignal", .callback = callback, .per_session_data_size = sizeof(struct session),
	  .rx_buffer_size = RX_CHUNK },
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

static void on_ping_timer(uv_timer_t *t)
{
	struct ws_server *ws = t->data;

	for (GList *l = ws->sessions.head; l; l = l->next) {
		struct session *s = l->data;
		if (s->client.peer)
			session_send(ws, &s->client, ws->ping_msg);
	}
}

static void apply_timers(struct ws_server *ws)
{
	uint64_t ms = (uint64_t)ws->cfg->app_ping_interval * 1000;
	uv_timer_start(&ws->ping_timer, on_ping_timer, ms, ms);
}

static void apply_limits(struct ws_server *ws)
{
	metrics_set(max_sessions, ws->cfg->max_sessions);
	/* lws keeps a pointer to the keepalive policy: a change applies to
	 * each connection from its next check. */
	ws->retry.secs_since_valid_ping = (uint16_t)ws->cfg->ws_ping_interval;
	ws->retry.secs_since_valid_hangup = (uint16_t)ws->cfg->ws_ping_timeout;
}

int ws_server_new(uv_loop_t *loop, const struct config *cfg, struct registry *reg,
		  struct ws_server **out)
{
	struct ws_server *ws = g_new0(struct ws_server, 1);
	struct lws_context_creation_info info;
	void *loops[1] = { loop };

	ws->loop = loop;
	ws->cfg = cfg;
	g_queue_init(&ws->sessions);
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
	info.timeout_secs = 10;
	info.uid = (uid_t)-1;
	info.gid = (gid_t)-1;
	info.vhost_name = "default";

	ws->ctx = lws_create_context(&info);
	if (!ws->ctx) {
		g_free(ws);
		return -EIO;
	}
	ws->vh = lws_get_vhost_by_name(ws->ctx, "default");
	ws->router = router_new(cfg, reg, &ws_router_ops, ws);
	uv_timer_init(loop, &ws->ping_timer);
	ws->ping_timer.data = ws;
	apply_timers(ws);
	*out = ws;
	return 0;
}

void ws_server_set_config(struct ws_server *ws, const struct config *cfg)
{
	ws->cfg = cfg;
	apply_limits(ws);
	router_set_config(ws->router, cfg);
	apply_timers(ws);
}

struct lws_context *ws_server_context(struct ws_server *ws)
{
	return ws->ctx;
}

unsigned ws_server_sessions(const struct ws_server *ws)
{
	return ws->sessions.length;
}

void ws_server_adopt(struct ws_server *ws, int fd)
{
	if (ws->draining) {
		close(fd);
		return;
	}
	if (ws->n_conns >= ws->cfg->max_sessions) {
		metrics_inc(limit_hits[LIMIT_SESSIONS]);
		metrics_inc(sessions_refused[REFUSED_MAX_SESSIONS]);
		struct log_fields f = { .code = "max_sessions" };
		log_event(LOG_WARNING, LOG_EVENT_CONNECTION_REFUSED, &f,
			  "connection refused: max_sessions (%u) reached", ws->cfg->max_sessions);
		close(fd);
		return;
	}
	struct lws *wsi = lws_adopt_socket_vhost(ws->vh, fd);
	if (!wsi) {
		log_warning("could not adopt an accepted connection");
		return; /* lws closed it */
	}
	lws_set_opaque_user_data(wsi, ws);
	ws->n_conns++;
}

void ws_server_drain(struct ws_server *ws, void (*done)(void *data), void *data)
{
	struct msgbuf *bye = protocol_error(ERR_SERVER_SHUTTING_DOWN, "Server is shutting down",
					    false, NULL, NULL);

	ws->draining = true;
	ws->drained = done;
	ws->drained_data = data;
	uv_timer_stop(&ws->ping_timer);
	for (GList *l = ws->sessions.head; l; l = l->next) {
		struct session *s = l->data;
		if (s->close_code)
			continue;
		if (session_send(ws, &s->client, bye) == 0)
			metrics_inc(errors_sent[ERR_SERVER_SHUTTING_DOWN]);
		session_close(ws, &s->client, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
	}
	msgbuf_unref(bye);
	maybe_drained(ws);
}

void ws_server_stop(struct ws_server *ws)
{
	/* The sessions lws closes now must not report a drain again. */
	ws->drained = NULL;
	uv_timer_stop(&ws->ping_timer);
	uv_close((uv_handle_t *)&ws->ping_timer, NULL);
	if (ws->ctx)
		lws_context_destroy(ws->ctx);
}

void ws_server_free(struct ws_server *ws)
{
	if (!ws)
		return;
	/* With a foreign loop, lws finishes destroying its context in a
	 * second call once its libuv handles have closed; pcontext tells. */
	if (ws->ctx) {
		lws_context_destroy(ws->ctx);
		uv_run(ws->loop, UV_RUN_DEFAULT);
	}
	if (ws->ctx)
		log_warning("libwebsockets context not fully destroyed");
	router_free(ws->router);
	msgbuf_unref(ws->ping_msg);
	g_free(ws);
}
