#include "core/router.h"

#include "core/filter.h"
#include "util/metrics.h"
#include "core/protocol.h"
#include "core/registration.h"
#include "core/router-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct router *router_new(const struct config *cfg, struct registry *reg,
			  const struct router_env *env, const struct router_services *svc,
			  void *svc_ctx)
{
	struct router *r = g_new0(struct router, 1);
	r->reg = reg;
	r->env = *env;
	r->svc = svc;
	r->svc_ctx = svc_ctx;
	r->scratch = g_string_sized_new(4096);
	router_set_config(r, cfg);
	return r;
}

void router_set_transport(struct router *r, const struct router_ops *ops, void *ctx)
{
	r->ops = ops;
	r->ctx = ctx;
}

void router_log_at(struct router *r, int prio, enum log_event ev, const struct log_fields *f,
		   const char *file, int line, const char *func, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	r->svc->log(r->svc_ctx, prio, ev, f, file, line, func, fmt, ap);
	va_end(ap);
}

gint64 router_now_seconds(struct router *r)
{
	return r->svc->real_us(r->svc_ctx) / G_USEC_PER_SEC;
}

uint64_t router_now_ms(struct router *r)
{
	return r->svc->monotonic_ns(r->svc_ctx) / 1000000;
}

static uint64_t now_ns(struct router *r)
{
	return r->svc->monotonic_ns(r->svc_ctx);
}

void router_set_config(struct router *r, const struct config *cfg)
{
	r->cfg = cfg;
	turn_free(r->turn);
	r->turn = turn_new(cfg);
	if (r->tok)
		json_tokener_free(r->tok);
	/* json-c counts the innermost value as a level of its own. */
	r->tok = json_tokener_new_ex((int)cfg->max_json_depth + 1);
	json_tokener_set_flags(r->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
}

void router_free(struct router *r)
{
	if (!r)
		return;
	turn_free(r->turn);
	json_tokener_free(r->tok);
	g_string_free(r->scratch, TRUE);
	g_free(r);
}

/* Sends and drops our reference. */
int router_send_owned(struct router *r, struct client *c, struct msgbuf *m)
{
	int rc = r->ops->send(r->ctx, c, m);
	msgbuf_unref(m);
	return rc;
}

/* An answer to C's own request (router_ops.answer). */
int router_answer_owned(struct router *r, struct client *c, struct msgbuf *m)
{
	int rc = (r->ops->answer ? r->ops->answer : r->ops->send)(r->ctx, c, m);
	msgbuf_unref(m);
	return rc;
}

/* Whether the original v2.0 server (talmolab/webRTC-connect at ac5bf956)
 * answered a registered client's message of type T with an error of
 * CODE; DECODE: the message itself was malformed.  The table of
 * docs/protocol.md "v2.0 clients", from docs/sleap-rtc.md
 * section 4: it sent INVALID_JSON for text that is not JSON (JSON that is
 * no object, or too deep, closed the connection instead), and
 * UNKNOWN_MESSAGE_TYPE; every register error; for peer_message and
 * mesh_connect/mesh_answer a missing field and a target not there or not
 * reached; for update_metadata and ice_candidate a missing field.  Never
 * anything for offer/answer/candidate, a sender field naming another
 * peer, a filter, a rate, a replaced session or a shutdown. */
static bool v20_sent(enum msg_type t, enum err_code code, bool decode, const struct msg_error *e)
{
	if (code == ERR_INVALID_JSON)
		return !e->v20_closed;
	if (code == ERR_UNKNOWN_MESSAGE_TYPE)
		return true;
	switch (t) {
	case MSG_REGISTER:
	case MSG_CREATE_ROOM: /* v2.0 had none: UNKNOWN_MESSAGE_TYPE */
		return true;
	case MSG_PEER_MESSAGE:
	case MSG_MESH_CONNECT:
	case MSG_MESH_ANSWER:
		return (decode && code == ERR_INVALID_MESSAGE) || code == ERR_PEER_NOT_IN_ROOM ||
		       code == ERR_PEER_NOT_FOUND || code == ERR_DELIVERY_FAILED;
	case MSG_UPDATE_METADATA:
	case MSG_ICE_CANDIDATE:
		return decode && code == ERR_INVALID_MESSAGE;
	default:
		return false;
	}
}

/* An error a v2.0 session is not told: counted by code, and logged once
 * a second at most with how many went unlogged, so the operator still
 * sees every failure. */
static void untold(struct router *r, struct client *c, enum msg_type t, const struct msg_error *e)
{
	unsigned skipped;

	metrics_inc(errors_suppressed[e->code]);
	if (!log_rate_due(&r->untold_log, router_now_ms(r), &skipped))
		return;
	struct log_fields f = { .remote = client_remote(c), .code = protocol_code_name(e->code),
				.peer = c->peer ? c->peer->id : NULL,
				.room = c->peer ? c->peer->room->id : NULL };
	router_log(r, LOG_INFO, LOG_EVENT_NONE, &f,
		  "not told to a v2.0 session (%s): %s (%u more not told since the last such line)",
		  protocol_type_name(t), e->message, skipped);
}

/* Whether C is sent an error of CODE about its message of type T: always
 * before its first registration and for a 2.1 session; for a 2.0 one
 * where the original server sent one. */
static bool tells(const struct client *c, enum msg_type t, enum err_code code, bool decode,
		  const struct msg_error *e)
{
	return c->proto == PROTOCOL_V21 || !c->was_registered || v20_sent(t, code, decode, e);
}

static void send_error_as(struct router *r, struct client *c, const struct msg *m,
			  const struct msg_error *e, bool decode)
{
	if (!tells(c, m->type, e->code, decode, e)) {
		untold(r, c, m->type, e);
		return;
	}
	metrics_inc(errors_sent[e->code]);
	router_send_owned(r, c, protocol_error_from(e));
}

/* An error the router found (the message itself was well formed). */
static void send_error(struct router *r, struct client *c, const struct msg *m,
		       const struct msg_error *e)
{
	send_error_as(r, c, m, e, false);
}

void router_error_to(struct router *r, struct client *c, const struct msg *m, enum err_code code,
		     const char *field, const char *field_value, const char *fmt, ...)
{
	struct msg_error e = { .code = code, .field = field, .field_value = field_value };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof e.message, fmt, ap);
	va_end(ap);
	send_error(r, c, m, &e);
}

