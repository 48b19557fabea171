#include "daemon/adminapi.h"

#include "auth/auth.h"
#include "util/json.h"
#include "util/log.h"
#include "util/msgbuf.h"
#include "core/protocol.h"

#include <errno.h>
#include <microhttpd.h>
#include <string.h>

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

static void room_created(int status, const struct store_room *room, const char *token,
			 const char *why, void *data)
{
	struct admin_request *req = data;
	if (status < 0) {
		answer_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, why);
		return;
	}
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
		if (roomsvc_create(api->roomsvc, &rq, now_seconds(), room_created, req, &why) < 0)
			answer_error(req, MHD_HTTP_BAD_REQUEST, why);
	}
	json_object_put(body);
}

/* A deletion or revocation waiting for the store: the request is
 * answered from its completion, so the answer says what a restart keeps. */
struct api_change {
	struct adminapi *api;
	struct admin_request *req;
	char *id;
};

static struct api_change *api_change_new(struct adminapi *api, struct admin_request *req,
					 const char *id)
{
	struct api_change *c = g_new0(struct api_change, 1);
	c->api = api;
	c->req = req;
	c->id = g_strdup(id);
	return c;
}

static void api_change_free(struct api_change *c)
{
	g_free(c->id);
	g_free(c);
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

	api_change_free(c);
	if (status < 0) {
		answer_error(req, status == -ENOENT ? MHD_HTTP_NOT_FOUND : MHD_HTTP_SERVICE_UNAVAILABLE, why);
		return;
	}
	struct log_fields f = { .room = key->room_id };
	log_event(LOG_NOTICE, LOG_EVENT_NONE, &f, "API key %s created through the admin API%s%s",
		  key->key_id, key->account ? " for account " : "", key->account ? key->account : "");
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

void adminapi_handle(void *data, struct admin_request *req)
{
	struct adminapi *api = data;
	const char *method = admin_request_method(req), *path = admin_request_path(req);
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	bool del = strcmp(method, "DELETE") == 0;
	g_autofree char *members_of = NULL;

	if (members_path(path, &members_of)) {
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
