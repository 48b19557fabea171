#include "daemon/adminapi.h"

#include "auth/auth.h"
#include "util/json.h"
#include "util/log.h"
#include "util/msgbuf.h"
#include "core/protocol.h"
#include "util/metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <string.h>

/* Who acts through the admin API: the one admin token. */
#define ACTOR_ADMIN_TOKEN "admin-token"

static gint64 now_seconds(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

static void answer(struct admin_request *req, unsigned status, json_object *o)
{
	admin_request_answer(req, status, g_strdup(json_object_to_json_string_ext(o, JSON_FLAGS)));
	json_object_put(o);
}

static void answer_error(struct admin_request *req, unsigned status, const char *message)
{
	admin_request_answer(req, status, json_error_body(message));
}

static json_object *time_or_null(gint64 t)
{
	return t ? json_object_new_int64(t) : NULL;
}

/* Peers by role of a live room (counts only: no ids, no metadata). */
static json_object *room_peers(struct registry *reg, const char *room_id, unsigned *total)
{
	json_object *by_role = json_object_new_object();
	struct room *room = registry_find_room(reg, room_id);
	struct peer *p;

	*total = 0;
	if (!room)
		return by_role;
	ROOM_FOREACH_PEER(room, p) {
		json_object *n;
		if (json_object_object_get_ex(by_role, p->role, &n))
			json_object_int_inc(n, 1);
		else
			json_object_object_add(by_role, p->role, json_object_new_int(1));
		(*total)++;
	}
	return by_role;
}

static void list_rooms(struct adminapi *api, struct admin_request *req)
{
	g_autoptr(GPtrArray) rooms = rooms_list(api->rooms);
	json_object *list = json_object_new_array();

	for (guint i = 0; i < rooms->len; i++) {
		const struct store_room *r = g_ptr_array_index(rooms, i);
		json_object *o = json_object_new_object();
		unsigned peers;
		json_object *by_role = room_peers(api->reg, r->id, &peers);
		json_object_object_add(o, "room_id", json_object_new_string(r->id));
		json_object_object_add(o, "name", r->name ? json_object_new_string(r->name) : NULL);
		json_object_object_add(o, "created_by", json_object_new_string(r->created_by));
		json_object_object_add(o, "created_at", json_object_new_int64(r->created_at));
		json_object_object_add(o, "expires_at", time_or_null(r->expires_at));
		json_object_object_add(o, "max_peers", r->max_peers ? json_object_new_int64(r->max_peers) : NULL);
		json_object_object_add(o, "open_to_issuer", json_object_new_boolean(r->open_to_issuer));
		json_object_object_add(o, "peers", json_object_new_int64(peers));
		json_object_object_add(o, "peers_by_role", by_role);
		json_object_array_add(list, o);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "rooms", list);
	answer(req, MHD_HTTP_OK, o);
}

/* A deletion or revocation waiting for the store: the request is
 * answered from its completion, so the answer says what a restart keeps. */
struct api_change {
	struct adminapi *api;
	struct admin_request *req;
	char *id;
	char *actor; /* who asked, for the audit */
};

static struct api_change *api_change_new(struct adminapi *api, struct admin_request *req,
					 const char *id)
{
	struct api_change *c = g_new0(struct api_change, 1);
	c->api = api;
	c->req = req;
	c->id = g_strdup(id);
	c->actor = g_strdup(api->actor ? api->actor : ACTOR_ADMIN_TOKEN);
	return c;
}

static void api_change_free(struct api_change *c)
{
	g_free(c->id);
	g_free(c->actor);
	g_free(c);
}

static void room_created(int status, const struct store_room *room, const char *token,
			 const char *why, void *data)
{
	struct api_change *c = data;
	struct admin_request *req = c->req;
	if (status < 0) {
		answer_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, why);
		api_change_free(c);
		return;
	}
	audit_record(c->api->audit, "room_create", c->actor, room->id, room->id, now_seconds());
	api_change_free(c);
	admin_request_answer(req, MHD_HTTP_CREATED,
			     protocol_room_created(NULL, room->id, token, room->expires_at));
}