void router_log_peer(struct router *r, int prio, enum log_event ev, const struct client *c,
		     const char *room, const char *peer, const char *role, const char *code,
		     const char *what)
{
	struct log_fields f = { .room = room, .peer = peer, .role = role, .remote = client_remote(c),
				.code = code };
	router_log(r, prio, ev, &f, "%s", what);
}

/* Ends C's registration. */
void router_leave(struct router *r, struct client *c, const char *why)
{
	struct peer *p = c->peer;
	struct room *room = p->room;
	bool last = room_size(room) == 1;

	router_log_peer(r, LOG_INFO, LOG_EVENT_PEER_LEFT, c, room->id, p->id, p->role, NULL, why);
	c->peer = NULL;
	if (p->former) {
		/* The socket it superseded stays open, registered nowhere. */
		struct client *o = p->former;
		o->peer = NULL;
		o->superseded = false;
	}
	if (last)
		router_log(r, LOG_DEBUG, LOG_EVENT_NONE, NULL, "room %s freed", room->id);
	registry_remove(r->reg, p);
	metrics_set(peers, registry_n_peers(r->reg));
	if (last)
		metrics_set(rooms, registry_n_rooms(r->reg));
}

/* C no longer speaks as its peer: it leaves the registration it owns, or
 * lets go of one a newer connection took over from it. */
