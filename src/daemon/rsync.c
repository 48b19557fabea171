/* rsync: see rsync.h. */
#include "daemon/rsync.h"

#include "util/log.h"
#include "util/metrics.h"
#include "util/redisurl.h"
#include "store/store_redis.h"

#include <errno.h>
#include <hiredis.h>
#include <async.h>
#include <adapters/libuv.h>
#include <string.h>

struct rsync {
	struct rsync_params p;
	struct redisurl url;
	char *password, *channel, *instance;
	redisAsyncContext *ac; /* NULL while disconnected */
	uv_timer_t retry;
	bool subscribed;
	bool lost;      /* the loss was logged: log the return */
	bool stopping;
	bool timer_open;
	unsigned reloads; /* in flight on the store's thread */
	/* Ids of rooms and keys notices changed while a reload was in flight:
	 * its snapshot may be older than they are. */
	GHashTable *touched;
};

static void try_connect(struct rsync *s);

static void maybe_free(struct rsync *s)
{
	if (!s->stopping || s->ac || s->timer_open || s->reloads)
		return;
	redisurl_clear(&s->url);
	if (s->password)
		explicit_bzero(s->password, strlen(s->password));
	g_free(s->password);
	g_free(s->channel);
	g_free(s->instance);
	g_hash_table_unref(s->touched);
	g_free(s);
}

static void on_timer(uv_timer_t *t)
{
	try_connect(t->data);
}

static void lost(struct rsync *s, const char *why)
{
	s->subscribed = false;
	if (!s->lost) {
		struct log_fields f = { .code = "redis" };
		log_event(LOG_ERR, LOG_EVENT_BACKEND_LOST, &f,
			  "room store: lost the change subscription (%s); rooms are served from memory, "
			  "changes elsewhere are not seen until it is back", why);
		s->lost = true;
	}
	if (!s->stopping)
		uv_timer_start(&s->retry, on_timer, RSYNC_RETRY_MS, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct rsync *s = h->data;
	s->timer_open = false;
	maybe_free(s);
}

/* --- applying --- */

static void close_room(struct rsync *s, const char *room_id, const char *reason)
{
	s->p.close_room(s->p.data, room_id, reason);
}

static void close_key(struct rsync *s, const char *key_id)
{
	g_autofree char *principal = g_strconcat("key:", key_id, NULL);
	s->p.close_principal(s->p.data, principal, "Token revoked");
}

static void on_reloaded(int status, const GError *err, struct store_snapshot *snap, void *data)
{
	struct rsync *s = data;
	g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) revoked = g_ptr_array_new_with_free_func(g_free);

	s->reloads--;
	if (s->stopping || status < 0) {
		if (status < 0 && status != -ECANCELED)
			log_err("room store: cannot reload: %s", err ? err->message : g_strerror(-status));
		/* Memory may miss changes: subscribe again, which reloads again. */
		if (!s->stopping && s->ac)
			redisAsyncDisconnect(s->ac);
		maybe_free(s);
		return;
	}
	metrics_inc(store_reloads);
	rooms_replace(s->p.rooms, snap, s->touched, gone, revoked);
	if (!s->reloads)
		g_hash_table_remove_all(s->touched);
	for (guint i = 0; i < snap->pubkeys->len; i++) {
		const struct store_pubkey *k = g_ptr_array_index(snap->pubkeys, i), *out;
		pubkeys_add(s->p.pubkeys, k->account, k->username, k->public_key, k->device_name, 0,
			    k->created_at, &out);
	}
	for (guint i = 0; i < gone->len; i++) {
		const char *id = g_ptr_array_index(gone, i);
		struct log_fields f = { .room = id };
		log_event(LOG_NOTICE, LOG_EVENT_NONE, &f,
			  "room no longer in the room store (deleted elsewhere, or lost with Redis' data)");
		close_room(s, id, "deleted");
	}
	for (guint i = 0; i < revoked->len; i++)
		close_key(s, g_ptr_array_index(revoked, i));
	log_info("room store: reloaded from Redis: %u rooms gone, %u keys revoked or gone", gone->len,
		 revoked->len);
}

