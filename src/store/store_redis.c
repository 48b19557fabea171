/* store_redis: see store_redis.h.  Synchronous hiredis on the store's own
 * thread (which exists for blocking I/O); every write is one MULTI/EXEC or
 * one Lua script, and the change notice is published in the same
 * transaction, so no instance sees a notice for a write that did not
 * happen, nor a write without its notice. */
#include "store/store_redis.h"

#include "util/redisurl.h"
#include "store/rooms.h"

#include <errno.h>
#include <hiredis.h>
#include <stdarg.h>
#include <string.h>

struct rs {
	redisContext *c;
	struct redisurl url;
	char *where; /* the address, for messages */
	char *password;
	char *prefix;
	char *instance;
};

/* --- records as JSON --- */

static void add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

static void add_int(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void add_hash(json_object *o, const char *k, const uint8_t h[SECRET_HASH_LEN])
{
	char hex[2 * SECRET_HASH_LEN + 1];
	for (int i = 0; i < SECRET_HASH_LEN; i++)
		g_snprintf(hex + 2 * i, 3, "%02x", h[i]);
	add_str(o, k, hex);
}

static char *get_str(json_object *o, const char *k)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return g_strdup(json_object_get_string(v));
}

static int64_t get_int(json_object *o, const char *k)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_int64(v);
}

