#include "router.h"

#include "filter.h"
#include "log.h"
#include "metrics.h"
#include "protocol.h"
#include "pubkeys.h"
#include "secret.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct router {
	const struct config *cfg;
	struct registry *reg;
	struct router_env env;
	struct turn *turn;
	const struct router_ops *ops;
	void *ctx;
	json_tokener *tok;
	GString *scratch;
	uint64_t received_ns; /* when the message being handled arrived */
	const char *text;     /* and its text */
	size_t len;
	bool replaying;       /* a register whose issuer's keys were awaited */
	/* Logged once a second at most: room quota refusals, and errors
	 * v2.0 sessions were not told. */
	struct log_rate quota_log, untold_log;
	unsigned ignored_logged; /* bits of enum ignored: said once per process */
};

/* A register whose token names a key its issuer is being asked for. */
struct router_parked {
	struct router *r;
	struct client *c;
	struct auth_wait *wait;
	char *text;
	size_t len;
};

struct router *router_new(const struct config *cfg, struct registry *reg,
			  const struct router_env *env, const struct router_ops *ops, void *ctx)
{
	struct router *r = g_new0(struct router, 1);
	r->reg = reg;
	r->env = *env;
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

/* An answer to C's own request (router_ops.answer). */
static int answer_owned(struct router *r, struct client *c, struct msgbuf *m)
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
	if (!log_rate_due(&r->untold_log, (uint64_t)g_get_monotonic_time() / 1000, &skipped))
		return;
	struct log_fields f = { .remote = client_remote(c), .code = protocol_code_name(e->code),
				.peer = c->peer ? c->peer->id : NULL,
				.room = c->peer ? c->peer->room->id : NULL };
	log_event(LOG_INFO, LOG_EVENT_NONE, &f,
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
	send_owned(r, c, protocol_error_from(e));
}

/* An error the router found (the message itself was well formed). */
static void send_error(struct router *r, struct client *c, const struct msg *m,
		       const struct msg_error *e)
{
	send_error_as(r, c, m, e, false);
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
	struct log_fields f = { .room = room, .peer = peer, .role = role, .remote = client_remote(c),
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
	if (p->former) {
		/* The socket it superseded stays open, registered nowhere. */
		struct client *o = p->former;
		o->peer = NULL;
		o->superseded = false;
	}
	if (last)
		log_debug("room %s freed", room->id);
	registry_remove(r->reg, p);
	metrics_set(peers, registry_n_peers(r->reg));
	if (last)
		metrics_set(rooms, registry_n_rooms(r->reg));
}

/* C no longer speaks as its peer: it leaves the registration it owns, or
 * lets go of one a newer connection took over from it. */
static void release(struct router *r, struct client *c, const char *why)
{
	if (c->superseded) {
		c->peer->former = NULL;
		c->peer = NULL;
		c->superseded = false;
	} else if (c->peer) {
		leave(r, c, why);
	}
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

/* One answer over max_queued_bytes waits per session at most: a client
 * asking again before reading it is told to slow down, so answers cannot
 * pile up memory the queue bound does not count. */
static bool answer_busy(struct router *r, struct client *c, const struct msg *m)
{
	if (!c->answer_waiting)
		return false;
	metrics_inc(limit_hits[LIMIT_ANSWER_IN_FLIGHT]);
	if (m->type == MSG_REGISTER)
		metrics_inc(registrations[ERR_RATE_LIMITED]);
	error_to(r, c, m, ERR_RATE_LIMITED, NULL, NULL,
		 "A large answer to this session is still being sent: read it first");
	return true;
}

static gint64 now_seconds(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

void router_rate_limited(struct router *r, struct client *c)
{
	struct msg none = { .type = MSG_UNKNOWN };
	error_to(r, c, &none, ERR_RATE_LIMITED, NULL, NULL, "Too many messages: slow down");
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
	send_owned(r, c, protocol_error_from(&e));
}

bool router_open_mode(struct router *r)
{
	return !auth_required(r->env.auth);
}

/* Who a registration is and where it may go. */
struct admission {
	const char *room_id;
	char *principal;                 /* NULL: open mode, any caller */
	const struct store_room *proom;  /* the persistent room, if any */
};

enum admit_result { ADMITTED, REFUSED, PARKED };

static void unpark(struct client *c)
{
	struct router_parked *p = g_steal_pointer(&c->parked);
	if (!p)
		return;
	auth_wait_cancel(p->wait);
	g_free(p->text);
	g_free(p);
}

/* The issuer has its new key set, or failed to get one: the register
 * runs again, and this time an unknown kid is final. */
static void on_keys(void *data)
{
	struct router_parked *p = data;
	struct router *r = p->r;
	struct client *c = p->c;

	p->wait = NULL;
	c->parked = NULL;
	r->replaying = true;
	router_receive(r, c, p->text, p->len, false);
	r->replaying = false;
	g_free(p->text);
	g_free(p);
}

/* A token signed with a key its issuer is being asked for: the register
 * waits for that fetch (bounded by its timeout) instead of failing. */
static bool park(struct router *r, struct client *c, const char *issuer)
{
	struct router_parked *p = g_new0(struct router_parked, 1);

	if (r->replaying || auth_await_keys(r->env.auth, issuer, on_keys, p, &p->wait) < 0) {
		g_free(p);
		return false;
	}
	p->r = r;
	p->c = c;
	p->text = g_memdup2(r->text, r->len);
	p->len = r->len;
	c->parked = p;
	return true;
}

/* Open mode cannot check a JWT (no [issuer]) nor an API key it did not
 * issue; sleap-rtc sends them anyway.  Ignored, counted, said once. */
enum ignored { IGNORED_API_KEY, IGNORED_JWT, IGNORED_ID_TOKEN };

static void ignore_credential(struct router *r, struct client *c, enum ignored kind,
			      const struct msg_register *reg)
{
	static const char *const names[] = { "api_key", "jwt", "id_token" };

	metrics_inc(credentials_ignored[kind]);
	if (r->ignored_logged & (1u << kind))
		return;
	r->ignored_logged |= 1u << kind;
	struct log_fields f = { .remote = client_remote(c), .room = reg->room_id, .peer = reg->peer_id };
	log_event(LOG_NOTICE, LOG_EVENT_NONE, &f,
		  "authentication is off and this %s cannot be checked here: ignored, the register "
		  "goes on without it (said once; rtcsignald_credentials_ignored_total counts them)",
		  names[kind]);
}

static bool is_member(void *rooms, const char *room_id, const char *account)
{
	return rooms_is_member(rooms, room_id, account);
}

/* Whether ACCOUNT ("jwt:NAME:SUB") may use ROOM: the rule the public key
 * listing applies too. */
static bool account_may_use(struct router *r, const struct store_room *room, const char *account)
{
	const struct pubkeys_members m = { .is_member = is_member, .data = r->env.rooms };
	return pubkeys_account_may_use(room, account, &m);
}

/* docs/protocol.md, "register" and "Authentication and rooms": api_key,
 * else a JWT with the room's token, else (authentication off) just a room
 * id. */
static enum admit_result admit_registration(struct router *r, struct client *c,
					    struct msg *m, struct admission *a)
{
	const struct msg_register *reg = &m->reg;
	const char *token = reg->token ? json_object_get_string(reg->token) : NULL;
	const char *account = NULL; /* an account key's owner */
	bool open = router_open_mode(r), by_key = false;
	gint64 now = now_seconds();

	a->room_id = reg->room_id;
	/* Every attempt counts, so room tokens and keys cannot be guessed
	 * at speed (a replay was counted the first time).  A client without
	 * an address (a unix socket: local) is not counted, as it is not at
	 * connect time: all of them would share one zero address. */
	if (!r->replaying && c->addr_known &&
	    addrlimit_register(r->env.addrlimit, &c->addr, g_get_monotonic_time()) < 0) {
		metrics_inc(limit_hits[LIMIT_REGISTRATIONS_PER_ADDRESS]);
		refuse_register(r, c, m, ERR_RATE_LIMITED, reg->room_id, reg->peer_id,
				"Too many registration attempts: try again later");
		return REFUSED;
	}
	if (reg->api_key) {
		const struct store_key *key = NULL;
		switch (rooms_check_key(r->env.rooms, reg->api_key, now, &key)) {
		case 0:
			break;
		case -EKEYREVOKED:
			refuse_register(r, c, m, ERR_AUTH_FAILED, reg->room_id, reg->peer_id, "Token revoked");
			return REFUSED;
		case -EKEYEXPIRED:
			refuse_register(r, c, m, ERR_AUTH_FAILED, reg->room_id, reg->peer_id, "Token expired");
			return REFUSED;
		default:
			if (open)
				break; /* not one of ours: ignored below */
			refuse_register(r, c, m, ERR_AUTH_FAILED, reg->room_id, reg->peer_id, "Invalid API key");
			return REFUSED;
		}
		if (key && key->account && !auth_principal_issuer_configured(r->cfg, key->account)) {
			if (!open) {
				refuse_register(r, c, m, ERR_AUTH_FAILED, reg->room_id, reg->peer_id,
						"API key's account belongs to an issuer no longer configured");
				return REFUSED;
			}
			key = NULL;
		}
		if (!key) {
			ignore_credential(r, c, IGNORED_API_KEY, reg);
		} else if (key->room_id) {
			/* The key names the room; another one named is a mistake
			 * worth telling, not a room to silently ignore. */
			if (reg->room_id && strcmp(reg->room_id, key->room_id) != 0) {
				g_autofree char *why = g_strdup_printf(
					"API key is for room %s, not room %s", key->room_id, reg->room_id);
				refuse_register(r, c, m, ERR_AUTH_FAILED, reg->room_id, reg->peer_id, why);
				return REFUSED;
			}
			a->room_id = key->room_id;
		} else {
			account = key->account;
		}
		if (key) {
			by_key = true;
			a->principal = g_strconcat("key:", key->key_id, NULL);
		}
	} else if (reg->jwt && open) {
		/* below */
	} else if (reg->jwt) {
		struct jwt_claims claims = { 0 };
		enum jwt_error why;
		const char *issuer = NULL;
		if (auth_verify(r->env.auth, reg->jwt, now, &claims, &why, &issuer) < 0) {
			if (why == JWT_UNKNOWN_KID && park(r, c, issuer))
				return PARKED;
			struct log_fields f = { .remote = client_remote(c), .room = reg->room_id,
						.peer = reg->peer_id, .code = jwt_error_name(why) };
			log_event(LOG_NOTICE, LOG_EVENT_REGISTRATION_REFUSED, &f, "JWT refused");
			metrics_inc(registrations[ERR_AUTH_FAILED]);
			error_to(r, c, m, ERR_AUTH_FAILED, NULL, NULL, "%s", jwt_error_reason(why));
			return REFUSED;
		}
		a->principal = auth_principal(issuer, &claims);
		jwt_claims_clear(&claims);
	} else if (!open) {
		refuse_register(r, c, m, ERR_AUTH_REQUIRED, reg->room_id, reg->peer_id,
				"Authentication required");
		return REFUSED;
	}

	/* A JWT open mode cannot check, also next to an ignored api_key. */
	if (open && reg->jwt && !by_key) {
		json_object *v;
		bool jwt = json_object_object_get_ex(m->root, "jwt", &v) && json_object_is_type(v, json_type_string);
		ignore_credential(r, c, jwt ? IGNORED_JWT : IGNORED_ID_TOKEN, reg);
	}
	/* [rooms] default_room: for whoever open mode lets in, and for an
	 * account key (a key bound to a room has its room). */
	if (!a->room_id && r->cfg->rooms_default_room && (!a->principal || account)) {
		a->room_id = r->cfg->rooms_default_room;
		metrics_inc(default_room_registrations);
	}
	if (!a->room_id) {
		refuse_register(r, c, m, ERR_INVALID_MESSAGE, NULL, reg->peer_id, "Missing field: room_id");
		return REFUSED;
	}
	a->proom = rooms_find(r->env.rooms, a->room_id);
	/* With credentials, rooms are those created through an API. */
	if (!a->proom && a->principal) {
		refuse_register(r, c, m, ERR_ROOM_NOT_FOUND, a->room_id, reg->peer_id, "Room not found");
		return REFUSED;
	}
	if (a->proom && rooms_expired(a->proom, now)) {
		refuse_register(r, c, m, ERR_ROOM_EXPIRED, a->room_id, reg->peer_id, "Room expired");
		return REFUSED;
	}
	if (account && !account_may_use(r, a->proom, account)) {
		g_autofree char *why = g_strdup_printf("API key's account may not use room %s", a->room_id);
		refuse_register(r, c, m, ERR_AUTH_FAILED, a->room_id, reg->peer_id, why);
		return REFUSED;
	}
	/* A persistent room wants its token, unless an API key brought the
	 * caller, or a JWT's account may use the room as an account key's
	 * would: it created it, was added to it, or the room is open to its
	 * issuer (sleap-rtc's clients never send a room token). */
	if (a->proom && !by_key && !rooms_token_ok(a->proom, token) &&
	    !(a->principal && account_may_use(r, a->proom, a->principal))) {
		/* Say which: a missing token is not a wrong one. */
		refuse_register(r, c, m, ERR_AUTH_FAILED, a->room_id, reg->peer_id,
				token && *token ? "Invalid token" : "Room token required");
		return REFUSED;
	}
	return ADMITTED;
}

/* A v2.0 peer registers its id again on another socket (sleap-rtc's
 * admin failover opens a second one, docs/sleap-rtc.md 2.3): the
 * original server overwrote its routing entry and left the old socket
 * open, silent, still able to send as the peer.  A close, with or
 * without an error, makes that worker exit or start a reconnect fight
 * with itself; so the old socket is kept, as PEER's former, sent nothing
 * more.  One per peer: one superseded earlier is closed, 1000, no error. */
static void supersede(struct router *r, struct peer *existing)
{
	struct client *old = existing->owner, *older = existing->former;

	if (older) {
		existing->former = NULL;
		older->peer = NULL;
		older->superseded = false;
		older->closing = true;
		metrics_inc(superseded_closed);
		log_peer(LOG_INFO, LOG_EVENT_SESSION_CLOSED, older, existing->room->id, existing->id,
			 existing->role, NULL, "superseded socket closed: its peer id registered a third time");
		r->ops->close(r->ctx, older, 1000, "superseded twice");
	}
	metrics_inc(sessions_superseded);
	log_peer(LOG_INFO, LOG_EVENT_SESSION_REPLACED, old, existing->room->id, existing->id,
		 existing->role, NULL, "v2.0 session superseded by a new registration; its socket stays open");
	leave(r, old, "superseded");
}

static void handle_register(struct router *r, struct client *c, struct msg *m)
{
	const struct msg_register *reg = &m->reg;
	struct admission adm = { 0 };
	const char *why = NULL;
	struct meta *meta = NULL;
	char generated[5 + 12 + 1] = "peer-";
	const char *peer_id = reg->peer_id;
	struct room *room;
	struct peer *existing, *peer;
	struct client *kept = NULL; /* a v2.0 socket this one supersedes */
	unsigned max_peers;
	char *ice = NULL;
	int rc;

	/* Its last large answer still waits to be read: this one would be
	 * as large, and only one is held outside the queue bound. */
	if (answer_busy(r, c, m))
		goto out;
	c->proto = reg->version;
	/* A registered socket moves: its old registration ends first. */
	release(r, c, "moved to another registration");
	unpark(c); /* a newer register replaces one that waits */
	if (admit_registration(r, c, m, &adm) != ADMITTED)
		goto out;

	rc = meta_new(reg->metadata, r->cfg->max_metadata_bytes, &meta, &why);
	if (rc < 0) {
		if (rc == -EMSGSIZE)
			metrics_inc(limit_hits[LIMIT_METADATA_BYTES]);
		refuse_register(r, c, m, ERR_INVALID_MESSAGE, adm.room_id, peer_id, why);
		goto out;
	}

	room = registry_find_room(r->reg, adm.room_id);
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
		/* The same principal (any caller while auth is off) replaces. */
		if (g_strcmp0(existing->principal, adm.principal) != 0) {
			meta_free(meta);
			refuse_register(r, c, m, ERR_PEER_ID_TAKEN, adm.room_id, peer_id,
					"Peer id is already registered in this room");
			goto out;
		}
		struct client *old = existing->owner;
		if (old->proto == PROTOCOL_V20) {
			supersede(r, existing);
			kept = old;
		} else {
			log_peer(LOG_INFO, LOG_EVENT_SESSION_REPLACED, old, room->id, existing->id,
				 existing->role, NULL, "session replaced by a new registration");
			send_owned(r, old, protocol_error(ERR_SESSION_REPLACED,
							  "Session replaced by a new registration", NULL, NULL));
			metrics_inc(errors_sent[ERR_SESSION_REPLACED]);
			leave(r, old, "replaced");
			old->closing = true;
			r->ops->close(r->ctx, old, ROUTER_CLOSE_REPLACED, "session replaced");
		}
		room = registry_find_room(r->reg, adm.room_id);
	}

	max_peers = r->cfg->max_peers_per_room;
	if (adm.proom && adm.proom->max_peers)
		max_peers = MIN(max_peers, adm.proom->max_peers);
	if (room && room_size(room) >= max_peers) {
		meta_free(meta);
		metrics_inc(limit_hits[LIMIT_PEERS_PER_ROOM]);
		refuse_register(r, c, m, ERR_ROOM_FULL, adm.room_id, peer_id, "Room is full");
		goto out;
	}
	if (!room) {
		room = registry_ensure_room(r->reg, adm.room_id);
		metrics_inc(rooms_created_total);
		metrics_set(rooms, registry_n_rooms(r->reg));
	}

	peer = registry_add(r->reg, room, peer_id, reg->role, meta, g_steal_pointer(&adm.principal), c,
			    g_get_real_time());
	c->peer = peer;
	c->was_registered = true;
	if (kept) {
		kept->peer = peer;
		kept->superseded = true;
		peer->former = kept;
	}
	metrics_set(peers, registry_n_peers(r->reg));
	metrics_inc(registrations[ERR__COUNT]);

	if (reg->is_admin) {
		if (!room->admin)
			room->admin = peer;
		else
			send_owned(r, c, protocol_admin_conflict(room));
	}

	ice = turn_ice_servers(r->turn, peer->id, now_seconds());
	answer_owned(r, c, protocol_registered(r->scratch, peer, reg->token, ice, c->proto));
	log_peer(LOG_INFO, LOG_EVENT_PEER_REGISTERED, c, room->id, peer->id, peer->role, NULL,
		 "peer registered");
out:
	g_free(ice);
	g_free(adm.principal);
}

/* --- room creation (create_room and POST /create-room) --- */

struct router_pending {
	struct router *r;
	struct client *c;  /* create_room: the asker, NULL once gone */
	router_http_done_fn http_done;
	void *http_data;
	bool cancelled, finished, in_call;
};

static void room_created(int status, const struct store_room *room, const char *token,
			 const char *why, void *data)
{
	struct router_pending *p = data;
	struct router *r = p->r;

	if (p->c) {
		p->c->pending = NULL;
		if (status == 0) {
			g_autofree char *text = protocol_room_created("room_created", room->id, token,
								      room->expires_at);
			send_owned(r, p->c, msgbuf_new(text, strlen(text)));
		} else {
			struct msg none = { .type = MSG_CREATE_ROOM };
			error_to(r, p->c, &none, ERR_SERVICE_UNAVAILABLE, NULL, NULL, "%s", why);
		}
	} else if (p->http_done && !p->cancelled) {
		if (status == 0)
			p->http_done(201, protocol_room_created(NULL, room->id, token, room->expires_at),
				     p->http_data);
		else
			p->http_done(503, json_error_body(why), p->http_data);
	}
	if (status == 0) {
		struct log_fields f = { .room = room->id };
		log_event(LOG_INFO, LOG_EVENT_NONE, &f, "room created by %s", room->created_by);
	}
	p->finished = true;
	if (!p->in_call)
		g_free(p);
}

/* Whether PRINCIPAL may create one more room from FROM (may be NULL);
 * -EDQUOT with *WHY naming the quota.  Refusals are logged once a second
 * at most, with how many went unlogged. */
static int check_quota(struct router *r, const char *principal, const struct netaddr *from,
		       const char **why)
{
	static const struct {
		enum metrics_limit limit;
		const char *key, *why;
	} hits[] = {
		[ROOMS_QUOTA_TOTAL] = { LIMIT_ROOMS, "max_rooms",
					"Room quota reached: [rooms] max_rooms persistent rooms "
					"exist; try again once one expires" },
		[ROOMS_QUOTA_CREATOR] = { LIMIT_ROOMS_PER_CREATOR, "max_rooms_per_creator",
					  "Room quota reached: [rooms] max_rooms_per_creator rooms of "
					  "this creator exist; delete one or wait for one to expire" },
		[ROOMS_QUOTA_ADDRESS] = { LIMIT_ROOMS_PER_ADDRESS, "max_rooms_per_address",
					  "Room quota reached: [rooms] max_rooms_per_address rooms created "
					  "from this address exist; delete one or wait for one to expire" },
	};
	const struct rooms_quota q = { .total = r->cfg->rooms_max,
				       .per_creator = r->cfg->rooms_per_creator,
				       .per_address = r->cfg->rooms_per_address };
	enum rooms_quota_hit hit = rooms_quota_check(r->env.rooms, &q, principal, from);
	unsigned skipped;

	if (hit == ROOMS_QUOTA_OK)
		return 0;
	metrics_inc(limit_hits[hits[hit].limit]);
	*why = hits[hit].why;
	if (log_rate_due(&r->quota_log, (uint64_t)g_get_monotonic_time() / 1000, &skipped)) {
		struct log_fields f = { .remote = from, .code = hits[hit].key };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f, "create_room by %s refused: %s (%u more since)",
			  principal, hits[hit].why, skipped);
	}
	return -EDQUOT;
}

/* Starts the creation; -EINVAL (a bad request) or -EDQUOT (a quota is
 * full) with *WHY. */
static int create_room(struct router *r, struct router_pending *p, const char *principal,
		       const struct netaddr *from, const struct msg_create_room *req,
		       const char **why)
{
	struct rooms_spec spec = { .max_peers = req->max_peers, .name = req->name,
				   .open_to_issuer = req->open_to_issuer, .from = from };
	gint64 now = now_seconds();

	if (rooms_expiry(r->cfg->rooms_default_ttl, r->cfg->rooms_max_ttl, req->expires_in, now,
			 &spec.expires_at, why) < 0)
		return -EINVAL;
	if (check_quota(r, principal, from, why) < 0)
		return -EDQUOT;
	p->r = r;
	p->in_call = true;
	rooms_create(r->env.rooms, &spec, principal, now, room_created, p);
	p->in_call = false;
	return 0;
}

static void handle_create_room(struct router *r, struct client *c, struct msg *m)
{
	const char *principal = c->peer->principal;
	const char *why = NULL;
	int rc;

	/* Open mode lets any registered peer create; otherwise a JWT does. */
	if (principal ? !g_str_has_prefix(principal, "jwt:") : !router_open_mode(r)) {
		error_to(r, c, m, ERR_AUTH_REQUIRED, NULL, NULL,
			 "create_room needs a session registered with a JWT");
		return;
	}
	if (c->pending) {
		error_to(r, c, m, ERR_INVALID_MESSAGE, NULL, NULL, "a create_room is already in progress");
		return;
	}
	struct router_pending *p = g_new0(struct router_pending, 1);
	p->c = c;
	c->pending = p;
	rc = create_room(r, p, principal ? principal : "anonymous", client_remote(c), &m->create, &why);
	if (rc < 0) {
		c->pending = NULL;
		g_free(p);
		error_to(r, c, m, rc == -EDQUOT ? ERR_RATE_LIMITED : ERR_INVALID_MESSAGE, NULL, NULL, "%s",
			 why);
	} else if (p->finished) {
		g_free(p);
	}
}

struct router_pending *router_http_create_room(struct router *r, const struct netaddr *from,
					       const char *bearer, const char *body, size_t len,
					       router_http_done_fn done, void *data)
{
	struct jwt_claims claims = { 0 };
	struct msg_create_room req;
	struct msg_error err;
	enum jwt_error jwt_why;
	const char *issuer = NULL, *why = NULL;
	json_object *obj = NULL;

	if (!bearer || auth_verify(r->env.auth, bearer, now_seconds(), &claims, &jwt_why, &issuer) < 0) {
		done(401, json_error_body(bearer ? jwt_error_reason(jwt_why) : "Authentication required"),
		     data);
		return NULL;
	}
	g_autofree char *principal = auth_principal(issuer, &claims);
	jwt_claims_clear(&claims);
	const struct protocol_limits lim = { r->cfg->max_json_depth, r->cfg->max_json_values };
	if (len && !(obj = protocol_parse_object(r->tok, &lim, body, len))) {
		done(400, json_error_body("the body must be a JSON object"), data);
		return NULL;
	}
	if (protocol_decode_create_room(obj, &req, &err) < 0) {
		json_object_put(obj);
		done(400, json_error_body(err.message), data);
		return NULL;
	}
	struct router_pending *p = g_new0(struct router_pending, 1);
	p->http_done = done;
	p->http_data = data;
	int rc = create_room(r, p, principal, from, &req, &why);
	json_object_put(obj);
	if (rc < 0) {
		done(rc == -EDQUOT ? 429 : 400, json_error_body(why), data);
		g_free(p);
		return NULL;
	}
	if (p->finished) {
		g_free(p);
		return NULL;
	}
	return p;
}

void router_http_cancel(struct router_pending *p)
{
	if (p)
		p->cancelled = true;
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
		release(r, c, why);
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

	if (!sender_ok(r, c, m, "from_peer_id", m->discover.from) || answer_busy(r, c, m))
		return;
	if (filter_compile(m->discover.filters, r->cfg->max_filter_work, &f, &why) < 0) {
		error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL, "%s", why);
		return;
	}
	struct msgbuf *list = protocol_peer_list(r->scratch, c->peer, m->discover.limit, match_filter, f);
	if (filter_exhausted(f)) { /* a partial list would look complete */
		msgbuf_unref(list);
		metrics_inc(limit_hits[LIMIT_FILTER_WORK]);
		error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL,
			 "Filter needs more work than max_filter_work allows");
	} else {
		answer_owned(r, c, list);
	}
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
	int rc = send_owned(r, target->owner, out);
	if (rc < 0) {
		error_to(r, c, m, ERR_DELIVERY_FAILED, field, target->id, "Could not deliver to peer %s: %s",
			 target->id, rc == -ENOBUFS ? "its queue is full" : "its connection is closing");
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
		log_debug("%s from %s names no peer of its room", protocol_type_name(m->type), c->peer->id);
		return;
	}
	if (send_owned(r, target->owner, protocol_signal(r->scratch, m, NULL, 0, c->peer)) < 0) {
		metrics_inc(relayed[m->type][RELAY_FAILED]);
		return;
	}
	metrics_inc(relayed[m->type][RELAY_FORWARDED]);
	metrics_inc(messages_routed);
	metrics_observe(&metrics.route_latency, metrics_now_ns() - r->received_ns);
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
	r->received_ns = metrics_now_ns();
	r->text = text;
	r->len = len;
	const struct protocol_limits lim = { r->cfg->max_json_depth, r->cfg->max_json_values };
	rc = utf8 && protocol_decode_routed(text, len, &lim, &m) == 0
		     ? 0
		     : protocol_decode(r->tok, &lim, text, len, &m, &err);
	if (!r->replaying)
		metrics_inc(messages_received[m.type]);
	if (needs_registration(m.type) && !c->peer) {
		error_to(r, c, &m, ERR_NOT_IN_ROOM, NULL, NULL, "Not registered in a room: send register first");
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
	case MSG_CREATE_ROOM:
		handle_create_room(r, c, &m);
		break;
	case MSG_PING:
		send_owned(r, c, protocol_simple("pong"));
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
	unpark(c);
	if (c->pending) /* the store still completes it; nobody to tell */
		c->pending->c = NULL;
	c->pending = NULL;
	/* A superseded socket lets go: the registration it lost stays. */
	if (c->superseded)
		log_peer(LOG_INFO, LOG_EVENT_SESSION_CLOSED, c, c->peer->room->id, c->peer->id,
			 c->peer->role, NULL, "superseded socket gone; its peer id stays registered");
	release(r, c, "connection closed");
}
