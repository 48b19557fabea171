#include "core/router.h"

#include "core/events.h"
#include "core/filter.h"
#include "util/metrics.h"
#include "core/protocol.h"
#include "core/registration.h"
#include "core/router-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void remote_peer_free(void *data)
{
	struct router_remote_peer *p = data;
	g_free((char *)p->room);
	g_free((char *)p->peer);
	g_free((char *)p->instance);
	g_free((char *)p->role);
	g_free((char *)p->meta);
	g_free((char *)p->principal);
	g_free(p);
}

static struct router_remote_peer *remote_peer_dup(const struct router_remote_peer *rp)
{
	struct router_remote_peer *p = g_new(struct router_remote_peer, 1);
	*p = *rp;
	p->room = g_strdup(rp->room);
	p->peer = g_strdup(rp->peer);
	p->instance = g_strdup(rp->instance);
	p->role = g_strdup(rp->role);
	p->meta = g_strdup(rp->meta);
	p->principal = g_strdup(rp->principal);
	return p;
}

static char *held_key(const char *room, const char *peer)
{
	return g_strdup_printf("%s\n%s", room, peer);
}

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
	r->view_waits = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
					      (GDestroyNotify)g_ptr_array_unref);
	r->watched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	r->held_upserts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, remote_peer_free);
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
	g_hash_table_unref(r->view_waits);
	g_hash_table_unref(r->watched);
	g_hash_table_unref(r->held_upserts);
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

/* A request of the presence and watch extension: only clients that use
 * it send one, and they are told every error about it. */
static bool extension_request(const struct msg *m)
{
	return m->type == MSG_SUBSCRIBE || m->type == MSG_UNSUBSCRIBE || m->type == MSG_UNWATCH ||
	       (m->type == MSG_DISCOVER_PEERS && m->discover.watch);
}