/* The request body as a JSON object; an empty body is {}. */
static json_object *body_object(struct admin_request *req)
{
	size_t len;
	const char *body = admin_request_body(req, &len);
	json_tokener *tok;
	json_object *o;

	if (!len)
		return json_object_new_object();
	/* The operator's bodies are small objects: RFC 8259 only, as for
	 * clients' messages, and little of it. */
	static const struct protocol_limits lim = { .max_depth = 16, .max_values = 1000 };
	tok = json_tokener_new_ex(16);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = protocol_parse_object(tok, &lim, body, len);
	json_tokener_free(tok);
	return o;
}

/* An account is a JWT subject of a configured issuer: "account" (the
 * sub) and "issuer" (the [issuer NAME], or its iss; optional when one
 * is configured) as the principal "jwt:NAME:SUB".  NULL with *WHY. */
#define ACCOUNT_MAX 255
static char *account_of(const struct config *cfg, json_object *body, const char **why)
{
	json_object *v;
	const char *sub = NULL, *issuer = NULL;
	const struct config_issuer *found = NULL;

	if (json_object_object_get_ex(body, "account", &v) && json_object_is_type(v, json_type_string))
		sub = json_object_get_string(v);
	if (!sub || !*sub || strlen(sub) != (size_t)json_object_get_string_len(v) ||
	    strlen(sub) > ACCOUNT_MAX) {
		*why = "account must be a JWT subject: a string of 1 to 255 bytes";
		return NULL;
	}
	if (json_object_object_get_ex(body, "issuer", &v) && v) {
		if (!json_object_is_type(v, json_type_string)) {
			*why = "issuer must be a string: an [issuer NAME] of the configuration, or its issuer";
			return NULL;
		}
		issuer = json_object_get_string(v);
	}
	for (guint i = 0; i < cfg->issuers->len; i++) {
		const struct config_issuer *ci = g_ptr_array_index(cfg->issuers, i);
		if (issuer ? strcmp(ci->name, issuer) == 0 || g_strcmp0(ci->issuer, issuer) == 0
			   : cfg->issuers->len == 1)
			found = ci;
	}
	if (!found) {
		*why = !cfg->issuers->len ? "accounts need a configured [issuer]: none is"
		       : issuer	   ? "issuer is not a configured [issuer NAME] or issuer"
				   : "issuer is required: several [issuer] groups are configured";
		return NULL;
	}
	return g_strdup_printf("jwt:%s:%s", found->name, sub);
}

/* Adds "account" and "issuer" of the principal ACCOUNT to O. */
static void add_account(json_object *o, const char *account)
{
	g_autofree char *issuer = auth_principal_issuer(account);
	const char *sub = issuer ? account + 4 + strlen(issuer) + 1 : account;

	json_object_object_add(o, "account", json_object_new_string(sub));
	json_object_object_add(o, "issuer", issuer ? json_object_new_string(issuer) : NULL);
}