void router_release(struct router *r, struct client *c, const char *why)
{
	if (c->superseded) {
		c->peer->former = NULL;
		c->peer = NULL;
		c->superseded = false;
	} else if (c->peer) {
		router_leave(r, c, why);
	}
}

/* One answer over max_queued_bytes waits per session at most: a client
 * asking again before reading it is told to slow down, so answers cannot
 * pile up memory the queue bound does not count. */
bool router_answer_busy(struct router *r, struct client *c, const struct msg *m)
{
	if (!c->answer_waiting)
		return false;
	metrics_inc(limit_hits[LIMIT_ANSWER_IN_FLIGHT]);
	if (m->type == MSG_REGISTER)
		metrics_inc(registrations[ERR_RATE_LIMITED]);
	router_error_to(r, c, m, ERR_RATE_LIMITED, NULL, NULL,
			"A large answer to this session is still being sent: read it first");
	return true;
}

void router_rate_limited(struct router *r, struct client *c)
{
	struct msg none = { .type = MSG_UNKNOWN };
	router_error_to(r, c, &none, ERR_RATE_LIMITED, NULL, NULL, "Too many messages: slow down");
}

void router_shutting_down(struct router *r, struct client *c)
{
	struct msg_error e = { .code = ERR_SERVER_SHUTTING_DOWN };

	snprintf(e.message, sizeof e.message, "Server is shutting down");
	/* Not even before registration: a v2.0 worker ends on any error,
	 * and reconnects after a plain 1001. */
	if (c->proto != PROTOCOL_V21) {
		untold(r, c, MSG_UNKNOWN, &e);
		return;
	}
	metrics_inc(errors_sent[e.code]);
	router_send_owned(r, c, protocol_error_from(&e));
}

bool router_open_mode(struct router *r)
{
	return !r->svc->auth_required(r->svc_ctx);
}


/* --- create_room (the room service does the work) --- */

struct router_pending {
	struct router *r;
	struct client *c;  /* the asker, NULL once gone */
	bool finished, in_call;
};

void router_room_created(int status, const struct store_room *room, const char *token,
			 const char *why, void *data)
{
	struct router_pending *p = data;
	struct router *r = p->r;

	if (p->c) {
		p->c->pending = NULL;
		if (status == 0) {
			g_autofree char *text = protocol_room_created("room_created", room->id, token,
								      room->expires_at);
			router_send_owned(r, p->c, msgbuf_new(text, strlen(text)));
		} else {
			struct msg none = { .type = MSG_CREATE_ROOM };
			router_error_to(r, p->c, &none, ERR_SERVICE_UNAVAILABLE, NULL, NULL, "%s", why);
		}
	}
	p->finished = true;
	if (!p->in_call)
		g_free(p);
}

/* Starts the creation; -EINVAL (a bad request) or -EDQUOT (a quota is
 * full) with *WHY. */
static int create_room(struct router *r, struct router_pending *p, const char *principal,
		       const struct netaddr *from, const struct msg_create_room *req,
		       const char **why)
{
	const struct roomsvc_request rq = { .spec = req, .created_by = principal, .from = from };
	int rc;

	p->r = r;
	p->in_call = true;
	rc = r->svc->create_room(r->svc_ctx, &rq, p, why);
	p->in_call = false;
	return rc;
}

static void handle_create_room(struct router *r, struct client *c, struct msg *m)
{
	const char *principal = c->peer->principal;
	const char *why = NULL;
	int rc;

	/* Open mode lets any registered peer create; otherwise a JWT does. */
	if (principal ? !g_str_has_prefix(principal, "jwt:") : !router_open_mode(r)) {
		router_error_to(r, c, m, ERR_AUTH_REQUIRED, NULL, NULL,
				"create_room needs a session registered with a JWT");
		return;
	}
	if (c->pending) {
		router_error_to(r, c, m, ERR_INVALID_MESSAGE, NULL, NULL, "a create_room is already in progress");
		return;
	}
	struct router_pending *p = g_new0(struct router_pending, 1);
	p->c = c;
	c->pending = p;
	rc = create_room(r, p, principal ? principal : "anonymous", client_remote(c), &m->create, &why);
	if (rc < 0) {
		c->pending = NULL;
		g_free(p);
		router_error_to(r, c, m, rc == -EDQUOT ? ERR_RATE_LIMITED : ERR_INVALID_MESSAGE, NULL, NULL, "%s",
				why);
	} else if (p->finished) {
		g_free(p);
	}
}

