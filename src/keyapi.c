#include "keyapi.h"

#include "addrlimit.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "pubkeys.h"
#include "rooms.h"

#include <errno.h>
#include <json-c/json.h>

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
static char *jwt_account(const struct router_env *env, const char *bearer, char **username,
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

struct keyapi_pending *keyapi_publish(const struct router_env *env, const struct config *cfg,
				      const char *bearer, const char *body, size_t len,
				      keyapi_done_fn done, void *data)
{
	g_autofree char *username = NULL, *key = NULL, *device = NULL;
	const char *why = "Authentication required";
	const struct store_pubkey *rec = NULL;

	/* Seam: an account API key (accounts branch) would name the account
	 * here as well; today only a JWT does. */
	g_autofree char *account = bearer ? jwt_account(env, bearer, &username, &why) : NULL;
	if (!account) {
		done(401, error_body(why), data);
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

unsigned keyapi_authorized(const struct router_env *env, const struct config *cfg,
			   const struct netaddr *from, const char *room_id, const char *bearer,
			   char **json)
{
	const struct store_key *key = NULL;
	const char *why = "Authentication required";
	g_autofree char *account = NULL;
	gint64 now = now_seconds();

	if (from && addrlimit_register(env->addrlimit, from, g_get_monotonic_time()) < 0) {
		metrics_inc(limit_hits[LIMIT_REGISTRATIONS_PER_ADDRESS]);
		*json = error_body("Too many attempts: try again later");
		return 429;
	}
	if (!bearer) {
		*json = error_body(why);
		return 401;
	}
	/* An API key, checked as registration checks it; else a JWT.  Seam:
	 * an account key (accounts branch) is valid where its account may
	 * go, as for a JWT below. */
	int kr = rooms_check_key(env->rooms, bearer, now, &key);
	if (kr == -EKEYREVOKED || kr == -EKEYEXPIRED) {
		*json = error_body(kr == -EKEYREVOKED ? "Token revoked" : "Token expired");
		return 401;
	}
	if (kr < 0 && !(account = jwt_account(env, bearer, NULL, &why))) {
		*json = error_body(why);
		return 401;
	}
	const struct store_room *room = rooms_find(env->rooms, room_id);
	if (!room || rooms_expired(room, now)) {
		*json = error_body(room ? "Room expired" : "Room not found");
		return 404;
	}
	/* Seam: with room members (accounts branch), M's is_member wraps
	 * rooms_is_member; an account key's account is checked as a JWT's. */
	const struct pubkeys_members *m = NULL;
	if (key ? g_strcmp0(key->room_id, room->id) != 0 : !pubkeys_account_may_use(room, account, m)) {
		*json = error_body(key ? "the API key is not valid for this room"
				       : "this account may not use this room");
		return 403;
	}
	bool truncated;
	*json = pubkeys_authorized_json(env->pubkeys, room, m, cfg->authorized_keys_max, &truncated);
	if (truncated)
		metrics_inc(limit_hits[LIMIT_AUTHORIZED_KEYS_LISTED]);
	return 200;
}