static void create_room(struct adminapi *api, struct admin_request *req)
{
	json_object *body = body_object(req);
	struct msg_create_room spec;
	struct msg_error err;
	const char *why = NULL;

	if (!body) {
		answer_error(req, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object");
		return;
	}
	if (protocol_decode_create_room(body, &spec, &err) < 0) {
		answer_error(req, MHD_HTTP_BAD_REQUEST, err.message);
	} else {
		const struct roomsvc_request rq = { .spec = &spec, .created_by = "admin",
						    .by_operator = true };
		struct api_change *c = api_change_new(api, req, "");
		if (roomsvc_create(api->roomsvc, &rq, now_seconds(), room_created, c, &why) < 0) {
			answer_error(req, MHD_HTTP_BAD_REQUEST, why);
			api_change_free(c);
		}
	}
	json_object_put(body);
}

/* 503 with the store's reason, or 409 / 404 for what never reached it. */
static void change_refused(struct admin_request *req, int r, const char *in_progress,
			   const char *not_found)
{
	if (r == -EINPROGRESS)
		answer_error(req, MHD_HTTP_CONFLICT, in_progress);
	else
		answer_error(req, MHD_HTTP_NOT_FOUND, not_found);
}

static void room_deleted(int status, unsigned closed, const char *why, void *data)
{
	struct api_change *c = data;
	struct log_fields f = { .room = c->id };

	if (status < 0) {
		log_event(LOG_WARNING, LOG_EVENT_NONE, &f, "room not deleted through the admin API: %s", why);
		answer_error(c->req, MHD_HTTP_SERVICE_UNAVAILABLE, why);
		api_change_free(c);
		return;
	}
	log_event(LOG_NOTICE, LOG_EVENT_NONE, &f, "room deleted through the admin API, %u peers closed",
		  closed);
	audit_record(c->api->audit, "room_delete", c->actor, c->id, c->id, now_seconds());
	json_object *o = json_object_new_object();
	json_object_object_add(o, "room_id", json_object_new_string(c->id));
	json_object_object_add(o, "deleted", json_object_new_boolean(true));
	json_object_object_add(o, "peers_closed", json_object_new_int64(closed));
	answer(c->req, MHD_HTTP_OK, o);
	api_change_free(c);
}

static void delete_room(struct adminapi *api, struct admin_request *req, const char *id)
{
	struct api_change *c = api_change_new(api, req, id);
	int r = roomsvc_delete(api->roomsvc, id, room_deleted, c);

	if (r < 0) {
		change_refused(req, r, "the deletion of this room is already in progress", "room not found");
		api_change_free(c);
	}
}

static void list_keys(struct adminapi *api, struct admin_request *req)
{
	g_autoptr(GPtrArray) keys = rooms_list_keys(api->rooms);
	json_object *list = json_object_new_array();

	for (guint i = 0; i < keys->len; i++) {
		const struct store_key *k = g_ptr_array_index(keys, i);
		json_object *o = json_object_new_object();
		json_object_object_add(o, "key_id", json_object_new_string(k->key_id));
		json_object_object_add(o, "room_id", k->room_id ? json_object_new_string(k->room_id) : NULL);
		if (k->account)
			add_account(o, k->account);
		json_object_object_add(o, "name", k->name ? json_object_new_string(k->name) : NULL);
		json_object_object_add(o, "created_at", json_object_new_int64(k->created_at));
		json_object_object_add(o, "expires_at", time_or_null(k->expires_at));
		json_object_object_add(o, "revoked_at", time_or_null(k->revoked_at));
		json_object_array_add(list, o);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "keys", list);
	answer(req, MHD_HTTP_OK, o);
}

static void key_created(int status, const struct store_key *key, const char *api_key,
			const char *why, void *data)
{
	struct api_change *c = data;
	struct adminapi *api = c->api;
	struct admin_request *req = c->req;
	g_autofree char *actor = g_steal_pointer(&c->actor);

	api_change_free(c);
	if (status < 0) {
		answer_error(req, status == -ENOENT ? MHD_HTTP_NOT_FOUND : MHD_HTTP_SERVICE_UNAVAILABLE, why);
		return;
	}
	struct log_fields f = { .room = key->room_id };
	log_event(LOG_NOTICE, LOG_EVENT_NONE, &f, "API key %s created through the admin API%s%s",
		  key->key_id, key->account ? " for account " : "", key->account ? key->account : "");
	audit_record(api->audit, "key_create", actor, key->key_id, key->room_id, now_seconds());
	if (router_open_mode(api->router)) /* a key does not switch authentication on */
		log_event(LOG_WARNING, LOG_EVENT_NONE, &f,
			  "API key %s created while authentication is off: it admits to its room but "
			  "is not required; set [server] require_auth = true to require credentials",
			  key->key_id);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "key_id", json_object_new_string(key->key_id));
	json_object_object_add(o, "api_key", json_object_new_string(api_key));
	json_object_object_add(o, "room_id", key->room_id ? json_object_new_string(key->room_id) : NULL);
	if (key->account)
		add_account(o, key->account);
	json_object_object_add(o, "expires_at", time_or_null(key->expires_at));
	answer(req, MHD_HTTP_CREATED, o);
}