/* Tells each client M (one reference taken here), ends its registration
 * and closes it with CODE.  ERR: M is that error, which a v2.0 session is
 * not told (counted instead); ERR__COUNT: M is no error. */
static unsigned dismiss(struct router *r, GPtrArray *clients, struct msgbuf *m, enum err_code err,
			int code, const char *why)
{
	struct msg_error e = { .code = err };

	if (err != ERR__COUNT)
		snprintf(e.message, sizeof e.message, "%s", why);
	for (guint i = 0; i < clients->len; i++) {
		struct client *c = g_ptr_array_index(clients, i);
		if (err == ERR__COUNT || tells(c, MSG_UNKNOWN, err, false, &e)) {
			if (err != ERR__COUNT)
				metrics_inc(errors_sent[err]);
			r->ops->send(r->ctx, c, m);
		} else {
			untold(r, c, MSG_UNKNOWN, &e);
		}
		router_release(r, c, why);
		c->closing = true;
		r->ops->close(r->ctx, c, code, why);
	}
	msgbuf_unref(m);
	return clients->len;
}

/* A peer's connections: its owner, and a socket it superseded. */
static void add_connections(GPtrArray *clients, const struct peer *p)
{
	g_ptr_array_add(clients, p->owner);
	if (p->former)
		g_ptr_array_add(clients, p->former);
}

unsigned router_close_room(struct router *r, const char *room_id, const char *reason)
{
	struct room *room = registry_find_room(r->reg, room_id);
	g_autoptr(GPtrArray) clients = g_ptr_array_new();

	struct peer *p;

	if (room) {
		ROOM_FOREACH_PEER(room, p)
			add_connections(clients, p);
	}
	return dismiss(r, clients, protocol_room_closed(room_id, reason), ERR__COUNT, 1000,
		       "room closed");
}

struct by_principal {
	const char *principal;
	GPtrArray *clients;
};

static void collect_principal(struct room *room, void *data)
{
	struct by_principal *b = data;
	struct peer *p;

	ROOM_FOREACH_PEER(room, p) {
		if (g_strcmp0(p->principal, b->principal) == 0)
			add_connections(b->clients, p);
	}
}

unsigned router_close_principal(struct router *r, const char *principal, const char *reason)
{
	g_autoptr(GPtrArray) clients = g_ptr_array_new();
	struct by_principal b = { principal, clients };

	registry_foreach_room(r->reg, collect_principal, &b);
	return dismiss(r, clients, protocol_error(ERR_AUTH_FAILED, reason, NULL, NULL), ERR_AUTH_FAILED,
		       1008, reason);
}

/* The sender field, when given, must name the socket's own peer. */
static bool sender_ok(struct router *r, struct client *c, const struct msg *m, const char *field,
		      const char *value)
{
	if (!value || strcmp(value, c->peer->id) == 0)
		return true;
	router_error_to(r, c, m, ERR_FORBIDDEN, NULL, NULL,
			"%s does not match this connection's peer id", field);
	return false;
}

static bool match_filter(const struct peer *p, void *data)
{
	return filter_match(data, p->role, p->meta);
}