static void send_error_as(struct router *r, struct client *c, const struct msg *m,
			  const struct msg_error *e, bool decode)
{
	if (!extension_request(m) && !tells(c, m->type, e->code, decode, e)) {
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
void router_leave(struct router *r, struct client *c, const char *why, enum protocol_gone gone)
{
	struct peer *p = c->peer;
	struct room *room = p->room;
	bool last = room_size(room) == 1;
	g_autofree char *room_id = router_clustered(r) ? g_strdup(room->id) : NULL;

	router_log_peer(r, LOG_INFO, LOG_EVENT_PEER_LEFT, c, room->id, p->id, p->role, NULL, why);
	events_end(c);
	events_left(r, p, gone);
	c->peer = NULL;
	g_clear_pointer(&c->claim_text, g_free);
	if (p->former) {
		/* The socket it superseded stays open, registered nowhere. */
		struct client *o = p->former;
		o->peer = NULL;
		o->superseded = false;
	}
	if (last)
		router_log(r, LOG_DEBUG, LOG_EVENT_NONE, NULL, "room %s freed", room->id);
	/* Another instance that took the id has the entry now: left alone. */
	if (room_id && !r->no_withdraw)
		r->svc->cluster_withdraw(r->svc_ctx, p, gone);
	g_autofree char *key = room_id ? held_key(room_id, p->id) : NULL;
	registry_remove(r->reg, p);
	metrics_set(peers, registry_n_peers(r->reg));
	/* another instance's session of the id, held while we claimed it */
	gpointer held_k, held;
	if (key && g_hash_table_steal_extended(r->held_upserts, key, &held_k, &held)) {
		router_cluster_peer_upsert(r, held);
		g_free(held_k);
		remote_peer_free(held);
	}
	if (room_id)
		router_maybe_unwatch(r, room_id);
	if (last || room_id)
		metrics_set(rooms, registry_n_rooms(r->reg));
}

/* C no longer speaks as its peer: it leaves the registration it owns, or
 * lets go of one a newer connection took over from it. */
void router_release(struct router *r, struct client *c, const char *why, enum protocol_gone gone)
{
	if (c->superseded) {
		c->peer->former = NULL;
		c->peer = NULL;
		c->superseded = false;
	} else if (c->peer) {
		router_leave(r, c, why, gone);
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
			int code, const char *why, enum protocol_gone gone)
{
	struct msg_error e = { .code = err };

	if (err != ERR__COUNT)
		snprintf(e.message, sizeof e.message, "%s", why);
	/* Going together: they are not told of each other's leaving. */
	for (guint i = 0; i < clients->len; i++)
		((struct client *)g_ptr_array_index(clients, i))->closing = true;
	for (guint i = 0; i < clients->len; i++) {
		struct client *c = g_ptr_array_index(clients, i);
		if (err == ERR__COUNT || tells(c, MSG_UNKNOWN, err, false, &e)) {
			if (err != ERR__COUNT)
				metrics_inc(errors_sent[err]);
			r->ops->send(r->ctx, c, m);
		} else {
			untold(r, c, MSG_UNKNOWN, &e);
		}
		router_release(r, c, why, gone);
		r->ops->close(r->ctx, c, code, why);
	}
	msgbuf_unref(m);
	return clients->len;
}

/* A peer's connections: its owner, and a socket it superseded. */
static void add_connections(GPtrArray *clients, const struct peer *p)
{
	if (peer_is_remote(p)) /* its own instance closes it */
		return;
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
		       "room closed", PROTOCOL_GONE_ROOM_CLOSED);
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
		       1008, reason, PROTOCOL_GONE_DISCONNECTED);
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

	const char *watch_id = NULL;

	if (!sender_ok(r, c, m, "from_peer_id", m->discover.from) || router_answer_busy(r, c, m) ||
	    (m->discover.watch && !events_may_watch(r, c, m)))
		return;
	if (filter_compile(m->discover.filters, r->cfg->max_filter_work, &f, &why) < 0) {
		router_error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL, "%s", why);
		return;
	}
	/* A watch keeps the filter and follows the whole set (limit bounds
	 * this answer only): finding it is a discovery of the whole room. */
	if (m->discover.watch) {
		watch_id = events_watch(r, c, f);
		if (!watch_id) {
			f = NULL; /* gone with it */
			goto over_budget;
		}
		filter_rearm(f);
	}
	struct msgbuf *list = protocol_peer_list(r->scratch, c->peer, m->discover.limit, match_filter, f,
						 watch_id);
	if (filter_exhausted(f)) { /* a partial list would look complete */
		/* never with a watch: its set took every peer within budget */
		g_assert(!watch_id);
		msgbuf_unref(list);
		goto over_budget;
	}
	router_answer_owned(r, c, list);
	goto out;
over_budget:
	metrics_inc(limit_hits[LIMIT_FILTER_WORK]);
	router_error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL,
			"Filter needs more work than max_filter_work allows");
out:
	if (!watch_id)
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
	struct meta *old = peer_swap_meta(c->peer, meta);
	if (router_clustered(r))
		r->svc->cluster_update(r->svc_ctx, c->peer);
	router_send_owned(r, c, protocol_metadata_updated(r->scratch, c->peer));
	events_updated(r, c->peer, old);
	meta_free(old);
}

/* Why a forward to another instance failed at once, for the sender. */
static const char *forward_error(int rc)
{
	switch (rc) {
	case -EMSGSIZE:
		return "too large to cross to its instance";
	case -ENOBUFS:
		return "too many messages on their way to other instances";
	case -ENOTCONN:
		return "its instance cannot be reached (cluster degraded)";
	default:
		return "its instance cannot be reached";
	}
}

/* OUT (ours) to TARGET: queued for it here, or one forward to its
 * instance, whose far failures come back as router_cluster_delivery_failed. */
static int send_to_peer(struct router *r, const struct peer *from, struct peer *target,
			enum msg_type type, struct msgbuf *out)
{
	int rc;

	if (!peer_is_remote(target))
		return router_send_owned(r, target->owner, out);
	rc = r->svc->cluster_forward(r->svc_ctx, target, from, type, out);
	msgbuf_unref(out);
	return rc;
}