static void create_key(struct adminapi *api, struct admin_request *req)
{
	json_object *body = body_object(req), *v;
	const char *room_id = NULL, *name = NULL, *refused = NULL;
	g_autofree char *account = NULL;
	gint64 expires_in = 0, now = now_seconds();

	if (!body) {
		answer_error(req, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object");
		return;
	}
	if (json_object_object_get_ex(body, "room_id", &v) && json_object_is_type(v, json_type_string))
		room_id = json_object_get_string(v);
	if (json_object_object_get_ex(body, "name", &v) && v) {
		if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) > REGISTRY_ID_MAX)
			goto bad;
		name = json_object_get_string(v);
	}
	if (json_object_object_get_ex(body, "expires_in", &v) && v) {
		if (!json_object_is_type(v, json_type_int) || (expires_in = json_object_get_int64(v)) < 0 ||
		    expires_in > PROTOCOL_EXPIRES_IN_MAX)
			goto bad;
	}
	/* A key for one room, or for an account (valid in its rooms). */
	if (json_object_object_get_ex(body, "account", NULL)) {
		if (room_id)
			answer_error(req, MHD_HTTP_BAD_REQUEST, "room_id and account: give one of them");
		else if (!(account = account_of(*api->cfg, body, &refused)))
			answer_error(req, MHD_HTTP_BAD_REQUEST, refused);
		else
			rooms_create_account_key(api->rooms, account, name, expires_in ? now + expires_in : 0,
						 now, key_created, api_change_new(api, req, account));
	} else if (!room_id) {
		answer_error(req, MHD_HTTP_BAD_REQUEST, "room_id (or account) is required");
	} else {
		rooms_create_key(api->rooms, room_id, name, expires_in ? now + expires_in : 0, now,
				 key_created, api_change_new(api, req, room_id));
	}
	json_object_put(body);
	return;
bad:;
	g_autofree char *why = g_strdup_printf("name must be a string of up to 128 bytes and expires_in "
					       "an integer from 0 to %d", PROTOCOL_EXPIRES_IN_MAX);
	answer_error(req, MHD_HTTP_BAD_REQUEST, why);
	json_object_put(body);
}

static void key_revoked(int status, const char *why, void *data)
{
	struct api_change *c = data;

	if (status < 0) {
		log_warning("API key %s not revoked through the admin API: %s", c->id, why);
		answer_error(c->req, MHD_HTTP_SERVICE_UNAVAILABLE, why);
		api_change_free(c);
		return;
	}
	/* Sessions that came in with the key end with it. */
	g_autofree char *principal = g_strconcat("key:", c->id, NULL);
	unsigned closed = router_close_principal(c->api->router, principal, "Token revoked");
	log_notice("API key %s revoked through the admin API, %u sessions closed", c->id, closed);
	audit_record(c->api->audit, "key_revoke", c->actor, c->id, NULL, now_seconds());
	json_object *o = json_object_new_object();
	json_object_object_add(o, "key_id", json_object_new_string(c->id));
	json_object_object_add(o, "revoked", json_object_new_boolean(true));
	answer(c->req, MHD_HTTP_OK, o);
	api_change_free(c);
}

static void revoke_key(struct adminapi *api, struct admin_request *req, const char *key_id)
{
	struct api_change *c = api_change_new(api, req, key_id);
	int r = rooms_revoke_key(api->rooms, key_id, now_seconds(), key_revoked, c);

	if (r < 0) {
		change_refused(req, r, "the revocation of this key is already in progress", "key not found");
		api_change_free(c);
	}
}