static const char *str_of(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static gint64 int_of(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

/* One notice; false when it is malformed. */
static bool apply(struct rsync *s, json_object *n)
{
	const char *op = str_of(n, "op"), *from = str_of(n, "from");
	const char *room_id = str_of(n, "room_id"), *account = str_of(n, "account");
	json_object *v;

	if (!op || !from)
		return false;
	if (strcmp(from, s->instance) == 0)
		return true; /* ours: applied when written */
	metrics_inc(store_notices);
	if (s->reloads) {
		json_object *rec;
		const char *id = room_id ? room_id : str_of(n, "key_id");
		if (!id && json_object_object_get_ex(n, "room", &rec))
			id = str_of(rec, "id");
		if (!id && json_object_object_get_ex(n, "key", &rec))
			id = str_of(rec, "key_id");
		if (id)
			g_hash_table_add(s->touched, g_strdup(id));
	}
	if (strcmp(op, "room") == 0) {
		struct store_room *room = json_object_object_get_ex(n, "room", &v) ? store_redis_room_parse(v) : NULL;
		if (!room)
			return false;
		struct log_fields f = { .room = room->id };
		log_event(LOG_INFO, LOG_EVENT_NONE, &f, "room created on instance %s", from);
		rooms_apply_room(s->p.rooms, room);
	} else if (strcmp(op, "delete_room") == 0 && room_id) {
		rooms_apply_delete(s->p.rooms, room_id);
		struct log_fields f = { .room = room_id };
		log_event(LOG_NOTICE, LOG_EVENT_NONE, &f, "room deleted on instance %s", from);
		close_room(s, room_id, "deleted");
	} else if (strcmp(op, "key") == 0) {
		struct store_key *key = json_object_object_get_ex(n, "key", &v) ? store_redis_key_parse(v) : NULL;
		if (!key)
			return false;
		log_info("API key %s created on instance %s", key->key_id, from);
		rooms_apply_key(s->p.rooms, key);
	} else if (strcmp(op, "revoke") == 0 && str_of(n, "key_id")) {
		const char *key_id = str_of(n, "key_id");
		rooms_apply_revoke(s->p.rooms, key_id, int_of(n, "when"));
		log_notice("API key %s revoked on instance %s", key_id, from);
		close_key(s, key_id);
	} else if ((strcmp(op, "member") == 0 || strcmp(op, "unmember") == 0) && room_id && account) {
		bool add = strcmp(op, "member") == 0;
		rooms_apply_member(s->p.rooms, room_id, account, int_of(n, "added_at"), add);
		struct log_fields f = { .room = room_id };
		log_event(LOG_INFO, LOG_EVENT_NONE, &f, "account %s %s the room on instance %s", account,
			  add ? "added to" : "removed from", from);
	} else if (strcmp(op, "pubkey") == 0) {
		struct store_pubkey *k = json_object_object_get_ex(n, "pubkey", &v) ? store_redis_pubkey_parse(v) : NULL;
		const struct store_pubkey *out;
		if (!k)
			return false;
		pubkeys_add(s->p.pubkeys, k->account, k->username, k->public_key, k->device_name, 0,
			    k->created_at, &out);
		store_pubkey_free(k);
	} else {
		return false;
	}
	return true;
}

/* --- the subscription --- */

static void on_message(redisAsyncContext *ac, void *r, void *data)
{
	struct rsync *s = data;
	redisReply *reply = r;

	if (!reply || s->stopping)
		return;
	if (reply->type == REDIS_REPLY_ERROR) { /* NOAUTH, ACL: try again later, said once */
		if (!s->lost)
			log_err("room store: Redis refused SUBSCRIBE: %s", reply->str);
		redisAsyncDisconnect(ac);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	const char *kind = reply->element[0]->str;
	if (kind && strcmp(kind, "subscribe") == 0) {
		s->subscribed = true;
		if (s->lost) {
			struct log_fields f = { .code = "redis" };
			log_event(LOG_NOTICE, LOG_EVENT_BACKEND_RESTORED, &f,
				  "room store: change subscription restored; reloading");
			s->lost = false;
		}
		/* Anything written before now, and whose notice was missed, is in it. */
		if (!s->reloads)
			g_hash_table_remove_all(s->touched);
		if (store_reload(s->p.store, on_reloaded, s) == 0)
			s->reloads++;
		else
			log_err("room store: cannot queue a reload");
	} else if (kind && strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
		json_object *n = json_tokener_parse(reply->element[2]->str);
		if (!n || !json_object_is_type(n, json_type_object) || !apply(s, n))
			log_warning("room store: ignored a malformed change notice");
		json_object_put(n);
	}
}

static void on_auth(redisAsyncContext *ac, void *r, void *data)
{
	struct rsync *s = data;
	redisReply *reply = r;

	if (reply && reply->type == REDIS_REPLY_ERROR) {
		if (!s->lost) /* once per outage, not per retry */
			log_err("room store: Redis refused AUTH: %s", reply->str);
		redisAsyncDisconnect(ac);
	}
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rsync *s = ac->data;

	if (status == REDIS_OK)
		return;
	/* hiredis frees the context after this returns. */
	s->ac = NULL;
	lost(s, ac->errstr[0] ? ac->errstr : "cannot connect");
	maybe_free(s);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rsync *s = ac->data;

	s->ac = NULL;
	if (!s->stopping)
		lost(s, status == REDIS_OK ? "disconnected" : ac->errstr[0] ? ac->errstr : "connection lost");
	maybe_free(s);
}

static void try_connect(struct rsync *s)
{
	redisAsyncContext *ac;

	if (s->stopping || s->ac)
		return;
	ac = s->url.path ? redisAsyncConnectUnix(s->url.path) : redisAsyncConnect(s->url.host, s->url.port);
	if (!ac || ac->err) {
		g_autofree char *why = g_strdup(ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		lost(s, why);
		return;
	}
	ac->data = s;
	if (redisLibuvAttach(ac, s->p.loop) != REDIS_OK) {
		redisAsyncFree(ac);
		lost(s, "cannot attach to the loop");
		return;
	}
	s->ac = ac;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (s->password)
		redisAsyncCommand(ac, on_auth, s, "AUTH %s", s->password);
	redisAsyncCommand(ac, on_message, s, "SUBSCRIBE %s", s->channel);
}

int rsync_start(const struct rsync_params *p, struct rsync **out, GError **err)
{
	struct rsync *s = g_new0(struct rsync, 1);
	const char *why;

	if (redisurl_parse(p->store_params->redis, &s->url, &why) < 0) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "[cluster] redis: %s", why);
		g_free(s);
		return -EINVAL;
	}
	s->p = *p;
	s->password = g_strdup(p->store_params->password);
	s->channel = g_strconcat(p->store_params->key_prefix ? p->store_params->key_prefix : "",
				 STORE_REDIS_CHANNEL, NULL);
	s->instance = g_strdup(p->store_params->instance_id ? p->store_params->instance_id : "");
	s->p.store_params = NULL;
	s->touched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	uv_timer_init(p->loop, &s->retry);
	s->retry.data = s;
	s->timer_open = true;
	try_connect(s);
	*out = s;
	return 0;
}

bool rsync_connected(struct rsync *s)
{
	return s && s->subscribed;
}

void rsync_stop(struct rsync *s)
{
	if (!s)
		return;
	s->stopping = true;
	uv_timer_stop(&s->retry);
	uv_close((uv_handle_t *)&s->retry, on_timer_closed);
	if (s->ac)
		redisAsyncDisconnect(s->ac); /* on_disconnect comes, now or later */
	maybe_free(s);
}

char *rsync_instance_id(const char *configured)
{
	if (configured)
		return g_strdup(configured);
	/* Unique across restarts too: a restarted instance is a new one. */
	return g_strdup_printf("%s-%08x", g_get_host_name(), g_random_int());
}