/* Queues OUT (ours) for TARGET; tells the sender when it did not fit. */
static void deliver(struct router *r, struct client *c, const struct msg *m, struct peer *target,
		    const char *field, struct msgbuf *out)
{
	int rc = send_to_peer(r, c->peer, target, m->type, out);
	if (rc < 0 && peer_is_remote(target)) {
		router_error_to(r, c, m, ERR_DELIVERY_FAILED, field, target->id, "Could not deliver to peer %s: %s",
				target->id, forward_error(rc));
		return;
	}
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
	if (send_to_peer(r, c->peer, target, m->type, protocol_signal(r->scratch, m, NULL, 0, c->peer)) < 0) {
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
	if (needs_registration(m.type) && (!c->peer || c->peer->claiming)) {
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
	case MSG_SUBSCRIBE:
	case MSG_UNSUBSCRIBE:
		events_handle_subscribe(r, c, &m);
		break;
	case MSG_UNWATCH:
		events_handle_unwatch(r, c, &m);
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
	router_release(r, c, "connection closed",
		       c->timed_out ? PROTOCOL_GONE_TIMEOUT : PROTOCOL_GONE_DISCONNECTED);
}


/* --- [cluster]: what other instances tell (router.h) --- */

static bool view_needed(struct router *r, const char *room_id)
{
	struct room *room = registry_find_room(r->reg, room_id);

	return (room && room->n_local) || g_hash_table_contains(r->view_waits, room_id) ||
	       g_strcmp0(r->holding_room, room_id) == 0;
}

void router_maybe_unwatch(struct router *r, const char *room_id)
{
	struct room *room;
	struct peer *p;

	if (!router_clustered(r) || view_needed(r, room_id) || !g_hash_table_remove(r->watched, room_id))
		return;
	r->svc->cluster_unwatch(r->svc_ctx, room_id);
	/* What is left are other instances' peers: the view goes with it. */
	room = registry_find_room(r->reg, room_id);
	if (room) {
		g_autoptr(GPtrArray) remote = g_ptr_array_new();
		ROOM_FOREACH_PEER(room, p)
			g_ptr_array_add(remote, p);
		/* the last one frees the room */
		for (guint i = 0; i < remote->len; i++)
			registry_remove(r->reg, g_ptr_array_index(remote, i));
	}
	metrics_set(rooms, registry_n_rooms(r->reg));
}

int router_watch(struct router *r, const char *room_id)
{
	if (!g_hash_table_contains(r->watched, room_id))
		g_hash_table_add(r->watched, g_strdup(room_id));
	return r->svc->cluster_watch(r->svc_ctx, room_id);
}

bool router_park_for_view(struct router *r, struct client *c, const char *room_id)
{
	GPtrArray *waits = g_hash_table_lookup(r->view_waits, room_id);
	struct router_parked *p = g_new0(struct router_parked, 1);

	p->r = r;
	p->c = c;
	p->view_room = g_strdup(room_id);
	p->text = g_memdup2(r->text, r->len);
	p->len = r->len;
	if (!waits) {
		waits = g_ptr_array_new();
		g_hash_table_insert(r->view_waits, g_strdup(room_id), waits);
	}
	g_ptr_array_add(waits, p);
	c->parked = p;
	return true;
}

void router_cluster_view_ready(struct router *r, const char *view_room)
{
	gpointer key, value;

	if (!g_hash_table_steal_extended(r->view_waits, view_room, &key, &value))
		return;
	g_autoptr(GPtrArray) waits = value;
	/* Ours: VIEW_ROOM is the view's own string, and a replayed register
	 * that fails may unwatch the room, freeing the view. */
	g_autofree char *room = key;
	/* Each goes on as it came, now answered from the loaded view. */
	for (guint i = 0; i < waits->len; i++) {
		struct router_parked *p = g_ptr_array_index(waits, i);
		struct client *c = p->c;
		c->parked = NULL;
		r->replaying = true;
		r->view_waited = true;
		router_receive(r, c, p->text, p->len, false);
		r->view_waited = false;
		r->replaying = false;
		g_free(p->view_room);
		g_free(p->text);
		g_free(p);
	}
	router_maybe_unwatch(r, room);
}

void router_replaced_elsewhere(struct router *r, struct client *c)
{
	struct peer *p = c->peer;

	if (c->proto == PROTOCOL_V20) {
		/* As supersede() on one instance: a v2.0 worker's socket stays
		 * open and is sent nothing; a close would start a reconnect
		 * fight.  Unlike there it is registered nowhere (it cannot send
		 * as the peer another instance holds), and nothing here closes
		 * it when the id is taken a third time: its client does. */
		metrics_inc(sessions_superseded);
		router_log_peer(r, LOG_INFO, LOG_EVENT_SESSION_REPLACED, c, p->room->id, p->id, p->role, NULL,
				"v2.0 session superseded by a registration on another instance; its socket stays open");
		r->no_withdraw = true;
		router_leave(r, c, "superseded", PROTOCOL_GONE_REPLACED);
		r->no_withdraw = false;
		return;
	}
	router_log_peer(r, LOG_INFO, LOG_EVENT_SESSION_REPLACED, c, p->room->id, p->id, p->role, NULL,
			"session replaced by a registration on another instance");
	router_send_owned(r, c, protocol_error(ERR_SESSION_REPLACED, "Session replaced by a new registration",
					       NULL, NULL));
	metrics_inc(errors_sent[ERR_SESSION_REPLACED]);
	r->no_withdraw = true;
	router_leave(r, c, "replaced", PROTOCOL_GONE_REPLACED);
	r->no_withdraw = false;
	c->closing = true;
	r->ops->close(r->ctx, c, ROUTER_CLOSE_REPLACED, "session replaced");
}

static struct meta *remote_meta(struct router *r, const char *text)
{
	json_object *o = text ? json_tokener_parse(text) : NULL;
	struct meta *m = NULL;
	const char *why;

	/* Its own instance checked it; a bound here keeps a bad one out. */
	if (meta_new(o && json_object_is_type(o, json_type_object) ? o : NULL, r->cfg->max_metadata_bytes * 2,
		     &m, &why) < 0)
		meta_new(NULL, r->cfg->max_metadata_bytes, &m, &why);
	json_object_put(o);
	return m;
}

void router_cluster_peer_upsert(struct router *r, const struct router_remote_peer *rp)
{
	struct room *room = registry_find_room(r->reg, rp->room);
	struct peer *old = room ? room_find_peer(room, rp->peer) : NULL;

	if (!view_needed(r, rp->room))
		return; /* a view let go of: its last events */
	if (old && !peer_is_remote(old) && old->claiming) {
		/* Our register of the id waits for its claim, whose answer
		 * may come after this news (another connection): that answer
		 * decides; this applies if the register ends without the id. */
		g_hash_table_replace(r->held_upserts, held_key(rp->room, rp->peer), remote_peer_dup(rp));
		return;
	}
	if (old && !peer_is_remote(old)) {
		/* Ours: a newer session elsewhere takes the id (as "replaced"
		 * says too, whichever comes first); an older one is stale. */
		if (rp->epoch <= old->epoch)
			return;
		g_autofree char *room_id = g_strdup(rp->room);
		r->holding_room = room_id;
		router_replaced_elsewhere(r, old->owner);
		r->holding_room = NULL;
		old = NULL;
	} else if (old && old->epoch == rp->epoch && g_strcmp0(old->instance, rp->instance) == 0 &&
		   strcmp(old->role, rp->role) == 0) {
		struct meta *was = peer_swap_meta(old, remote_meta(r, rp->meta));
		events_updated(r, old, was);
		meta_free(was);
		return;
	} else if (old) {
		events_left(r, old, PROTOCOL_GONE_REPLACED);
		registry_remove(r->reg, old);
	}
	room = registry_ensure_room(r->reg, rp->room);
	events_joined(r, registry_add_remote(r->reg, room, rp->peer, rp->role, remote_meta(r, rp->meta),
					     rp->instance, rp->principal, rp->epoch, rp->connected_at * 1000));
	metrics_set(rooms, registry_n_rooms(r->reg));
}

void router_cluster_peer_remove(struct router *r, const char *room_id, const char *peer,
				const char *instance, enum protocol_gone why)
{
	struct room *room = registry_find_room(r->reg, room_id);
	struct peer *p = room ? room_find_peer(room, peer) : NULL;

	g_autofree char *key = held_key(room_id, peer);
	struct router_remote_peer *held = g_hash_table_lookup(r->held_upserts, key);
	if (held && strcmp(held->instance, instance) == 0)
		g_hash_table_remove(r->held_upserts, key);
	if (!p || !peer_is_remote(p) || strcmp(p->instance, instance) != 0)
		return;
	events_left(r, p, why);
	registry_remove(r->reg, p);
	metrics_set(rooms, registry_n_rooms(r->reg));
}

void router_cluster_claimed(struct router *r, const char *room, const char *peer, uint64_t epoch,
			    enum router_claim_result res, const char *admin)
{
	struct peer *p = registry_find_epoch(r->reg, epoch);
	const struct router_claim cl = { res, admin };

	if (!p || !p->claiming || strcmp(p->id, peer) != 0 || strcmp(p->room->id, room) != 0)
		return; /* gone already */
	struct client *c = p->owner;
	if (c->closing)
		return; /* its close ends the registration */
	g_autofree char *text = g_steal_pointer(&c->claim_text);
	r->claim = &cl;
	r->replaying = true;
	router_receive(r, c, text, c->claim_len, false);
	r->replaying = false;
	r->claim = NULL;
	if (res == ROUTER_CLAIMED) { /* ours now: what another held is over */
		g_autofree char *key = held_key(room, peer);
		g_hash_table_remove(r->held_upserts, key);
	}
}

void router_cluster_replaced(struct router *r, const char *room, const char *peer, uint64_t epoch)
{
	struct peer *p = registry_find_epoch(r->reg, epoch);

	if (!p || strcmp(p->id, peer) != 0 || strcmp(p->room->id, room) != 0)
		return; /* gone already, or taken over on its upsert */
	router_replaced_elsewhere(r, p->owner);
}

int router_cluster_deliver(struct router *r, const char *to_peer, uint64_t epoch, const char *bytes,
			   size_t len)
{
	struct peer *p = registry_find_epoch(r->reg, epoch);
	struct client *c;
	int rc;

	if (!p || strcmp(p->id, to_peer) != 0)
		return -ENOENT;
	c = p->owner;
	if (c->closing)
		return -EPIPE;
	/* The bytes its sender's instance built: as a local delivery's. */
	rc = router_send_owned(r, c, msgbuf_new(bytes, len));
	if (rc == 0)
		metrics_inc(messages_routed);
	return rc;
}

struct failed_sender {
	const char *from, *to;
	struct peer *found;
};

static void find_sender(struct room *room, void *data)
{
	struct failed_sender *f = data;
	struct peer *p = room_find_peer(room, f->from);

	if (!f->found && p && !peer_is_remote(p) && room_find_peer(room, f->to))
		f->found = p;
}

/* The field that names the target in a message of TYPE (protocol.c's
 * route table); NULL: a type that is never answered with an error. */
static const char *target_field(enum msg_type type)
{
	switch (type) {
	case MSG_PEER_MESSAGE:
		return "to_peer_id";
	case MSG_MESH_CONNECT:
	case MSG_MESH_ANSWER:
	case MSG_ICE_CANDIDATE:
		return "target_peer_id";
	case MSG_OFFER:
	case MSG_ANSWER:
	case MSG_CANDIDATE:
		return "target";
	default:
		return NULL;
	}
}

void router_cluster_delivery_failed(struct router *r, const char *from_peer, const char *to_peer,
				    enum msg_type type, const char *why)
{
	struct failed_sender f = { from_peer, to_peer, NULL };
	struct msg m = { .type = type }; /* told as that type's failure, as here */
	const char *field = target_field(type);

	if (!field) {
		/* a relay (handle_relay) is counted, never answered */
		if (type > MSG_UNKNOWN && type < MSG__COUNT && protocol_is_relay(type))
			metrics_inc(relayed[type][RELAY_FAILED]);
		return;
	}

	/* Rare: a scan of the rooms is cheaper than an index kept always. */
	registry_foreach_room(r->reg, find_sender, &f);
	if (!f.found) {
		router_log(r, LOG_DEBUG, LOG_EVENT_NONE, NULL, "delivery from %s to %s failed (%s); sender gone",
			   from_peer, to_peer, why);
		return;
	}
	router_error_to(r, f.found->owner, &m, ERR_DELIVERY_FAILED, field, to_peer,
			"Could not deliver to peer %s: %s", to_peer, why);
}