static void list_members(struct adminapi *api, struct admin_request *req, const char *room_id)
{
	if (!roomsvc_find(api->roomsvc, room_id)) {
		answer_error(req, MHD_HTTP_NOT_FOUND, "room not found");
		return;
	}
	g_autoptr(GPtrArray) members = rooms_list_members(api->rooms, room_id);
	json_object *list = json_object_new_array();
	for (guint i = 0; i < members->len; i++) {
		const struct store_member *m = g_ptr_array_index(members, i);
		json_object *o = json_object_new_object();
		add_account(o, m->account);
		json_object_object_add(o, "added_at", json_object_new_int64(m->added_at));
		json_object_array_add(list, o);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "room_id", json_object_new_string(room_id));
	json_object_object_add(o, "members", list);
	answer(req, MHD_HTTP_OK, o);
}

/* api_change's id is "ROOM\nACCOUNT" here. */
static void member_changed(int status, const char *why, void *data)
{
	struct api_change *c = data;
	char *nl = strchr(c->id, '\n');
	bool add = strcmp(admin_request_method(c->req), "POST") == 0;

	*nl = '\0';
	if (status < 0) {
		answer_error(c->req, status == -ENOENT ? MHD_HTTP_NOT_FOUND : MHD_HTTP_SERVICE_UNAVAILABLE,
			     why);
		api_change_free(c);
		return;
	}
	struct log_fields f = { .room = c->id };
	log_event(LOG_NOTICE, LOG_EVENT_NONE, &f, "account %s %s the room through the admin API", nl + 1,
		  add ? "added to" : "removed from");
	audit_record(c->api->audit, add ? "member_add" : "member_remove", c->actor, c->id, c->id,
		     now_seconds());
	json_object *o = json_object_new_object();
	json_object_object_add(o, "room_id", json_object_new_string(c->id));
	add_account(o, nl + 1);
	json_object_object_add(o, add ? "added" : "removed", json_object_new_boolean(true));
	answer(c->req, add ? MHD_HTTP_CREATED : MHD_HTTP_OK, o);
	api_change_free(c);
}

/* POST adds, DELETE removes the account the body names.  Sessions the
 * account's keys opened stay (as a revoked key's would not): removal
 * stops new registrations. */
static void change_member(struct adminapi *api, struct admin_request *req, const char *room_id,
			  bool add)
{
	json_object *body = body_object(req);
	const char *why = NULL;
	g_autofree char *account = body ? account_of(*api->cfg, body, &why) : NULL;
	int r;

	json_object_put(body);
	if (!body || !account) {
		answer_error(req, MHD_HTTP_BAD_REQUEST, body ? why : "the body must be a JSON object");
		return;
	}
	g_autofree char *id = g_strconcat(room_id, "\n", account, NULL);
	struct api_change *c = api_change_new(api, req, id);
	r = add ? rooms_add_member(api->rooms, room_id, account, now_seconds(), member_changed, c)
		: rooms_remove_member(api->rooms, room_id, account, member_changed, c);
	if (r < 0) {
		change_refused(req, r, "the removal of this member is already in progress",
			       add ? "room not found" : "no such member of this room");
		api_change_free(c);
	}
}

/* "rooms/ID/members": ID into *ROOM_ID. */
static bool members_path(const char *path, char **room_id)
{
	const char *id = path + strlen("rooms/"), *slash;

	if (!g_str_has_prefix(path, "rooms/") || !(slash = strchr(id, '/')) || slash == id ||
	    strcmp(slash, "/members") != 0)
		return false;
	*room_id = g_strndup(id, (gsize)(slash - id));
	return true;
}

/* --- the dashboard's reads: aggregates and ids, nothing a client sent
 * but its room and peer ids and roles --- */

/* The rooms shown at most: the page is a glance, not an inventory. */
#define DASHBOARD_ROOMS_MAX 200

/* The metric families the page shows, as the Prometheus text names them
 * (so the labels are metrics.c's, in one place). */