static bool get_hash(json_object *o, const char *k, uint8_t out[SECRET_HASH_LEN])
{
	g_autofree char *hex = get_str(o, k);

	if (!hex || strlen(hex) != 2 * SECRET_HASH_LEN)
		return false;
	for (int i = 0; i < SECRET_HASH_LEN; i++) {
		int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

json_object *store_redis_room_json(const struct store_room *room)
{
	json_object *o = json_object_new_object();
	add_str(o, "id", room->id);
	add_str(o, "name", room->name);
	add_hash(o, "token_hash", room->token_hash);
	add_str(o, "created_by", room->created_by);
	add_int(o, "created_at", room->created_at);
	add_int(o, "expires_at", room->expires_at);
	add_int(o, "max_peers", room->max_peers);
	json_object_object_add(o, "open_to_issuer", json_object_new_boolean(room->open_to_issuer));
	return o;
}

struct store_room *store_redis_room_parse(json_object *o)
{
	struct store_room *room = g_new0(struct store_room, 1);
	json_object *v;

	room->id = get_str(o, "id");
	room->name = get_str(o, "name");
	room->created_by = get_str(o, "created_by");
	room->created_at = get_int(o, "created_at");
	room->expires_at = get_int(o, "expires_at");
	room->max_peers = (unsigned)CLAMP(get_int(o, "max_peers"), 0, G_MAXUINT);
	room->open_to_issuer = json_object_object_get_ex(o, "open_to_issuer", &v) &&
			       json_object_get_boolean(v);
	if (!room->id || !room->created_by || !get_hash(o, "token_hash", room->token_hash)) {
		store_room_free(room);
		return NULL;
	}
	return room;
}

json_object *store_redis_key_json(const struct store_key *key)
{
	json_object *o = json_object_new_object();
	add_str(o, "key_id", key->key_id);
	add_hash(o, "key_hash", key->key_hash);
	add_str(o, "room_id", key->room_id);
	add_str(o, "account", key->account);
	add_str(o, "name", key->name);
	add_int(o, "created_at", key->created_at);
	add_int(o, "expires_at", key->expires_at);
	add_int(o, "revoked_at", key->revoked_at);
	return o;
}

struct store_key *store_redis_key_parse(json_object *o)
{
	struct store_key *key = g_new0(struct store_key, 1);

	key->key_id = get_str(o, "key_id");
	key->room_id = get_str(o, "room_id");
	key->account = get_str(o, "account");
	key->name = get_str(o, "name");
	key->created_at = get_int(o, "created_at");
	key->expires_at = get_int(o, "expires_at");
	key->revoked_at = get_int(o, "revoked_at");
	if (!key->key_id || !key->room_id == !key->account || !get_hash(o, "key_hash", key->key_hash)) {
		store_key_free(key);
		return NULL;
	}
	return key;
}

json_object *store_redis_pubkey_json(const struct store_pubkey *k)
{
	json_object *o = json_object_new_object();
	add_str(o, "account", k->account);
	add_str(o, "public_key", k->public_key);
	add_str(o, "device_name", k->device_name);
	add_str(o, "username", k->username);
	add_int(o, "created_at", k->created_at);
	return o;
}

struct store_pubkey *store_redis_pubkey_parse(json_object *o)
{
	struct store_pubkey *k = g_new0(struct store_pubkey, 1);

	k->account = get_str(o, "account");
	k->public_key = get_str(o, "public_key");
	k->device_name = get_str(o, "device_name");
	k->username = get_str(o, "username");
	k->created_at = get_int(o, "created_at");
	if (!k->account || !k->public_key) {
		store_pubkey_free(k);
		return NULL;
	}
	return k;
}

static char *to_text(json_object *o)
{
	char *s = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

/* --- the connection --- */

static int fail(struct rs *s, int r, GError **err, const char *fmt, ...) G_GNUC_PRINTF(4, 5);
static int fail(struct rs *s, int r, GError **err, const char *fmt, ...)
{
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: %s", s->where, msg);
	return r;
}

/* The connection is unusable after an I/O or protocol error: drop it, the
 * next operation connects again (Redis may be back by then). */
static int conn_failed(struct rs *s, const char *what, GError **err)
{
	int r = fail(s, -EIO, err, "%s: %s", what, s->c && s->c->errstr[0] ? s->c->errstr : "no answer");
	g_clear_pointer(&s->c, redisFree);
	return r;
}

/* A command's reply (freeReplyObject), or NULL with ERR set when the
 * connection failed (it is dropped). */
static redisReply *command(struct rs *s, GError **err, const char *fmt, ...)
{
	redisReply *reply;
	va_list ap;

	va_start(ap, fmt);
	reply = redisvCommand(s->c, fmt, ap);
	va_end(ap);
	if (!reply)
		conn_failed(s, "a command failed", err);
	return reply;
}

static int connect_redis(struct rs *s, GError **err)
{
	const struct timeval tv = { STORE_REDIS_TIMEOUT_MS / 1000, STORE_REDIS_TIMEOUT_MS % 1000 * 1000 };
	redisReply *reply;

	if (s->c)
		return 0;
	s->c = s->url.path ? redisConnectUnixWithTimeout(s->url.path, tv)
			   : redisConnectWithTimeout(s->url.host, s->url.port, tv);
	if (!s->c || s->c->err)
		return conn_failed(s, "cannot connect", err);
	if (redisSetTimeout(s->c, tv) != REDIS_OK)
		return conn_failed(s, "cannot set a timeout", err);
	if (s->password) {
		if (!(reply = command(s, err, "AUTH %s", s->password)))
			return -EIO;
		bool ok = reply->type != REDIS_REPLY_ERROR;
		int r = ok ? 0 : fail(s, -EACCES, err, "AUTH refused: %s", reply->str);
		freeReplyObject(reply);
		if (r < 0) {
			g_clear_pointer(&s->c, redisFree);
			return r;
		}
	}
	if (s->url.db) {
		if (!(reply = command(s, err, "SELECT %u", s->url.db)))
			return -EIO;
		int r = reply->type == REDIS_REPLY_ERROR ? fail(s, -ENXIO, err, "SELECT %u: %s", s->url.db, reply->str) : 0;
		freeReplyObject(reply);
		if (r < 0) {
			g_clear_pointer(&s->c, redisFree);
			return r;
		}
	}
	return 0;
}

static char *key(struct rs *s, const char *room, const char *what)
{
	return room ? g_strdup_printf("%s{%s}:%s", s->prefix, room, what)
		    : g_strconcat(s->prefix, what, NULL);
}

static void rs_close(void *be)
{
	struct rs *s = be;

	if (!s)
		return;
	if (s->c)
		redisFree(s->c);
	redisurl_clear(&s->url);
	g_free(s->where);
	if (s->password)
		explicit_bzero(s->password, strlen(s->password));
	g_free(s->password);
	g_free(s->prefix);
	g_free(s->instance);
	g_free(s);
}

static int rs_open(const struct store_params *p, void **out, GError **err)
{
	struct rs *s = g_new0(struct rs, 1);
	const char *why;
	redisReply *reply;
	int r;

	s->where = g_strdup(p->redis ? p->redis : "redis");
	if (!p->redis || redisurl_parse(p->redis, &s->url, &why) < 0) {
		r = fail(s, -EINVAL, err, "%s", p->redis ? why : "no [cluster] redis address");
		goto fail;
	}
	s->password = g_strdup(p->password);
	s->prefix = g_strdup(p->key_prefix ? p->key_prefix : "");
	s->instance = g_strdup(p->instance_id ? p->instance_id : "");
	if ((r = connect_redis(s, err)) < 0)
		goto fail;
	if (!(reply = command(s, err, "PING"))) {
		r = -EIO;
		goto fail;
	}
	freeReplyObject(reply);
	*out = s;
	return 0;
fail:
	rs_close(s);
	return r;
}

/* Runs the commands of ARGS (NULL-terminated lists of arguments, as many
 * as N) in one MULTI/EXEC, followed by a PUBLISH of NOTICE when not NULL.
 * *EXEC_OUT, when asked for, gets EXEC's reply (freeReplyObject). */
static int transaction(struct rs *s, GPtrArray *cmds, const char *notice, const char *what,
		       redisReply **exec_out, GError **err)
{
	g_autofree char *channel = key(s, NULL, STORE_REDIS_CHANNEL);
	redisReply *reply = NULL;
	unsigned n = 0;
	int r = 0;

	if ((r = connect_redis(s, err)) < 0)
		return r;
	redisAppendCommand(s->c, "MULTI");
	n++;
	for (guint i = 0; i < cmds->len; i++, n++) {
		GPtrArray *argv = g_ptr_array_index(cmds, i);
		redisAppendCommandArgv(s->c, (int)argv->len, (const char **)argv->pdata, NULL);
	}
	if (notice) {
		redisAppendCommand(s->c, "PUBLISH %s %s", channel, notice);
		n++;
	}
	redisAppendCommand(s->c, "EXEC");
	n++;
	for (unsigned i = 0; i < n; i++) {
		if (redisGetReply(s->c, (void **)&reply) != REDIS_OK || !reply)
			return conn_failed(s, what, err);
		if (i + 1 == n && reply->type != REDIS_REPLY_ARRAY && r == 0)
			r = fail(s, -EIO, err, "%s: the transaction was refused%s%s", what,
				 reply->type == REDIS_REPLY_ERROR ? ": " : "",
				 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
		else if (reply->type == REDIS_REPLY_ERROR && r == 0)
			r = fail(s, -EIO, err, "%s: %s", what, reply->str);
		if (i + 1 == n && exec_out && r == 0)
			*exec_out = reply;
		else
			freeReplyObject(reply);
		reply = NULL;
	}
	return r;
}

/* A command for transaction(): the arguments, each copied. */
static GPtrArray *cmd(GPtrArray *cmds, const char *first, ...) G_GNUC_NULL_TERMINATED;
static GPtrArray *cmd(GPtrArray *cmds, const char *first, ...)
{
	GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		g_ptr_array_add(argv, g_strdup(a));
	va_end(ap);
	g_ptr_array_add(cmds, argv);
	return argv;
}

static GPtrArray *cmds_new(void)
{
	return g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
}

/* {"from":INSTANCE,"op":OP,...FIELDS}: FIELDS is taken. */
static char *notice(struct rs *s, const char *op, json_object *fields)
{
	json_object *o = fields ? fields : json_object_new_object();
	add_str(o, "from", s->instance);
	add_str(o, "op", op);
	return to_text(o);
}

/* A room's keys live until the room's expiry plus the retention in which
 * registrations are told ROOM_EXPIRED (rooms.h). */
static int64_t expire_at(int64_t expires_at)
{
	return expires_at ? expires_at + ROOMS_EXPIRED_RETENTION : 0;
}

/* --- reads --- */

static int hgetall(struct rs *s, const char *k, redisReply **out, GError **err)
{
	redisReply *reply = command(s, err, "HGETALL %s", k);

	if (!reply)
		return -EIO;
	if (reply->type != REDIS_REPLY_ARRAY) {
		int r = fail(s, -EIO, err, "HGETALL %s: %s", k,
			     reply->type == REDIS_REPLY_ERROR ? reply->str : "not a hash");
		freeReplyObject(reply);
		return r;
	}
	*out = reply;
	return 0;
}

static json_object *parse_json(const char *text)
{
	json_object *o = json_tokener_parse(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

#define PIPELINE_BATCH 1000 /* commands in flight at once while loading */

/* Sends the commands of CMDS (argument lists, see cmd()) pipelined, in
 * batches, and appends their replies in order to OUT (which frees them):
 * one round trip per batch instead of per room. */
static int pipeline(struct rs *s, GPtrArray *cmds, GPtrArray *out, const char *what, GError **err)
{
	int r;

	if ((r = connect_redis(s, err)) < 0)
		return r;
	for (guint first = 0; first < cmds->len; first += PIPELINE_BATCH) {
		guint n = MIN(cmds->len - first, PIPELINE_BATCH);
		for (guint i = first; i < first + n; i++) {
			GPtrArray *argv = g_ptr_array_index(cmds, i);
			redisAppendCommandArgv(s->c, (int)argv->len, (const char **)argv->pdata, NULL);
		}
		for (guint i = 0; i < n; i++) {
			redisReply *reply = NULL;
			if (redisGetReply(s->c, (void **)&reply) != REDIS_OK || !reply)
				return conn_failed(s, what, err);
			g_ptr_array_add(out, reply);
		}
	}
	return 0;
}

static GPtrArray *replies_new(void)
{
	return g_ptr_array_new_with_free_func((GDestroyNotify)freeReplyObject);
}

/* A hash from HGETALL, or an error naming K. */
static int hash_reply(struct rs *s, const redisReply *reply, const char *k, GError **err)
{
	if (reply->type == REDIS_REPLY_ARRAY)
		return 0;
	return fail(s, -EIO, err, "HGETALL %s: %s", k,
		    reply->type == REDIS_REPLY_ERROR ? reply->str : "not a hash");
}

/* The keys in hash ALL (JSON values) with revocation times from REVOKED. */
static int add_keys(struct rs *s, const char *k, const redisReply *all, const redisReply *revoked,
		    GPtrArray *keys, GError **err)
{
	int r;

	if ((r = hash_reply(s, all, k, err)) < 0 || (r = hash_reply(s, revoked, k, err)) < 0)
		return r;
	for (size_t i = 0; i + 1 < all->elements; i += 2) {
		json_object *o = parse_json(all->element[i + 1]->str);
		struct store_key *key = o ? store_redis_key_parse(o) : NULL;
		json_object_put(o);
		if (!key)
			return fail(s, -EBADMSG, err, "API key \"%s\" in %s is malformed", all->element[i]->str, k);
		for (size_t j = 0; j + 1 < revoked->elements; j += 2)
			if (strcmp(revoked->element[j]->str, key->key_id) == 0)
				key->revoked_at = g_ascii_strtoll(revoked->element[j + 1]->str, NULL, 10);
		g_ptr_array_add(keys, key);
	}
	return 0;
}

/* The ids in the rooms index whose room still exists (and the rooms, into
 * ROOMS when not NULL); the others (expired by their TTL, or lost) are
 * dropped from the index. */
static int room_ids(struct rs *s, GPtrArray *ids, GPtrArray *rooms, GError **err)
{
	g_autofree char *index = key(s, NULL, "rooms");
	g_autoptr(GPtrArray) cmds = cmds_new(), replies = replies_new();
	g_autoptr(GPtrArray) stale = cmds_new(), done = replies_new();
	redisReply *members = command(s, err, "SMEMBERS %s", index);
	int r = 0;

	if (!members)
		return -EIO;
	if (members->type != REDIS_REPLY_ARRAY) {
		r = fail(s, -EIO, err, "SMEMBERS %s: unexpected answer", index);
		goto out;
	}
	for (size_t i = 0; i < members->elements; i++) {
		g_autofree char *rk = key(s, members->element[i]->str, "room");
		cmd(cmds, "GET", rk, NULL);
	}
	if ((r = pipeline(s, cmds, replies, "cannot read the rooms", err)) < 0)
		goto out;
	for (size_t i = 0; i < members->elements; i++) {
		const char *id = members->element[i]->str;
		const redisReply *room = g_ptr_array_index(replies, i);
		if (room->type == REDIS_REPLY_NIL) {
			cmd(stale, "SREM", index, id, NULL);
		} else if (room->type == REDIS_REPLY_STRING) {
			json_object *o = parse_json(room->str);
			struct store_room *rec = o ? store_redis_room_parse(o) : NULL;
			json_object_put(o);
			if (!rec || strcmp(rec->id, id) != 0) {
				store_room_free(rec);
				r = fail(s, -EBADMSG, err, "room \"%s\" is malformed", id);
				goto out;
			}
			if (rooms)
				g_ptr_array_add(rooms, rec);
			else
				store_room_free(rec);
			g_ptr_array_add(ids, g_strdup(id));
		} else {
			r = fail(s, -EIO, err, "room \"%s\": %s", id,
				 room->type == REDIS_REPLY_ERROR ? room->str : "not a string");
			goto out;
		}
	}
	r = pipeline(s, stale, done, "cannot drop expired rooms from the index", err);
out:
	freeReplyObject(members);
	return r;
}

static int rs_load(void *be, GPtrArray *rooms, GPtrArray *keys, GError **err)
{
	struct rs *s = be;
	g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) cmds = cmds_new(), replies = replies_new();
	g_autofree char *ak = key(s, NULL, "akeys"), *akr = key(s, NULL, "akeys:revoked");
	int r;

	if ((r = connect_redis(s, err)) < 0 || (r = room_ids(s, ids, rooms, err)) < 0)
		return r;
	for (guint i = 0; i < ids->len; i++) {
		const char *id = g_ptr_array_index(ids, i);
		g_autofree char *k = key(s, id, "keys"), *rev = key(s, id, "revoked");
		cmd(cmds, "HGETALL", k, NULL);
		cmd(cmds, "HGETALL", rev, NULL);
	}
	cmd(cmds, "HGETALL", ak, NULL);
	cmd(cmds, "HGETALL", akr, NULL);
	if ((r = pipeline(s, cmds, replies, "cannot read the API keys", err)) < 0)
		return r;
	for (guint i = 0; i < cmds->len; i += 2) {
		GPtrArray *argv = g_ptr_array_index(cmds, i);
		if ((r = add_keys(s, g_ptr_array_index(argv, 1), g_ptr_array_index(replies, i),
				  g_ptr_array_index(replies, i + 1), keys, err)) < 0)
			return r;
	}
	return 0;
}

static int rs_load_members(void *be, GPtrArray *members, GError **err)
{
	struct rs *s = be;
	g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) cmds = cmds_new(), replies = replies_new();
	int r;

	if ((r = connect_redis(s, err)) < 0 || (r = room_ids(s, ids, NULL, err)) < 0)
		return r;
	for (guint i = 0; i < ids->len; i++) {
		g_autofree char *k = key(s, g_ptr_array_index(ids, i), "members");
		cmd(cmds, "HGETALL", k, NULL);
	}
	if ((r = pipeline(s, cmds, replies, "cannot read the room members", err)) < 0)
		return r;
	for (guint i = 0; i < ids->len; i++) {
		const redisReply *all = g_ptr_array_index(replies, i);
		if ((r = hash_reply(s, all, g_ptr_array_index(ids, i), err)) < 0)
			return r;
		for (size_t j = 0; j + 1 < all->elements; j += 2) {
			struct store_member *m = g_new0(struct store_member, 1);
			m->room_id = g_strdup(g_ptr_array_index(ids, i));
			m->account = g_strdup(all->element[j]->str);
			m->added_at = g_ascii_strtoll(all->element[j + 1]->str, NULL, 10);
			g_ptr_array_add(members, m);
		}
	}
	return 0;
}

static gint pubkey_by_created(gconstpointer a, gconstpointer b)
{
	const struct store_pubkey *x = *(const struct store_pubkey *const *)a;
	const struct store_pubkey *y = *(const struct store_pubkey *const *)b;
	if (x->created_at != y->created_at)
		return x->created_at < y->created_at ? -1 : 1;
	return strcmp(x->public_key, y->public_key);
}

static int rs_load_pubkeys(void *be, GPtrArray *out, GError **err)
{
	struct rs *s = be;
	g_autofree char *k = key(s, NULL, "pubkeys");
	redisReply *all;
	guint first = out->len;
	int r;

	if ((r = connect_redis(s, err)) < 0 || (r = hgetall(s, k, &all, err)) < 0)
		return r;
	for (size_t i = 0; i + 1 < all->elements; i += 2) {
		json_object *o = parse_json(all->element[i + 1]->str);
		struct store_pubkey *pk = o ? store_redis_pubkey_parse(o) : NULL;
		json_object_put(o);
		if (!pk) {
			r = fail(s, -EBADMSG, err, "public key \"%s\" is malformed", all->element[i]->str);
			break;
		}
		g_ptr_array_add(out, pk);
	}
	freeReplyObject(all);
	/* The order they were published in, as the sqlite store keeps it. */
	if (r == 0 && out->len > first + 1)
		qsort(out->pdata + first, out->len - first, sizeof(gpointer),
		      (int (*)(const void *, const void *))pubkey_by_created);
	return r;
}

/* --- writes --- */

/* The integer reply of a script or command, run with its own connection
 * error handling; *OUT gets it. */
static int eval(struct rs *s, const char *what, long long *out, GError **err, int argc,
		const char **argv)
{
	redisReply *reply;
	int r;

	if ((r = connect_redis(s, err)) < 0)
		return r;
	if (!(reply = redisCommandArgv(s->c, argc, argv, NULL)))
		return conn_failed(s, what, err);
	if (reply->type == REDIS_REPLY_INTEGER) {
		*out = reply->integer;
		r = 0;
	} else {
		r = fail(s, -EIO, err, "%s: %s", what,
			 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer");
	}
	freeReplyObject(reply);
	return r;
}

static int rs_put_room(void *be, const struct store_room *room, GError **err)
{
	struct rs *s = be;
	g_autoptr(GPtrArray) cmds = cmds_new();
	g_autofree char *rk = key(s, room->id, "room"), *index = key(s, NULL, "rooms");
	g_autofree char *json = to_text(store_redis_room_json(room));
	json_object *n = json_object_new_object();
	int64_t at = expire_at(room->expires_at);
	g_autofree char *when = g_strdup_printf("%" G_GINT64_FORMAT, at);

	json_object_object_add(n, "room", store_redis_room_json(room));
	g_autofree char *text = notice(s, "room", n);
	if (at)
		cmd(cmds, "SET", rk, json, "EXAT", when, NULL);
	else
		cmd(cmds, "SET", rk, json, NULL);
	cmd(cmds, "SADD", index, room->id, NULL);
	/* A room's other keys go when it does. */
	const char *parts[] = { "keys", "revoked", "members" };
	for (size_t i = 0; i < G_N_ELEMENTS(parts); i++) {
		g_autofree char *k = key(s, room->id, parts[i]);
		if (at)
			cmd(cmds, "EXPIREAT", k, when, NULL);
		else
			cmd(cmds, "PERSIST", k, NULL);
	}
	return transaction(s, cmds, text, "cannot store a room", NULL, err);
}

/* Deletes a room's keys and index entries; returns 1 if the room existed.
 * One script, so a key written meanwhile cannot outlive its room. */
static const char delete_room_lua[] =
	"local n = redis.call('DEL', KEYS[1])\n"
	"for _, k in ipairs(redis.call('HKEYS', KEYS[2])) do redis.call('HDEL', KEYS[6], k) end\n"
	"redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])\n"
	"redis.call('SREM', KEYS[5], ARGV[1])\n"
	"if n == 1 then redis.call('PUBLISH', KEYS[7], ARGV[2]) end\n"
	"return n\n";

static int rs_delete_room(void *be, const char *room_id, GError **err)
{
	struct rs *s = be;
	g_autofree char *k1 = key(s, room_id, "room"), *k2 = key(s, room_id, "keys"),
			*k3 = key(s, room_id, "revoked"), *k4 = key(s, room_id, "members"),
			*k5 = key(s, NULL, "rooms"), *k6 = key(s, NULL, "keyroom"),
			*k7 = key(s, NULL, STORE_REDIS_CHANNEL);
	json_object *n = json_object_new_object();
	long long existed = 0;
	int r;

	add_str(n, "room_id", room_id);
	g_autofree char *text = notice(s, "delete_room", n);
	const char *argv[] = { "EVAL", delete_room_lua, "7", k1, k2, k3, k4, k5, k6, k7, room_id, text };
	if ((r = eval(s, "cannot delete a room", &existed, err, G_N_ELEMENTS(argv), argv)) < 0)
		return r;
	if (!existed)
		return fail(s, -ENOENT, err, "cannot delete room \"%s\": no such room", room_id);
	return 0;
}

/* A room key needs its room, and lives as long as it does (its TTL). */
static const char put_room_key_lua[] =
	"local t = redis.call('PTTL', KEYS[1])\n"
	"if t == -2 then return -2 end\n"
	"redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
	"redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])\n"
	"if ARGV[4] ~= '0' then redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[4]) end\n"
	"if t > 0 then redis.call('PEXPIRE', KEYS[2], t) redis.call('PEXPIRE', KEYS[4], t) end\n"
	"redis.call('PUBLISH', KEYS[5], ARGV[5])\n"
	"return 0\n";

static int rs_put_key(void *be, const struct store_key *key_rec, GError **err)
{
	struct rs *s = be;
	g_autofree char *json = to_text(store_redis_key_json(key_rec));
	g_autofree char *rev = g_strdup_printf("%" G_GINT64_FORMAT, key_rec->revoked_at);
	g_autofree char *ch = key(s, NULL, STORE_REDIS_CHANNEL);
	json_object *n = json_object_new_object();
	long long res = 0;
	int r;

	json_object_object_add(n, "key", store_redis_key_json(key_rec));
	g_autofree char *text = notice(s, "key", n);
	if (key_rec->account) {
		g_autoptr(GPtrArray) cmds = cmds_new();
		g_autofree char *ak = key(s, NULL, "akeys"), *akr = key(s, NULL, "akeys:revoked");
		cmd(cmds, "HSET", ak, key_rec->key_id, json, NULL);
		if (key_rec->revoked_at)
			cmd(cmds, "HSETNX", akr, key_rec->key_id, rev, NULL);
		return transaction(s, cmds, text, "cannot store an API key", NULL, err);
	}
	g_autofree char *k1 = key(s, key_rec->room_id, "room"), *k2 = key(s, key_rec->room_id, "keys"),
			*k3 = key(s, NULL, "keyroom"), *k4 = key(s, key_rec->room_id, "revoked");
	const char *argv[] = { "EVAL", put_room_key_lua, "5", k1, k2, k3, k4, ch,
			       key_rec->key_id, json, key_rec->room_id, rev, text };
	if ((r = eval(s, "cannot store an API key", &res, err, G_N_ELEMENTS(argv), argv)) < 0)
		return r;
	if (res == -2)
		return fail(s, -ENOENT, err, "cannot store API key \"%s\": no room \"%s\"", key_rec->key_id,
			    key_rec->room_id);
	return 0;
}

/* The first revocation time stays (HSETNX); 0 when there is no such key. */
static const char revoke_lua[] =
	"local room = redis.call('HGET', KEYS[1], ARGV[1])\n"
	"local keys, rev\n"
	"if room then keys = ARGV[3] .. '{' .. room .. '}:keys' rev = ARGV[3] .. '{' .. room .. '}:revoked'\n"
	"else keys = KEYS[2] rev = KEYS[3] end\n"
	"if redis.call('HEXISTS', keys, ARGV[1]) == 0 then return 0 end\n"
	"redis.call('HSETNX', rev, ARGV[1], ARGV[2])\n"
	"local t = redis.call('PTTL', keys)\n"
	"if t > 0 then redis.call('PEXPIRE', rev, t) end\n"
	"redis.call('PUBLISH', KEYS[4], ARGV[4])\n"
	"return 1\n";

static int rs_revoke_key(void *be, const char *key_id, int64_t when, GError **err)
{
	struct rs *s = be;
	g_autofree char *k1 = key(s, NULL, "keyroom"), *k2 = key(s, NULL, "akeys"),
			*k3 = key(s, NULL, "akeys:revoked"), *k4 = key(s, NULL, STORE_REDIS_CHANNEL);
	g_autofree char *w = g_strdup_printf("%" G_GINT64_FORMAT, when);
	json_object *n = json_object_new_object();
	long long found = 0;
	int r;

	add_str(n, "key_id", key_id);
	add_int(n, "when", when);
	g_autofree char *text = notice(s, "revoke", n);
	const char *argv[] = { "EVAL", revoke_lua, "4", k1, k2, k3, k4, key_id, w, s->prefix, text };
	if ((r = eval(s, "cannot revoke an API key", &found, err, G_N_ELEMENTS(argv), argv)) < 0)
		return r;
	if (!found)
		return fail(s, -ENOENT, err, "cannot revoke API key \"%s\": no such key", key_id);
	return 0;
}

static const char put_member_lua[] =
	"local t = redis.call('PTTL', KEYS[1])\n"
	"if t == -2 then return -2 end\n"
	"redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])\n"
	"if t > 0 then redis.call('PEXPIRE', KEYS[2], t) end\n"
	"redis.call('PUBLISH', KEYS[3], ARGV[3])\n"
	"return 0\n";

static int rs_put_member(void *be, const struct store_member *m, GError **err)
{
	struct rs *s = be;
	g_autofree char *k1 = key(s, m->room_id, "room"), *k2 = key(s, m->room_id, "members"),
			*k3 = key(s, NULL, STORE_REDIS_CHANNEL);
	g_autofree char *added = g_strdup_printf("%" G_GINT64_FORMAT, m->added_at);
	json_object *n = json_object_new_object();
	long long res = 0;
	int r;

	add_str(n, "room_id", m->room_id);
	add_str(n, "account", m->account);
	add_int(n, "added_at", m->added_at);
	g_autofree char *text = notice(s, "member", n);
	const char *argv[] = { "EVAL", put_member_lua, "3", k1, k2, k3, m->account, added, text };
	if ((r = eval(s, "cannot store a room member", &res, err, G_N_ELEMENTS(argv), argv)) < 0)
		return r;
	if (res == -2)
		return fail(s, -ENOENT, err, "cannot add a member to room \"%s\": no such room", m->room_id);
	return 0;
}

static const char delete_member_lua[] =
	"local n = redis.call('HDEL', KEYS[1], ARGV[1])\n"
	"if n == 1 then redis.call('PUBLISH', KEYS[2], ARGV[2]) end\n"
	"return n\n";

static int rs_delete_member(void *be, const char *room_id, const char *account, GError **err)
{
	struct rs *s = be;
	g_autofree char *k1 = key(s, room_id, "members"), *k2 = key(s, NULL, STORE_REDIS_CHANNEL);
	json_object *n = json_object_new_object();
	long long res = 0;
	int r;

	add_str(n, "room_id", room_id);
	add_str(n, "account", account);
	g_autofree char *text = notice(s, "unmember", n);
	const char *argv[] = { "EVAL", delete_member_lua, "2", k1, k2, account, text };
	if ((r = eval(s, "cannot remove a room member", &res, err, G_N_ELEMENTS(argv), argv)) < 0)
		return r;
	if (!res)
		return fail(s, -ENOENT, err, "room \"%s\" has no such member", room_id);
	return 0;
}

static int rs_put_pubkey(void *be, const struct store_pubkey *k, GError **err)
{
	struct rs *s = be;
	g_autoptr(GPtrArray) cmds = cmds_new();
	g_autofree char *hk = key(s, NULL, "pubkeys");
	g_autofree char *field = g_strconcat(k->account, "\n", k->public_key, NULL);
	g_autofree char *json = to_text(store_redis_pubkey_json(k));
	json_object *n = json_object_new_object();

	json_object_object_add(n, "pubkey", store_redis_pubkey_json(k));
	g_autofree char *text = notice(s, "pubkey", n);
	cmd(cmds, "HSET", hk, field, json, NULL);
	return transaction(s, cmds, text, "cannot store a public key", NULL, err);
}

/* Redis expires the rooms itself (EXPIREAT); what is left is the index:
 * the ids whose room is gone, and the key index entries of their keys. */
static int rs_purge_expired(void *be, int64_t now, GError **err)
{
	struct rs *s = be;
	g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *index = key(s, NULL, "rooms"), *kr = key(s, NULL, "keyroom");
	redisReply *before, *all;
	long long n0;
	int r;

	(void)now;
	if ((r = connect_redis(s, err)) < 0)
		return r;
	if (!(before = command(s, err, "SCARD %s", index)))
		return -EIO;
	n0 = before->type == REDIS_REPLY_INTEGER ? before->integer : 0;
	freeReplyObject(before);
	if ((r = room_ids(s, ids, NULL, err)) < 0 || (r = hgetall(s, kr, &all, err)) < 0)
		return r;
	g_autoptr(GHashTable) live = g_hash_table_new(g_str_hash, g_str_equal);
	for (guint i = 0; i < ids->len; i++)
		g_hash_table_add(live, g_ptr_array_index(ids, i));
	for (size_t i = 0; i + 1 < all->elements; i += 2)
		if (!g_hash_table_contains(live, all->element[i + 1]->str)) {
			redisReply *x = command(s, err, "HDEL %s %s", kr, all->element[i]->str);
			if (!x) {
				r = -EIO;
				break;
			}
			freeReplyObject(x);
		}
	freeReplyObject(all);
	return r < 0 ? r : (int)MAX(n0 - (long long)ids->len, 0);
}

const struct store_backend_ops store_redis_ops = {
	.name = "redis",
	.open = rs_open,
	.load = rs_load,
	.put_room = rs_put_room,
	.delete_room = rs_delete_room,
	.put_key = rs_put_key,
	.load_members = rs_load_members,
	.put_member = rs_put_member,
	.delete_member = rs_delete_member,
	.revoke_key = rs_revoke_key,
	.purge_expired = rs_purge_expired,
	.load_pubkeys = rs_load_pubkeys,
	.put_pubkey = rs_put_pubkey,
	.close = rs_close,
};
