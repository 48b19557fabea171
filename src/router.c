#include "router.h"

#include "filter.h"
#include "log.h"
#include "metrics.h"
#include "protocol.h"
#include "secret.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct router {
	const struct config *cfg;
	struct registry *reg;
	struct turn *turn;
	const struct router_ops *ops;
	void *ctx;
	json_tokener *tok;
	GString *scratch;
	uint64_t received_ns; /* when the message being handled arrived */
};

struct router *router_new(const struct config *cfg, struct registry *reg,
			  const struct router_ops *ops, void *ctx)
{
	struct router *r = g_new0(struct router, 1);
	r->reg = reg;
	r->ops = ops;
	r->ctx = ctx;
	r->scratch = g_string_sized_new(4096);
	router_set_config(r, cfg);
	return r;
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
static int send_owned(struct router *r, struct client *c, struct msgbuf *m)
{
	int rc = r->ops->send(r->ctx, c, m);
	msgbuf_unref(m);
	return rc;
}

static void send_error(struct router *r, struct client *c, const struct msg *m,
		       const struct msg_error *e)
{
	metrics_inc(errors_sent[e->code]);
	send_owned(r, c, protocol_error_from(e, m->type == MSG_REGISTER));
}

static void error_to(struct router *r, struct client *c, const struct msg *m, enum err_code code,
		     const char *field, const char *field_value, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
static void error_to(struct router *r, struct client *c, const struct msg *m, enum err_code code,
		     const char *field, const char *field_value, const char *fmt, ...)
{
	struct msg_error e = { .code = code, .field = field, .field_value = field_value };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof e.message, fmt, ap);
	va_end(ap);
	send_error(r, c, m, &e);
}

static void log_peer(int prio, enum log_event ev, const struct client *c, const char *room,
		     const char *peer, const char *role, const char *code, const char *what)
{
	struct log_fields f = { .room = room, .peer = peer, .role = role, .remote = c->remote,
				.code = code };
	log_event(prio, ev, &f, "%s", what);
}

/* Ends C's registration. */
static void leave(struct router *r, struct client *c, const char *why)
{
	struct peer *p = c->peer;
	struct room *room = p->room;
	bool last = room_size(room) == 1;

	log_peer(LOG_INFO, LOG_EVENT_PEER_LEFT, c, room->id, p->id, p->role, NULL, why);
	c->peer = NULL;
	if (last)
		log_debug("room %s freed", room->id);
	registry_remove(r->reg, p);
	metrics_set(peers, registry_n_peers(r->reg));
	if (last)
		metrics_set(rooms, registry_n_rooms(r->reg));
}

static void refuse_register(struct router *r, struct client *c, const struct msg *m,
			    enum err_code code, const char *room, const char *peer,
			    const char *message)
{
	metrics_inc(registrations[code]);
	log_peer(LOG_NOTICE, LOG_EVENT_REGISTRATION_REFUSED, c, room, peer, NULL,
		 protocol_code_name(code), message);
	error_to(r, c, m, code, NULL, NULL, "%s", message);
}

static void handle_register(struct router *r, struct client *c, struct msg *m)
{
	const struct msg_register *reg = &m->reg;
	const char *why = NULL;
	struct meta *meta = NULL;
	char generated[5 + 12 + 1] = "peer-";
	const char *peer_id = reg->peer_id;
	const char *principal = NULL; /* auth off: every caller is one principal */
	struct room *room;
	struct peer *existing, *peer;
	int rc;

	if (!reg->room_id) {
		refuse_register(r, c, m, ERR_INVALID_MESSAGE, NULL, peer_id, "Missing field: room_id");
		return;
	}

	/* A registered socket moves: its old registration ends first. */
	if (c->peer)
		leave(r, c, "moved to another registration");

	rc = meta_new(reg->metadata, r->cfg->max_metadata_bytes, &meta, &why);
	if (rc < 0) {
		if (rc == -EMSGSIZE)
			metrics_inc(limit_hits[LIMIT_METADATA_BYTES]);
		refuse_register(r, c, m, ERR_INVALID_MESSAGE, reg->room_id, peer_id, why);
		return;
	}

	room = registry_find_room(r->reg, reg->room_id);
	if (!peer_id) {
		/* 48 random bits; a clash within one room is retried. */
		do {
			if (secret_random_hex(generated + 5, 6) < 0)
				g_error("no randomness available");
		} while (room && room_find_peer(room, generated));
		peer_id = generated;
	}

	existing = room ? room_find_peer(room, peer_id) : NULL;
	if (existing) {
		/* Same principal (any caller while auth is off) replaces. */
		if (g_strcmp0(existing->principal, principal) != 0) {
			meta_free(meta);
			refuse_register(r, c, m, ERR_PEER_ID_TAKEN, reg->room_id, peer_id,
					"Peer id is already registered in this room");
			return;
		}
		struct client *old = existing->owner;
		log_peer(LOG_INFO, LOG_EVENT_SESSION_REPLACED, old, room->id, existing->id,
			 existing->role, NULL, "session replaced by a new registration");
		send_owned(r, old, protocol_error(ERR_SESSION_REPLACED,
						  "Session replaced by a new registration", false,
						  NULL, NULL));
		metrics_inc(errors_sent[ERR_SESSION_REPLACED]);
		leave(r, old, "replaced");
		old->closing = true;
		r->ops->close(r->ctx, old, ROUTER_CLOSE_REPLACED, "session replaced");
		room = registry_find_room(r->reg, reg->room_id);
	}

	if (room && room_size(room) >= r->cfg->max_peers_per_room) {
		meta_free(meta);
		metrics_inc(limit_hits[LIMIT_PEERS_PER_ROOM]);
		refuse_register(r, c, m, ERR_ROOM_FULL, reg->room_id, peer_id, "Room is full");
		return;
	}
	if (!room) {
		room = registry_ensure_room(r->reg, reg->room_id);
		metrics_inc(rooms_created_total);
		metrics_set(rooms, registry_n_rooms(r->reg));
	}

	peer = registry_add(r->reg, room, peer_id, reg->role, meta, NULL, c, g_get_real_time());
	c->peer = peer;
	metrics_set(peers, registry_n_peers(r->reg));
	metrics_inc(registrations[ERR__COUNT]);

	if (reg->is_admin) {
		if (!room->admin)
			room->admin = peer;
		else
			send_owned(r, c, protocol_admin_conflict(room));
	}

	g_autofree char *ice = turn_ice_servers(r->turn, peer->id, g_get_real_time() / G_USEC_PER_SEC);
	send_owned(r, c, protocol_registered(r->scratch, peer, reg->token, ice));
	log_peer(LOG_INFO, LOG_EVENT_PEER_REGISTERED, c, room->id, peer->id, peer->role, NULL,
		 "peer registered");
}

/* The sender field, when given, must name the socket's own peer. */
static bool sender_ok(struct router *r, struct client *c, const struct msg *m, const char *field,
		      const char *value)
{
	if (!value || strcmp(value, c->peer->id) == 0)
		return true;
	error_to(r, c, m, ERR_FORBIDDEN, NULL, NULL,
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

	if (!sender_ok(r, c, m, "from_peer_id", m->discover.from))
		return;
	if (filter_compile(m->discover.filters, &f, &why) < 0) {
		error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL, "%s", why);
		return;
	}
	send_owned(r, c, protocol_peer_list(r->scratch, c->peer, m->discover.limit, match_filter, f));
	filter_free(f);
	metrics_observe(&metrics.discovery_duration, metrics_now_ns() - r->received_ns);
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
		error_to(r, c, m, ERR_INVALID_MESSAGE, NULL, NULL, "%s", why);
		return;
	}
	peer_set_meta(c->peer, meta);
	send_owned(r, c, protocol_metadata_updated(r->scratch, c->peer));
}