static const char *const dashboard_families[] = {
	"rtcsignald_connections", "rtcsignald_connections_total", "rtcsignald_peers", "rtcsignald_rooms",
	"rtcsignald_messages_received_total", "rtcsignald_messages_routed_total",
	"rtcsignald_errors_sent_total", "rtcsignald_limit_hits_total",
	"rtcsignald_sessions_refused_total", "rtcsignald_admin_refused_total",
	"rtcsignald_jwks_fetches_total", "rtcsignald_store_pending_writes",
	"rtcsignald_store_queue_full_total", "rtcsignald_store_retries_total",
	"rtcsignald_registrations_total",
};

/* One sample line "NAME{L="V"} X" or "NAME X" into O[NAME][V or ""]. */
static void add_sample(json_object *o, const char *line)
{
	const char *sp = strrchr(line, ' '), *brace = strchr(line, '{');
	g_autofree char *name = NULL, *label = NULL;
	json_object *family;

	if (!sp)
		return;
	name = g_strndup(line, (gsize)((brace && brace < sp ? brace : sp) - line));
	for (size_t i = 0; i < G_N_ELEMENTS(dashboard_families); i++) {
		if (strcmp(name, dashboard_families[i]) != 0)
			continue;
		if (brace && brace < sp) {
			const char *q = strchr(brace, '"'), *e = q ? strchr(q + 1, '"') : NULL;
			label = e ? g_strndup(q + 1, (gsize)(e - q - 1)) : g_strdup("");
		}
		if (!json_object_object_get_ex(o, name, &family)) {
			family = json_object_new_object();
			json_object_object_add(o, name, family);
		}
		json_object_object_add(family, label ? label : "",
				       json_object_new_double(g_ascii_strtod(sp + 1, NULL)));
		return;
	}
}

struct live_rooms {
	struct adminapi *api;
	json_object *list;
	unsigned n, shown;
	GHashTable *seen;
};

static json_object *room_summary(struct adminapi *api, const char *room_id)
{
	const struct store_room *r = roomsvc_find(api->roomsvc, room_id);
	json_object *o = json_object_new_object();
	unsigned peers;
	json_object *by_role = room_peers(api->reg, room_id, &peers);

	json_object_object_add(o, "room_id", json_object_new_string(room_id));
	json_object_object_add(o, "created_at", r ? json_object_new_int64(r->created_at) : NULL);
	json_object_object_add(o, "expires_at", r ? time_or_null(r->expires_at) : NULL);
	json_object_object_add(o, "peers", json_object_new_int64(peers));
	json_object_object_add(o, "peers_by_role", by_role);
	return o;
}

static void add_live_room(struct room *room, void *data)
{
	struct live_rooms *lr = data;

	lr->n++;
	if (lr->shown >= DASHBOARD_ROOMS_MAX)
		return;
	g_hash_table_add(lr->seen, room->id);
	json_object_array_add(lr->list, room_summary(lr->api, room->id));
	lr->shown++;
}

static void dashboard(struct adminapi *api, struct admin_request *req)
{
	struct metrics_roles roles = { 0 };
	g_autoptr(GString) text = g_string_sized_new(16384);
	g_autoptr(GPtrArray) stored = rooms_list(api->rooms);
	json_object *o = json_object_new_object(), *counters = json_object_new_object();
	struct live_rooms lr = { .api = api, .list = json_object_new_array(),
				 .seen = g_hash_table_new(g_str_hash, g_str_equal) };

	registry_role_counts(api->reg, (*api->cfg)->metrics_top_roles, metrics_roles_add, &roles);
	metrics_render_prometheus(text, &roles);
	metrics_roles_clear(&roles);
	g_auto(GStrv) lines = g_strsplit(text->str, "\n", -1);
	for (char **l = lines; *l; l++)
		if (**l && **l != '#')
			add_sample(counters, *l);
	/* Live rooms first, then stored rooms nobody is in. */
	registry_foreach_room(api->reg, add_live_room, &lr);
	for (guint i = 0; i < stored->len; i++) {
		const struct store_room *r = g_ptr_array_index(stored, i);
		if (g_hash_table_contains(lr.seen, r->id))
			continue;
		lr.n++;
		if (lr.shown < DASHBOARD_ROOMS_MAX) {
			json_object_array_add(lr.list, room_summary(api, r->id));
			lr.shown++;
		}
	}
	g_hash_table_unref(lr.seen);
	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(o, "now", json_object_new_int64(now_seconds()));
	json_object_object_add(o, "start_time", json_object_new_int64(metrics.start_time));
	json_object_object_add(o, "ready", json_object_new_boolean(metrics_get(ready)));
	json_object_object_add(o, "draining", json_object_new_boolean(metrics_get(draining)));
	json_object_object_add(o, "metrics", counters);
	json_object_object_add(o, "rooms_total", json_object_new_int64(lr.n));
	json_object_object_add(o, "rooms", lr.list);
	answer(req, MHD_HTTP_OK, o);
}

