#include "core/registration.h"

#include "auth/auth.h"
#include "util/metrics.h"
#include "core/events.h"
#include "core/protocol.h"
#include "auth/pubkeys.h"
#include "core/router-internal.h"
#include "util/secret.h"

#include <errno.h>
#include <string.h>

static gint64 mono_us(struct router *r)
{
	return (gint64)(r->svc->monotonic_ns(r->svc_ctx) / 1000);
}

/* What guessing produces: a wrong credential (room token, API key, JWT)
 * or a room id that does not exist.  These spend the address's failure
 * budget; other refusals (room full, id taken, bad message, expired room)
 * come to callers who had the right credentials. */
static void note_refusal(struct router *r, struct client *c, enum err_code code,
			 const char *room, const char *peer)
{
	bool failure = code == ERR_AUTH_FAILED || code == ERR_AUTH_REQUIRED || code == ERR_ROOM_NOT_FOUND;
	unsigned max = r->cfg->failed_registrations_per_connection;

	if (failure && c->addr_known)
		addrlimit_register_done(r->env.addrlimit, &c->addr, false, mono_us(r));
	/* One that keeps guessing is cut off.  A RATE_LIMITED answer is
	 * no guess (nothing was checked); flooding with them meets the
	 * message rate's abuse rule. */
	if (!failure || c->closing || !max || ++c->reg_failures < max)
		return;
	metrics_inc(limit_hits[LIMIT_FAILED_REGISTRATIONS_PER_CONNECTION]);
	router_log_peer(r, LOG_NOTICE, LOG_EVENT_REGISTRATION_REFUSED, c, room, peer, NULL,
			"failed_registrations_per_connection", "connection closed: too many failed registrations");
	c->closing = true;
	r->ops->close(r->ctx, c, 1008, "too many failed registrations");
}

static void refuse_register(struct router *r, struct client *c, const struct msg *m,
			    enum err_code code, const char *room, const char *peer,
			    const char *message)
{
	metrics_inc(registrations[code]);
	router_log_peer(r, LOG_NOTICE, LOG_EVENT_REGISTRATION_REFUSED, c, room, peer, NULL,
			protocol_code_name(code), message);
	router_error_to(r, c, m, code, NULL, NULL, "%s", message);
	note_refusal(r, c, code, room, peer);
}

/* Who a registration is and where it may go. */
struct admission {
	const char *room_id;
	char *principal;                 /* NULL: open mode, any caller */
	const struct store_room *proom;  /* the persistent room, if any */
};

enum admit_result { ADMITTED, REFUSED, PARKED };

void registration_unpark(struct client *c)
{
	struct router_parked *p = g_steal_pointer(&c->parked);
	if (!p)
		return;
	if (p->view_room) {
		GPtrArray *waits = g_hash_table_lookup(p->r->view_waits, p->view_room);
		if (waits && g_ptr_array_remove(waits, p) && !waits->len)
			g_hash_table_remove(p->r->view_waits, p->view_room);
		router_maybe_unwatch(p->r, p->view_room);
		g_free(p->view_room);
	} else {
		p->r->svc->cancel_wait(p->r->svc_ctx, p->wait);
	}
	g_free(p->text);
	g_free(p);
}

/* The issuer has its new key set, or failed to get one: the register
 * runs again, and this time an unknown kid is final. */