/* Queues OUT (ours) for TARGET; tells the sender when it did not fit. */
static void deliver(struct router *r, struct client *c, const struct msg *m, struct peer *target,
		    const char *field, struct msgbuf *out)
{
	if (send_owned(r, target->owner, out) < 0) {
		error_to(r, c, m, ERR_DELIVERY_FAILED, field, target->id,
			 "Could not deliver to peer %s: its queue is full", target->id);
		return;
	}
	metrics_inc(messages_routed);
	metrics_observe(&metrics.route_latency, metrics_now_ns() - r->received_ns);
}

/* The target in C's room, or an error to C and NULL. */
static struct peer *find_target(struct router *r, struct client *c, const struct msg *m,
				const char *field, const char *id, bool tell_other_room)
{
	struct peer *t = room_find_peer(c->peer->room, id);
	if (t)
		return t;
	if (tell_other_room && registry_id_exists(r->reg, id))
		error_to(r, c, m, ERR_PEER_NOT_IN_ROOM, field, id, "Target peer %s not in same room", id);
	else
		error_to(r, c, m, ERR_PEER_NOT_FOUND, field, id, "Target peer %s not found", id);
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
			protocol_routed(r->scratch, m->type, c->peer, target, rt->body));
}

static void handle_signal(struct router *r, struct client *c, struct msg *m, const char *text,
			  size_t len)
{
	struct peer *target;

	if (!sender_ok(r, c, m, "sender", m->signal.sender))
		return;
	target = find_target(r, c, m, "target", m->signal.target, false);
	if (target)
		deliver(r, c, m, target, "target", protocol_signal(m, text, len, c->peer));
}

static bool needs_registration(enum msg_type t)
{
	return t != MSG_UNKNOWN && t != MSG_REGISTER && t != MSG_PING && t != MSG_PONG;
}

void router_receive(struct router *r, struct client *c, const char *text, size_t len)
{
	struct msg m;
	struct msg_error err;
	int rc;

	if (c->closing)
		return;
	r->received_ns = metrics_now_ns();
	rc = protocol_decode(r->tok, text, len, &m, &err);
	metrics_inc(messages_received[m.type]);
	if (needs_registration(m.type) && !c->peer) {
		error_to(r, c, &m, ERR_NOT_IN_ROOM, NULL, NULL, "Not registered in a room: send register first");
		goto out;
	}
	if (rc < 0) {
		if (err.code == ERR_INVALID_JSON &&
		    json_tokener_get_error(r->tok) == json_tokener_error_depth)
			metrics_inc(limit_hits[LIMIT_JSON_DEPTH]);
		if (m.type == MSG_REGISTER)
			metrics_inc(registrations[err.code]);
		send_error(r, c, &m, &err);
		goto out;
	}

	switch (m.type) {
	case MSG_REGISTER:
		handle_register(r, c, &m);
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
	case MSG_PING:
		send_owned(r, c, protocol_simple("pong"));
		break;
	default: /* pong: the answer to our keepalive */
		break;
	}
out:
	msg_clear(&m);
}

void router_disconnect(struct router *r, struct client *c)
{
	if (c->peer)
		leave(r, c, "connection closed");
}