static void handle_discover(struct router *r, struct client *c, struct msg *m)
{
	struct filter *f = NULL;
	g_autofree char *why = NULL;

	if (!sender_ok(r, c, m, "from_peer_id", m->discover.from) || router_answer_busy(r, c, m))
		return;
	if (filter_compile(m->discover.filters, r->cfg->max_filter_work, &f, &why) < 0) {
		router_error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL, "%s", why);
		return;
	}
	struct msgbuf *list = protocol_peer_list(r->scratch, c->peer, m->discover.limit, match_filter, f);
	if (filter_exhausted(f)) { /* a partial list would look complete */
		msgbuf_unref(list);
		metrics_inc(limit_hits[LIMIT_FILTER_WORK]);
		router_error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL,
				"Filter needs more work than max_filter_work allows");
	} else {
		router_answer_owned(r, c, list);
	}
	filter_free(f);
	metrics_observe(&metrics.discovery_duration, now_ns(r) - r->received_ns);
}

static void handle_update(struct router *r, struct client *c, struct msg *m)
{
	struct meta *meta;
	const char *why = NULL;
	int rc;

	if (!sender_ok(r, c, m, "peer_id", m->update.peer_id))
		return;
	rc = meta_merge(c->peer->meta, m->update.metadata, r->cfg->max_metadata_bytes, &meta, &why);
	if (rc < 0) {
		if (rc == -EMSGSIZE)
			metrics_inc(limit_hits[LIMIT_METADATA_BYTES]);
		router_error_to(r, c, m, ERR_INVALID_MESSAGE, NULL, NULL, "%s", why);
		return;
	}
	peer_set_meta(c->peer, meta);
	router_send_owned(r, c, protocol_metadata_updated(r->scratch, c->peer));
}

/* Queues OUT (ours) for TARGET; tells the sender when it did not fit. */
static void deliver(struct router *r, struct client *c, const struct msg *m, struct peer *target,
		    const char *field, struct msgbuf *out)
{
	int rc = router_send_owned(r, target->owner, out);
	if (rc < 0) {
		router_error_to(r, c, m, ERR_DELIVERY_FAILED, field, target->id, "Could not deliver to peer %s: %s",
				target->id, rc == -ENOBUFS ? "its queue is full" : "its connection is closing");
		return;
	}
	metrics_inc(messages_routed);
	metrics_observe(&metrics.route_latency, now_ns(r) - r->received_ns);
}

/* The target in C's room, or an error to C and NULL. */
static struct peer *find_target(struct router *r, struct client *c, const struct msg *m,
				const char *field, const char *id, bool tell_other_room)
{
	struct peer *t = room_find_peer(c->peer->room, id);
	if (t)
		return t;
	if (tell_other_room && registry_id_exists(r->reg, id))
		router_error_to(r, c, m, ERR_PEER_NOT_IN_ROOM, field, id, "Target peer %s not in same room", id);
	else
		router_error_to(r, c, m, ERR_PEER_NOT_FOUND, field, id, "Target peer %s not found", id);
	return NULL;
}

static void handle_route(struct router *r, struct client *c, struct msg *m)
{
	const struct msg_route *rt = &m->route;
	struct peer *target;

	if (!sender_ok(r, c, m, "from_peer_id", rt->from))
		return;
	target = find_target(r, c, m, rt->to_field, rt->to, true);
	if (target)
		deliver(r, c, m, target, rt->to_field,
			protocol_routed(r->scratch, m->type, c->peer, target, rt));
}

static void handle_signal(struct router *r, struct client *c, struct msg *m, const char *text,
			  size_t len)
{
	struct peer *target;

	if (!sender_ok(r, c, m, "sender", m->signal.sender))
		return;
	target = find_target(r, c, m, "target", m->signal.target, false);
	if (target)
		deliver(r, c, m, target, "target", protocol_signal(r->scratch, m, text, len, c->peer));
}

/* A relayed type (protocol_is_relay): forwarded whole to the peer of the
 * room it names, with the sender stamped as for a signal; one that names
 * none, or one not here, is counted.  Never answered with an error: these
 * are themselves answers (a busy worker's error, a job's status), and
 * the original server's clients end on any error. */
