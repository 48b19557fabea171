#include "daemon/keyapi.h"

#include "util/addrlimit.h"
#include "auth/auth.h"
#include "util/log.h"
#include "util/metrics.h"
#include "auth/pubkeys.h"
#include "store/rooms.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

static char *error_body(const char *why)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(why));
	char *text = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

static gint64 now_seconds(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

/* The account a JWT speaks for ("jwt:ISSUER:SUB"), and its display name;
 * NULL with *WHY when the token is not valid. */
static char *jwt_account(const struct keyapi_env *env, const char *bearer, char **username,
			 const char **why)
{
	struct jwt_claims claims = { 0 };
	enum jwt_error jwt_why;
	const char *issuer = NULL;

	if (auth_verify(env->auth, bearer, now_seconds(), &claims, &jwt_why, &issuer) < 0) {
		*why = jwt_error_reason(jwt_why);
		return NULL;
	}
	char *account = auth_principal(issuer, &claims);
	if (username)
		*username = g_strdup(claims.username ? claims.username : claims.sub);
	jwt_claims_clear(&claims);
	return account;
}

/* Who BEARER is, checked as registration checks api_key and jwt: one of
 * our API keys (*KEY; for an account key *ACCOUNT too), else a JWT
 * (*ACCOUNT, *USERNAME if asked).  0, or 401 with *WHY. */
static unsigned bearer_check(const struct keyapi_env *env, const struct config *cfg,
			     const char *bearer, gint64 now, const struct store_key **key,
			     char **account, char **username, const char **why)
{
	*key = NULL;
	*account = NULL;
	if (!bearer) {
		*why = "Authentication required";
		return 401;
	}
	int kr = rooms_check_key(env->rooms, bearer, now, key);
	if (kr == -EKEYREVOKED || kr == -EKEYEXPIRED) {
		*why = kr == -EKEYREVOKED ? "Token revoked" : "Token expired";
		return 401;
	}
	if (kr == 0) {
		if ((*key)->account && !auth_principal_issuer_configured(cfg, (*key)->account)) {
			*why = "API key's account belongs to an issuer no longer configured";
			return 401;
		}
		*account = g_strdup((*key)->account);
		return 0;
	}
	*key = NULL;
	*account = jwt_account(env, bearer, username, why);
	return *account ? 0 : 401;
}

static bool is_member(void *data, const char *room_id, const char *account)
{
	return rooms_is_member(data, room_id, account);
}

struct keyapi_pending {
	struct pubkeys *pk;
	char *account, *key;
	bool added; /* new: taken back if it cannot be stored */
	bool cancelled;
	keyapi_done_fn done;
	void *data;
};

static void pending_free(struct keyapi_pending *p)
{
	g_free(p->account);
	g_free(p->key);
	g_free(p);
}

static void stored(int status, const GError *err, void *data)
{
	struct keyapi_pending *p = data;

	if (status < 0) {
		log_warning("public key of %s not stored: %s", p->account,
			    err ? err->message : g_strerror(-status));
		if (p->added)
			pubkeys_remove(p->pk, p->account, p->key);
	}
	if (!p->cancelled)
		p->done(status < 0 ? 503 : p->added ? 201 : 200,
			g_strdup(status < 0 ? "{\"error\":\"the key store is unavailable\"}"
					    : "{\"status\":\"registered\"}"),
			p->data);
	pending_free(p);
}

void keyapi_cancel(struct keyapi_pending *p)
{
	if (p)
		p->cancelled = true;
}

struct keyapi_pending *keyapi_publish(const struct keyapi_env *env, const struct config *cfg,
				      const struct netaddr *from, const char *bearer, const char *body,
				      size_t len, keyapi_done_fn done, void *data)
{
	g_autofree char *username = NULL, *key = NULL, *device = NULL, *account = NULL;
	const char *why = NULL;
	const struct store_pubkey *rec = NULL;
	const struct store_key *api_key;

	/* An API key may be presented here too: as slow to guess as at
	 * register. */
	if (from && addrlimit_register(env->addrlimit, from, g_get_monotonic_time()) < 0) {
		metrics_inc(limit_hits[LIMIT_REGISTRATIONS_PER_ADDRESS]);
		done(429, error_body("Too many attempts: try again later"), data);
		return NULL;
	}
	unsigned st = bearer_check(env, cfg, bearer, now_seconds(), &api_key, &account, &username, &why);
	if (st) {
		done(st, error_body(why), data);
		return NULL;
	}
	if (!account) {
		/* A room's key is valid, but speaks for no account. */
		done(403, error_body("a room's API key cannot publish keys: use an account key or a JWT"), data);
		return NULL;
	}
	if (pubkeys_parse_request(body, len, &key, &device, &why) < 0) {
		done(400, error_body(why), data);
		return NULL;
	}
	int r = pubkeys_add(env->pubkeys, account, username, key, device, cfg->public_keys_per_account,
			    now_seconds(), &rec);
	if (r == -EDQUOT) {
		metrics_inc(limit_hits[LIMIT_PUBLIC_KEYS_PER_ACCOUNT]);
		done(429, error_body("too many public keys for this account ([rooms] max_public_keys_per_account)"),
		     data);
		return NULL;
	}
	if (r == PUBKEYS_UNCHANGED) {
		done(200, g_strdup("{\"status\":\"registered\"}"), data);
		return NULL;
	}
	log_info("public key %s by %s (device \"%s\")", r == PUBKEYS_ADDED ? "published" : "updated",
		 account, device);
	struct keyapi_pending *p = g_new0(struct keyapi_pending, 1);
	p->pk = env->pubkeys;
	p->account = g_steal_pointer(&account);
	p->key = g_steal_pointer(&key);
	p->added = r == PUBKEYS_ADDED;
	p->done = done;
	p->data = data;
	int rc = env->store ? store_put_pubkey(env->store, rec, stored, p) : 0;
	if (!env->store || rc < 0) {
		/* Answered now: memory only (tests), or the store refused it
		 * (-EAGAIN: its queue is full). */
		stored(rc, NULL, p);
		return NULL;
	}
	return p;
}

unsigned keyapi_authorized(const struct keyapi_env *env, const struct config *cfg,
			   const struct netaddr *from, const char *room_id, const char *bearer,
			   char **json)
{
	const struct store_key *key = NULL;
	const char *why = NULL;
	g_autofree char *account = NULL;
	gint64 now = now_seconds();

	if (from && addrlimit_register(env->addrlimit, from, g_get_monotonic_time()) < 0) {
		metrics_inc(limit_hits[LIMIT_REGISTRATIONS_PER_ADDRESS]);
		*json = error_body("Too many attempts: try again later");
		return 429;
	}
	unsigned st = bearer_check(env, cfg, bearer, now, &key, &account, NULL, &why);
	if (st) {
		*json = error_body(why);
		return st;
	}
	const struct store_room *room = rooms_find(env->rooms, room_id);
	if (!room || rooms_expired(room, now)) {
		*json = error_body(room ? "Room expired" : "Room not found");
		return 404;
	}
	/* The rule register applies: a room key in its room; an account
	 * (an account key's or a JWT's) where it created, is a member, or
	 * the room is open to its issuer. */
	const struct pubkeys_members m = { .is_member = is_member, .data = env->rooms };
	if (key ? !pubkeys_key_may_use(room, key, &m) : !pubkeys_account_may_use(room, account, &m)) {
		*json = error_body(!key		   ? "this account may not use this room"
				   : key->account ? "the API key's account may not use this room"
						  : "the API key is not valid for this room");
		return 403;
	}
	bool truncated;
	*json = pubkeys_authorized_json(env->pubkeys, room, &m, cfg->authorized_keys_max, &truncated);
	if (truncated)
		metrics_inc(limit_hits[LIMIT_AUTHORIZED_KEYS_LISTED]);
	return 200;
}