void router_keys_ready(struct router_parked *p)
{
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

	p->r = r;
	p->c = c;
	if (r->replaying || r->svc->await_keys(r->svc_ctx, issuer, p, &p->wait) < 0) {
		g_free(p);
		return false;
	}
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
	router_log(r, LOG_NOTICE, LOG_EVENT_NONE, &f,
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
	gint64 now = router_now_seconds(r);

	a->room_id = reg->room_id;
	/* Failed attempts have their budget, so room tokens and keys cannot
	 * be guessed at speed; successes a much higher ceiling (a replay was
	 * checked the first time).  A client without an address (a unix
	 * socket: local) is not counted, as it is not at connect time: all
	 * of them would share one zero address. */
	int limited = !r->replaying && c->addr_known
		? addrlimit_register_check(r->env.addrlimit, &c->addr, mono_us(r)) : 0;
	if (limited < 0) {
		metrics_inc(limit_hits[limited == -EAGAIN ? LIMIT_FAILED_REGISTRATIONS_PER_ADDRESS
							  : LIMIT_REGISTRATIONS_PER_ADDRESS]);
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
		if (r->svc->verify_jwt(r->svc_ctx, reg->jwt, now, &claims, &why, &issuer) < 0) {
			if (why == JWT_UNKNOWN_KID && park(r, c, issuer))
				return PARKED;
			struct log_fields f = { .remote = client_remote(c), .room = reg->room_id,
						.peer = reg->peer_id, .code = jwt_error_name(why) };
			router_log(r, LOG_NOTICE, LOG_EVENT_REGISTRATION_REFUSED, &f, "JWT refused");
			metrics_inc(registrations[ERR_AUTH_FAILED]);
			router_error_to(r, c, m, ERR_AUTH_FAILED, NULL, NULL, "%s", jwt_error_reason(why));
			note_refusal(r, c, ERR_AUTH_FAILED, reg->room_id, reg->peer_id);
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
	if (c->addr_known)
		addrlimit_register_done(r->env.addrlimit, &c->addr, true, mono_us(r));
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
		router_log_peer(r, LOG_INFO, LOG_EVENT_SESSION_CLOSED, older, existing->room->id, existing->id,
				existing->role, NULL, "superseded socket closed: its peer id registered a third time");
		r->ops->close(r->ctx, older, 1000, "superseded twice");
	}
	metrics_inc(sessions_superseded);
	router_log_peer(r, LOG_INFO, LOG_EVENT_SESSION_REPLACED, old, existing->room->id, existing->id,
			existing->role, NULL, "v2.0 session superseded by a new registration; its socket stays open");
	router_leave(r, old, "superseded", PROTOCOL_GONE_REPLACED);
}

/* The admin seat, as single instance decides it; HOLDER: another
 * instance's answer that someone else has it (CLAIMED: the cluster
 * answered, and its word is final). */
static void take_admin_seat(struct router *r, struct client *c, struct peer *peer, bool claimed,
			    const char *holder)
{
	struct room *room = peer->room;

	if (!holder && (claimed || !room->admin)) {
		room->admin = peer;
		return;
	}
	if (!holder) {
		router_send_owned(r, c, protocol_admin_conflict(room));
		return;
	}
	/* Another instance's peer holds it: shown here too while this view
	 * has that peer (the registry lets go of it with the peer). */
	struct peer *named = room_find_peer(room, holder);
	if (named && peer_is_remote(named)) {
		room->admin = named;
		router_send_owned(r, c, protocol_admin_conflict(room));
		return;
	}
	/* not in the view yet: named all the same */
	struct room shown = *room;
	struct peer stub = { .id = holder };
	shown.admin = &stub;
	router_send_owned(r, c, protocol_admin_conflict(&shown));
}

/* A registration is complete: counted, the seat taken, answered. */
static void registration_done(struct router *r, struct client *c, const struct msg *m, struct peer *peer,
			      bool claimed, const char *admin_holder)
{
	const struct msg_register *reg = &m->reg;
	char *ice;

	c->was_registered = true;
	metrics_inc(registrations[ERR__COUNT]);
	if (reg->is_admin)
		take_admin_seat(r, c, peer, claimed, admin_holder);
	ice = turn_ice_servers(r->turn, peer->id, router_now_seconds(r));
	router_answer_owned(r, c, protocol_registered(r->scratch, peer, reg->token, ice, c->proto));
	router_log_peer(r, LOG_INFO, LOG_EVENT_PEER_REGISTERED, c, peer->room->id, peer->id, peer->role, NULL,
			"peer registered");
	g_free(ice);
	if (reg->presence)
		events_subscribe(r, c, m);
	events_joined(r, peer);
}

/* [cluster] Redis answered C's claim (router_cluster_claimed): the
 * register that waited for it ends as one instance would end it. */
static void registration_claimed(struct router *r, struct client *c, const struct msg *m)
{
	struct peer *peer = c->peer;
	const struct router_claim *cl = r->claim;

	if (cl->res == ROUTER_CLAIMED) {
		registration_done(r, c, m, peer, true, cl->admin);
		return;
	}
	bool full = cl->res == ROUTER_CLAIM_FULL;
	g_autofree char *room_id = g_strdup(peer->room->id);
	g_autofree char *peer_id = g_strdup(peer->id);
	/* Redis holds no entry of it: nothing to withdraw */
	r->no_withdraw = true;
	router_leave(r, c, full ? "refused: room full on another instance"
				: "refused: id held by another principal on another instance",
		     PROTOCOL_GONE_LEFT);
	r->no_withdraw = false;
	if (full)
		metrics_inc(limit_hits[LIMIT_PEERS_PER_ROOM]);
	refuse_register(r, c, m, full ? ERR_ROOM_FULL : ERR_PEER_ID_TAKEN, room_id, peer_id,
			full ? "Room is full" : "Peer id is already registered in this room");
}

void registration_handle(struct router *r, struct client *c, struct msg *m)
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
	int rc;

	if (r->claim && c->peer && c->peer->claiming) {
		c->peer->claiming = false;
		registration_claimed(r, c, m);
		return;
	}
	/* Its last large answer still waits to be read: this one would be
	 * as large, and only one is held outside the queue bound. */
	if (router_answer_busy(r, c, m))
		goto out;
	c->proto = reg->version;
	/* A registered socket moves: its old registration ends first. */
	router_release(r, c, "moved to another registration", PROTOCOL_GONE_LEFT);
	registration_unpark(c); /* a newer register replaces one that waits */
	if (admit_registration(r, c, m, &adm) != ADMITTED)
		goto out;

	rc = meta_new(reg->metadata, r->cfg->max_metadata_bytes, &meta, &why);
	if (rc < 0) {
		if (rc == -EMSGSIZE)
			metrics_inc(limit_hits[LIMIT_METADATA_BYTES]);
		refuse_register(r, c, m, ERR_INVALID_MESSAGE, adm.room_id, peer_id, why);
		goto out;
	}

	/* [cluster]: the first register into a room waits for its view, so
	 * registered_auth, ids and max_peers_per_room see every instance's
	 * peers.  With Redis down it goes on with what is known. */
	if (router_clustered(r)) {
		r->holding_room = adm.room_id;
		if (!r->view_waited && router_watch(r, adm.room_id) == 0) {
			meta_free(meta);
			router_park_for_view(r, c, adm.room_id);
			goto out;
		}
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
	if (existing && peer_is_remote(existing)) {
		/* Held on another instance: only the same principal (anyone
		 * while auth is off) takes it over, as below; the claim checks
		 * again atomically.  That instance replaces its session. */
		g_autofree char *tag = registry_principal_tag(adm.principal);
		if (g_strcmp0(existing->principal_tag, tag) != 0) {
			meta_free(meta);
			refuse_register(r, c, m, ERR_PEER_ID_TAKEN, adm.room_id, peer_id,
					"Peer id is already registered in this room");
			goto out;
		}
		events_left(r, existing, PROTOCOL_GONE_REPLACED);
		registry_remove(r->reg, existing);
		existing = NULL;
		room = registry_find_room(r->reg, adm.room_id);
	}
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
			router_log_peer(r, LOG_INFO, LOG_EVENT_SESSION_REPLACED, old, room->id, existing->id,
					existing->role, NULL, "session replaced by a new registration");
			router_send_owned(r, old, protocol_error(ERR_SESSION_REPLACED,
							  "Session replaced by a new registration", NULL, NULL));
			metrics_inc(errors_sent[ERR_SESSION_REPLACED]);
			router_leave(r, old, "replaced", PROTOCOL_GONE_REPLACED);
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
			    r->svc->real_us(r->svc_ctx));
	c->peer = peer;
	if (kept) {
		kept->peer = peer;
		kept->superseded = true;
		peer->former = kept;
	}
	metrics_set(peers, registry_n_peers(r->reg));
	if (router_clustered(r)) {
		uint64_t epoch = 0;
		/* The id, the room's size and the admin seat cluster-wide, in
		 * one atomic claim: the answer waits for it (a message meanwhile
		 * is one from an unregistered socket). */
		rc = r->svc->cluster_announce(r->svc_ctx, peer, max_peers, reg->is_admin, &epoch);
		registry_set_epoch(r->reg, peer, epoch);
		if (rc > 0) {
			peer->claiming = true;
			g_free(c->claim_text);
			c->claim_text = g_memdup2(r->text, r->len);
			c->claim_len = r->len;
			goto out;
		}
	}
	registration_done(r, c, m, peer, false, NULL);
out:
	if (r->holding_room) {
		r->holding_room = NULL;
		if (adm.room_id)
			router_maybe_unwatch(r, adm.room_id);
	}
	g_free(adm.principal);
}