static void handle_relay(struct router *r, struct client *c, struct msg *m)
{
	struct peer *target = m->relay.target ? room_find_peer(c->peer->room, m->relay.target) : NULL;

	if (!target) {
		metrics_inc(relayed[m->type][RELAY_NO_TARGET]);
		router_log(r, LOG_DEBUG, LOG_EVENT_NONE, NULL, "%s from %s names no peer of its room",
			   protocol_type_name(m->type), c->peer->id);
		return;
	}
	if (router_send_owned(r, target->owner, protocol_signal(r->scratch, m, NULL, 0, c->peer)) < 0) {
		metrics_inc(relayed[m->type][RELAY_FAILED]);
		return;
	}
	metrics_inc(relayed[m->type][RELAY_FORWARDED]);
	metrics_inc(messages_routed);
	metrics_observe(&metrics.route_latency, now_ns(r) - r->received_ns);
}

static bool needs_registration(enum msg_type t)
{
	return t != MSG_UNKNOWN && t != MSG_REGISTER && t != MSG_PING && t != MSG_PONG;
}

void router_receive(struct router *r, struct client *c, const char *text, size_t len, bool utf8)
{
	struct msg m;
	struct msg_error err;
	int rc;

	if (c->closing)
		return;
	r->received_ns = now_ns(r);
	r->text = text;
	r->len = len;
	const struct protocol_limits lim = { r->cfg->max_json_depth, r->cfg->max_json_values };
	rc = utf8 && protocol_decode_routed(text, len, &lim, &m) == 0
		     ? 0
		     : protocol_decode(r->tok, &lim, text, len, &m, &err);
	if (!r->replaying)
		metrics_inc(messages_received[m.type]);
	if (needs_registration(m.type) && !c->peer) {
		router_error_to(r, c, &m, ERR_NOT_IN_ROOM, NULL, NULL, "Not registered in a room: send register first");
		goto out;
	}
	if (rc < 0) {
		if (err.limit != PROTOCOL_LIMIT_NONE)
			metrics_inc(limit_hits[err.limit == PROTOCOL_LIMIT_DEPTH ? LIMIT_JSON_DEPTH
										 : LIMIT_JSON_VALUES]);
		if (m.type == MSG_REGISTER)
			metrics_inc(registrations[err.code]);
		send_error_as(r, c, &m, &err, true);
		goto out;
	}

	switch (m.type) {
	case MSG_REGISTER:
		registration_handle(r, c, &m);
		break;
	case MSG_DISCOVER_PEERS:
		handle_discover(r, c, &m);
		break;
	case MSG_UPDATE_METADATA:
		handle_update(r, c, &m);
		break;
	case MSG_PEER_MESSAGE:
	case MSG_MESH_CONNECT:
	case MSG_MESH_ANSWER:
	case MSG_ICE_CANDIDATE:
		handle_route(r, c, &m);
		break;
	case MSG_OFFER:
	case MSG_ANSWER:
	case MSG_CANDIDATE:
		handle_signal(r, c, &m, text, len);
		break;
	case MSG_CREATE_ROOM:
		handle_create_room(r, c, &m);
		break;
	case MSG_PING:
		router_send_owned(r, c, protocol_simple("pong"));
		break;
	default: /* pong: the answer to our keepalive */
		if (protocol_is_relay(m.type))
			handle_relay(r, c, &m);
		break;
	}
out:
	msg_clear(&m);
}

void router_disconnect(struct router *r, struct client *c)
{
	registration_unpark(c);
	if (c->pending) /* the store still completes it; nobody to tell */
		c->pending->c = NULL;
	c->pending = NULL;
	/* A superseded socket lets go: the registration it lost stays. */
	if (c->superseded)
		router_log_peer(r, LOG_INFO, LOG_EVENT_SESSION_CLOSED, c, c->peer->room->id, c->peer->id,
				c->peer->role, NULL, "superseded socket gone; its peer id stays registered");
	router_release(r, c, "connection closed");
}