/* A room's workers: peer ids, roles, when they came and the names (not
 * the values) of their metadata.  The admin token only. */
static void room_peer_list(struct adminapi *api, struct admin_request *req, const char *room_id)
{
	struct room *room = registry_find_room(api->reg, room_id);
	json_object *list = json_object_new_array(), *o;
	struct peer *p;

	if (!room && !roomsvc_find(api->roomsvc, room_id)) {
		json_object_put(list);
		answer_error(req, MHD_HTTP_NOT_FOUND, "room not found");
		return;
	}
	if (room) {
		ROOM_FOREACH_PEER(room, p) {
			json_object *e = json_object_new_object();
			json_object_object_add(e, "peer_id", json_object_new_string(p->id));
			json_object_object_add(e, "role", json_object_new_string(p->role));
			json_object_object_add(e, "connected_at",
					       json_object_new_int64(p->connected_at / G_USEC_PER_SEC));
			json_object_array_add(list, e);
		}
	}
	o = json_object_new_object();
	json_object_object_add(o, "room_id", json_object_new_string(room_id));
	json_object_object_add(o, "peers", list);
	answer(req, MHD_HTTP_OK, o);
}

/* "rooms/ID/peers": ID into *ROOM_ID. */
static bool peers_path(const char *path, char **room_id)
{
	const char *id = path + strlen("rooms/"), *slash;

	if (!g_str_has_prefix(path, "rooms/") || !(slash = strchr(id, '/')) || slash == id ||
	    strcmp(slash, "/peers") != 0)
		return false;
	*room_id = g_strndup(id, (gsize)(slash - id));
	return true;
}

/* Whether the verified token's payload has CLAIM naming GROUP: a string
 * or an array of strings (Cognito's cognito:groups). */
static bool in_group(const char *jwt, const char *claim, const char *group)
{
	const char *p = strchr(jwt, '.') + 1, *end = strchr(p, '.');
	g_autoptr(GString) b64 = g_string_new_len(p, end - p);
	json_object *payload, *v;
	gsize len;
	bool found = false;

	g_strdelimit(b64->str, "-", '+');
	g_strdelimit(b64->str, "_", '/');
	while (b64->len % 4)
		g_string_append_c(b64, '=');
	g_autofree guchar *json = g_base64_decode(b64->str, &len);
	g_autofree char *text = g_strndup((const char *)json, len);
	if (!(payload = json_tokener_parse(text)))
		return false;
	if (json_object_object_get_ex(payload, claim, &v)) {
		if (json_object_is_type(v, json_type_string))
			found = strcmp(json_object_get_string(v), group) == 0;
		for (size_t i = 0; json_object_is_type(v, json_type_array) && i < json_object_array_length(v); i++) {
			json_object *g = json_object_array_get_idx(v, i);
			found |= json_object_is_type(g, json_type_string) && strcmp(json_object_get_string(g), group) == 0;
		}
	}
	json_object_put(payload);
	return found;
}

/* A request that came with a JWT: its subject when an issuer of ours
 * signed it and its group claim names [admin] jwt_group; else answered
 * (401 for a token we do not take, 403 for one not an admin's) and NULL. */
static char *jwt_admin(struct adminapi *api, struct admin_request *req, const char *jwt)
{
	const struct config *cfg = *api->cfg;
	struct jwt_claims claims = { 0 };
	enum jwt_error why = JWT_OK;
	const char *issuer = NULL;
	const char *claim = cfg->admin_jwt_group_claim && *cfg->admin_jwt_group_claim
				    ? cfg->admin_jwt_group_claim : "cognito:groups";
	char *sub;

	/* An empty string key reads as NULL. */
	if (!cfg->admin_jwt_group || !*cfg->admin_jwt_group || !api->auth) {
		answer_error(req, MHD_HTTP_UNAUTHORIZED, "unauthorized");
		return NULL;
	}
	if (auth_verify(api->auth, jwt, now_seconds(), &claims, &why, &issuer) < 0) {
		answer_error(req, MHD_HTTP_UNAUTHORIZED,
			     why == JWT_EXPIRED ? "token expired: sign in again" : "unauthorized: invalid token");
		jwt_claims_clear(&claims);
		return NULL;
	}
	if (!in_group(jwt, claim, cfg->admin_jwt_group)) {
		g_autofree char *msg = g_strdup_printf("not an administrator: the token's %s does not "
						       "name the administrators' group",
						       claim);
		answer_error(req, MHD_HTTP_FORBIDDEN, msg);
		jwt_claims_clear(&claims);
		return NULL;
	}
	sub = g_strdup(claims.sub);
	jwt_claims_clear(&claims);
	return sub;
}

static void route(struct adminapi *api, struct admin_request *req);

void adminapi_handle(void *data, struct admin_request *req)
{
	struct adminapi *api = data;
	const char *jwt = admin_request_jwt(req);
	g_autofree char *actor = jwt ? jwt_admin(api, req, jwt) : g_strdup(ACTOR_ADMIN_TOKEN);

	if (!actor)
		return;
	api->actor = actor;
	route(api, req);
	api->actor = NULL;
}

static void route(struct adminapi *api, struct admin_request *req)
{
	const char *method = admin_request_method(req), *path = admin_request_path(req);
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	bool del = strcmp(method, "DELETE") == 0;
	g_autofree char *members_of = NULL, *peers_of = NULL;

	if ((strcmp(path, "dashboard") == 0 || strcmp(path, "audit") == 0) && !get) {
		admin_request_set_allow(req, "GET");
		answer_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
	} else if (strcmp(path, "dashboard") == 0) {
		dashboard(api, req);
	} else if (strcmp(path, "audit") == 0) {
		answer(req, MHD_HTTP_OK, audit_to_json(api->audit));
	} else if (peers_path(path, &peers_of)) {
		if (get) {
			room_peer_list(api, req, peers_of);
		} else {
			admin_request_set_allow(req, "GET");
			answer_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
		}
	} else if (members_path(path, &members_of)) {
		if (get)
			list_members(api, req, members_of);
		else if (post || del)
			change_member(api, req, members_of, post);
		else {
			admin_request_set_allow(req, "GET, POST, DELETE");
			answer_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
		}
	} else if (strcmp(path, "rooms") == 0 && (get || post)) {
		get ? list_rooms(api, req) : create_room(api, req);
	} else if (strcmp(path, "keys") == 0 && (get || post)) {
		get ? list_keys(api, req) : create_key(api, req);
	} else if (g_str_has_prefix(path, "rooms/") && del && path[6]) {
		delete_room(api, req, path + 6);
	} else if (g_str_has_prefix(path, "keys/") && del && path[5]) {
		revoke_key(api, req, path + 5);
	} else if (strcmp(path, "rooms") == 0 || strcmp(path, "keys") == 0) {
		admin_request_set_allow(req, "GET, POST");
		answer_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
	} else if (g_str_has_prefix(path, "rooms/") || g_str_has_prefix(path, "keys/")) {
		admin_request_set_allow(req, "DELETE");
		answer_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
	} else {
		answer_error(req, MHD_HTTP_NOT_FOUND, "not found");
	}
}
