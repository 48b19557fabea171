/* cluster: see cluster.h and docs/cluster-design.md. */
#include "cluster/cluster.h"

#include "cluster/cluster_lua.h"
#include "util/json.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/redisurl.h"

#include <errno.h>
#include <glib.h>
#include <hiredis.h>
#include <async.h>
#include <adapters/libuv.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(CLUSTER_REASON__COUNT == METRICS_CLUSTER_REASONS, "metrics.h counts the reasons");

enum script { S_CLAIM, S_UPDATE, S_WITHDRAW, S_LOAD, S_HEARTBEAT, S_SWEEP, S_PRUNE, S__COUNT };
static const char *const script_text[S__COUNT] = {
	[S_CLAIM] = CLUSTER_LUA_CLAIM,         [S_UPDATE] = CLUSTER_LUA_UPDATE,
	[S_WITHDRAW] = CLUSTER_LUA_WITHDRAW,   [S_LOAD] = CLUSTER_LUA_LOAD,
	[S_HEARTBEAT] = CLUSTER_LUA_HEARTBEAT, [S_SWEEP] = CLUSTER_LUA_SWEEP,
	[S_PRUNE] = CLUSTER_LUA_PRUNE,
};

enum state { ST_DOWN, ST_CONNECTING, ST_UP };
enum view_state { V_DOWN, V_SUBSCRIBING, V_LOADING, V_READY };

/* One peer as a view holds it. */
struct vpeer {
	char *value; /* the hash value, owned; the fields below point into a copy */
	char *fields; /* "INSTANCE\0EPOCH\0CONNECTED_AT\0ROLE\0PRINCIPAL\0META" */
	const char *instance, *epoch, *role, *principal, *meta;
	int64_t connected_at;
	/* Missing from the first snapshot after an outage (a Redis that came
	 * back empty): kept until then, unless its instance announces it
	 * again; 0 once it is confirmed. */
	uint64_t unconfirmed_until_ms;
};

struct view {
	char *room;
	char *channel;
	GHashTable *peers; /* peer id -> struct vpeer */
	uint64_t seq;       /* of the last change applied */
	enum view_state st;
	uint64_t load_gen;  /* which load a reply answers */
	GQueue buffer;      /* GBytes events that came while loading */
	bool overflowed;    /* some were dropped: load again */
	bool after_outage;  /* the next load is the first since we reconnected */
	unsigned unconfirmed; /* peers with unconfirmed_until_ms set */
};

struct local {
	char *room, *peer, *role, *meta, *principal;
	int64_t connected_at;
	uint64_t epoch;
	unsigned max_peers; /* the first claim's bounds only */
	bool admin;
};

struct cluster {
	uv_loop_t *loop;
	struct cluster_ops ops;
	void *user;
	char *host, *path, *password, *prefix, *me;
	int port, db;
	unsigned ttl_ms, max_outstanding, max_buffered, reconnect_max_ms;
	size_t max_payload;
	char sha[S__COUNT][41];
	char *my_channel, *my_set, *my_new_set;

	redisAsyncContext *cmd, *sub;
	enum state st;
	uint64_t gen;           /* bumped on every connection attempt and loss */
	bool hb_ok, own_subscribed;
	/* This connection's first heartbeat found our key gone: Redis came
	 * back empty (or we were away past the ttl).  Room loads are sent
	 * after that heartbeat on the same connection, so they know. */
	bool redis_forgot;
	unsigned outstanding;   /* commands in flight on cmd */
	uint64_t busy_since_ms; /* a reply or the first command since idle */
	uint64_t connect_started_ms, last_hb_ms, last_ping_ms;
	unsigned backoff_ms;
	bool freeing;
	uint64_t last_epoch;
	struct log_rate error_log;

	GHashTable *locals;    /* "room\npeer" -> struct local */
	GHashTable *views;     /* room -> struct view */
	GHashTable *channels;  /* channel -> struct view (borrowed) */
	GHashTable *unsubs;    /* channel -> UNSUBSCRIBEs not confirmed yet */
	GArray *instances;     /* struct cluster_instance_info, from the last sweep */

	uv_timer_t tick, retry;
	int open_handles;
};

enum req_kind { R_PLAIN, R_FATAL, R_HEARTBEAT, R_SWEEP, R_CLAIM, R_LOAD, R_FORWARD };
struct req {
	struct cluster *c;
	uint64_t gen;
	enum req_kind kind;
	char *a, *b;    /* claim: room, peer; load: room; forward: from, to */
	char *tag;      /* forward: the sender's tag, echoed in a failure */
	uint64_t epoch; /* claim; load: its load_gen */
	bool reannounce;
};

static const char *const reason_names[CLUSTER_REASON__COUNT] = {
	[CLUSTER_OK] = "ok", [CLUSTER_GONE] = "gone", [CLUSTER_QUEUE_FULL] = "queue_full",
	[CLUSTER_CLOSING] = "closing", [CLUSTER_UNREACHABLE] = "unreachable",
	[CLUSTER_TOO_LARGE] = "too_large", [CLUSTER_BUSY] = "busy",
};

const char *cluster_reason_name(enum cluster_reason r)
{
	return (unsigned)r < CLUSTER_REASON__COUNT ? reason_names[r] : "unknown";
}

static uint64_t now_ms(void)
{
	return metrics_now_ns() / 1000000u;
}

static int64_t realtime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- keys --- */

static char *room_key(const struct cluster *c, const char *room, const char *what)
{
	return g_strdup_printf("%s{%s}:%s", c->prefix, room, what);
}

static bool clean(const char *s)
{
	return s && !strchr(s, '\n');
}

/* --- requests on the command connection --- */

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static struct req *req_new(struct cluster *c, enum req_kind kind)
{
	struct req *q = g_new0(struct req, 1);
	q->c = c;
	q->gen = c->gen;
	q->kind = kind;
	return q;
}

static void req_free(struct req *q)
{
	g_free(q->a);
	g_free(q->b);
	g_free(q->tag);
	g_free(q);
}

/* Sends ARGV on the command connection; Q (owned) gets the reply. */
static int send_argv(struct cluster *c, struct req *q, int argc, const char **argv,
		     const size_t *lens)
{
	if (!c->cmd || redisAsyncCommandArgv(c->cmd, on_reply, q, argc, argv, lens) != REDIS_OK) {
		req_free(q);
		return -ENOTCONN;
	}
	if (c->outstanding++ == 0)
		c->busy_since_ms = now_ms();
	return 0;
}

/* EVALSHA of script S with NKEYS keys then the other arguments. */
static int eval(struct cluster *c, struct req *q, enum script s, int nargs, const char **args,
		const size_t *lens, int nkeys)
{
	const char *argv[24];
	size_t argl[24];
	char nk[8];

	g_assert(nargs + 3 <= 24);
	snprintf(nk, sizeof nk, "%d", nkeys);
	argv[0] = "EVALSHA", argl[0] = 7;
	argv[1] = c->sha[s], argl[1] = 40;
	argv[2] = nk, argl[2] = strlen(nk);
	for (int i = 0; i < nargs; i++) {
		argv[3 + i] = args[i];
		argl[3 + i] = lens ? lens[i] : strlen(args[i]);
	}
	return send_argv(c, q, nargs + 3, argv, argl);
}

static void conn_lost(struct cluster *c, const char *why);
static void view_start_load(struct cluster *c, struct view *v);
static void reannounce_all(struct cluster *c);

/* --- views --- */

static void vpeer_free(void *p)
{
	struct vpeer *v = p;
	g_free(v->value);
	g_free(v->fields);
	g_free(v);
}

/* VALUE: "INSTANCE\nEPOCH\nCONNECTED_AT\nROLE\nPRINCIPAL\nMETA"; NULL if
 * malformed. */
static struct vpeer *vpeer_parse(const char *value, size_t len)
{
	struct vpeer *v = g_new0(struct vpeer, 1);
	char *f[6];
	char *s;

	v->value = g_strndup(value, len);
	v->fields = s = g_strndup(value, len);
	for (int i = 0; i < 5; i++) {
		f[i] = s;
		s = strchr(s, '\n');
		if (!s) {
			vpeer_free(v);
			return NULL;
		}
		*s++ = '\0';
	}
	f[5] = s;
	v->instance = f[0], v->epoch = f[1], v->role = f[3], v->principal = f[4], v->meta = f[5];
	v->connected_at = g_ascii_strtoll(f[2], NULL, 10);
	return v;
}

static bool is_remote(const struct cluster *c, const struct vpeer *v)
{
	return strcmp(v->instance, c->me) != 0;
}

static void tell_upsert(struct cluster *c, const char *room, const char *peer, const struct vpeer *v)
{
	struct cluster_peer p = {
		.room = room, .peer = peer, .instance = v->instance, .role = v->role, .meta = v->meta,
		.principal = v->principal, .connected_at = v->connected_at, .epoch = g_ascii_strtoull(v->epoch, NULL, 10),
	};
	if (c->ops.peer_upsert && !c->freeing)
		c->ops.peer_upsert(c->user, &p);
}

static void tell_remove(struct cluster *c, const char *room, const char *peer, const char *instance,
			const char *why)
{
	if (c->ops.peer_remove && !c->freeing)
		c->ops.peer_remove(c->user, room, peer, instance, why);
}

/* Replaces PEER's entry in V with NV (owned; NULL removes it, for WHY)
 * and tells the daemon what changed among other instances' peers. */
static void view_set(struct cluster *c, struct view *v, const char *peer, struct vpeer *nv,
		     const char *why)
{
	struct vpeer *old = g_hash_table_lookup(v->peers, peer);
	bool old_remote = old && is_remote(c, old);

	if (old && old->unconfirmed_until_ms) {
		old->unconfirmed_until_ms = 0;
		v->unconfirmed--;
	}
	if (old && nv && !strcmp(old->value, nv->value)) {
		vpeer_free(nv); /* nothing happened to it: nothing to tell */
		return;
	}
	if (old_remote && (!nv || strcmp(old->instance, nv->instance)))
		tell_remove(c, v->room, peer, old->instance, nv ? "replaced" : why);
	if (nv) {
		char *key = g_strdup(peer);
		g_hash_table_replace(v->peers, key, nv);
		if (is_remote(c, nv))
			tell_upsert(c, v->room, key, nv);
	} else if (old) {
		g_hash_table_remove(v->peers, peer);
	}
}

/* One room event; false on a malformed one.  *SEQ is set first. */
static bool event_parse(const char *s, size_t len, char *type, uint64_t *seq, int64_t *ts,
			const char **peer, size_t *peer_len, const char **rest, size_t *rest_len)
{
	const char *end = s + len, *p = s, *nl;
	uint64_t nums[2];

	if (len < 2 || (s[0] != 'U' && s[0] != 'R') || s[1] != '\n')
		return false;
	*type = s[0];
	p = s + 2;
	for (int i = 0; i < 2; i++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return false;
		nums[i] = g_ascii_strtoull(p, NULL, 10);
		p = nl + 1;
	}
	nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		return false;
	*seq = nums[0];
	*ts = (int64_t)nums[1];
	*peer = p, *peer_len = (size_t)(nl - p);
	*rest = nl + 1, *rest_len = (size_t)(end - nl - 1);
	return true;
}

static void view_apply(struct cluster *c, struct view *v, char type, const char *peer, size_t plen,
		       const char *rest, size_t rlen)
{
	g_autofree char *id = g_strndup(peer, plen);

	if (type == 'U') {
		struct vpeer *nv = vpeer_parse(rest, rlen);
		if (nv)
			view_set(c, v, id, nv, NULL);
	} else {
		/* "INSTANCE\nWHY" */
		const char *nl = memchr(rest, '\n', rlen);
		size_t ilen = nl ? (size_t)(nl - rest) : rlen;
		g_autofree char *why = nl ? g_strndup(nl + 1, rlen - ilen - 1) : NULL;
		struct vpeer *old = g_hash_table_lookup(v->peers, id);
		if (old && strlen(old->instance) == ilen && !memcmp(old->instance, rest, ilen))
			view_set(c, v, id, NULL, why ? why : "disconnected");
	}
}

/* A live event for V; false if it showed a gap (a reload started). */
static bool view_event(struct cluster *c, struct view *v, const char *s, size_t len, bool live)
{
	char type;
	uint64_t seq;
	int64_t ts;
	const char *peer, *rest;
	size_t plen, rlen;

	if (!event_parse(s, len, &type, &seq, &ts, &peer, &plen, &rest, &rlen))
		return true;
	if (seq <= v->seq)
		return true; /* in the snapshot already */
	if (seq != v->seq + 1) {
		view_start_load(c, v);
		return false;
	}
	v->seq = seq;
	view_apply(c, v, type, peer, plen, rest, rlen);
	if (live) {
		int64_t lag = realtime_us() - ts;
		metrics_observe(&metrics.cluster_lag, lag > 0 ? (uint64_t)lag * 1000u : 0);
	}
	return true;
}

static void view_clear_buffer(struct view *v)
{
	GBytes *b;
	while ((b = g_queue_pop_head(&v->buffer)))
		g_bytes_unref(b);
	v->overflowed = false;
}

static void view_start_load(struct cluster *c, struct view *v)
{
	g_autofree char *hash = room_key(c, v->room, "peers");
	g_autofree char *seq = room_key(c, v->room, "seq");
	const char *args[] = { hash, seq };
	struct req *q = req_new(c, R_LOAD);

	view_clear_buffer(v);
	v->st = V_LOADING;
	q->a = g_strdup(v->room);
	q->epoch = ++v->load_gen;
	eval(c, q, S_LOAD, 2, args, NULL, 2);
}

static void view_loaded(struct cluster *c, struct view *v, redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY) {
		conn_lost(c, "unexpected reply to a room load");
		return;
	}
	redisReply *h = r->element[1];
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	for (size_t i = 0; i + 1 < h->elements; i += 2) {
		struct vpeer *nv = vpeer_parse(h->element[i + 1]->str, h->element[i + 1]->len);
		char *id = g_strndup(h->element[i]->str, h->element[i]->len);
		g_hash_table_add(seen, id);
		if (nv)
			view_set(c, v, id, nv, NULL);
	}
	/* what the snapshot no longer has */
	GHashTableIter it;
	char *id;
	struct vpeer *p;
	g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);
	g_hash_table_iter_init(&it, v->peers);
	while (g_hash_table_iter_next(&it, (void **)&id, (void **)&p))
		if (!g_hash_table_contains(seen, id))
			g_ptr_array_add(gone, g_strdup(id));
	for (guint i = 0; i < gone->len; i++) {
		p = g_hash_table_lookup(v->peers, gone->pdata[i]);
		/* After Redis forgot everything the snapshot may predate the
		 * other instances' announcing again: their peers are not told
		 * gone unless they stay missing for an instance_ttl
		 * (view_expire).  After a mere blip Redis kept them, and what
		 * is missing was removed. */
		if (v->after_outage && c->redis_forgot && is_remote(c, p)) {
			if (!p->unconfirmed_until_ms)
				v->unconfirmed++;
			p->unconfirmed_until_ms = now_ms() + c->ttl_ms;
			continue;
		}
		view_set(c, v, gone->pdata[i], NULL, "disconnected");
	}
	v->after_outage = false;
	v->seq = (uint64_t)r->element[0]->integer;

	/* then what came during the load, newer than the snapshot */
	bool reload = v->overflowed;
	GBytes *b;
	while (!reload && (b = g_queue_pop_head(&v->buffer))) {
		gsize len;
		const char *s = g_bytes_get_data(b, &len);
		v->st = V_READY;
		reload = !view_event(c, v, s, len, true);
		g_bytes_unref(b);
	}
	if (reload) {
		/* a gap found above has started the next load already */
		if (v->overflowed || v->st != V_LOADING)
			view_start_load(c, v);
		return;
	}
	v->st = V_READY;
	if (c->ops.view_ready && !c->freeing)
		c->ops.view_ready(c->user, v->room, 0);
}

static void view_free(void *p)
{
	struct view *v = p;
	view_clear_buffer(v);
	g_hash_table_destroy(v->peers);
	g_free(v->room);
	g_free(v->channel);
	g_free(v);
}

static void subscribe(struct cluster *c, const char *channel);

/* --- the subscription connection --- */

static void on_instance_message(struct cluster *c, const char *s, size_t len)
{
	const char *end = s + len;
	const char *f[5];
	size_t fl[5];
	int want, n = 0;
	const char *p;

	if (len == 1 && s[0] == 'P') {
		c->last_ping_ms = now_ms();
		return;
	}
	if (len < 2 || s[1] != '\n')
		return;
	want = s[0] == 'F' ? 5 : s[0] == 'X' ? 4 : s[0] == 'K' ? 4 : -1;
	if (want < 0)
		return;
	/* WANT newline-terminated fields after the type, then the rest */
	for (p = s + 2; n < want; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl && n == want - 1 && s[0] != 'F')
			nl = end; /* the last field of X and K ends the message */
		if (!nl)
			return;
		f[n] = p, fl[n] = (size_t)(nl - p);
		p = nl < end ? nl + 1 : end;
	}
	g_autofree char *a = g_strndup(f[0], fl[0]);
	g_autofree char *b = g_strndup(f[1], fl[1]);
	g_autofree char *d = g_strndup(f[2], fl[2]);
	if (s[0] == 'F') {
		/* F from_instance from_peer to_peer epoch tag bytes */
		g_autofree char *ep = g_strndup(f[3], fl[3]);
		g_autofree char *tag = g_strndup(f[4], fl[4]);
		uint64_t epoch = g_ascii_strtoull(ep, NULL, 10);
		enum cluster_reason r = CLUSTER_GONE;
		metrics_inc(cluster_received);
		if (c->ops.deliver && !c->freeing)
			r = c->ops.deliver(c->user, d, epoch, a, b, p, (size_t)(end - p));
		if (r != CLUSTER_OK && c->cmd) { /* also while connecting */
			g_autofree char *ch = g_strdup_printf("%sinst:{%s}:msg", c->prefix, a);
			g_autofree char *msg = g_strdup_printf("X\n%s\n%s\n%s\n%d", b, d, tag, (int)r);
			const char *argv[] = { "PUBLISH", ch, msg };
			send_argv(c, req_new(c, R_PLAIN), 3, argv, NULL);
		}
	} else if (s[0] == 'X') {
		/* X from_peer to_peer tag reason */
		g_autofree char *why = g_strndup(f[3], fl[3]);
		int r = atoi(why);
		if (r <= 0 || r >= CLUSTER_REASON__COUNT)
			r = CLUSTER_GONE;
		metrics_inc(cluster_forward_failures[r]);
		if (c->ops.delivery_failed && !c->freeing)
			c->ops.delivery_failed(c->user, a, b, d, (enum cluster_reason)r);
	} else {
		/* K room peer epoch by_instance: our session lost its id */
		g_autofree char *by = g_strndup(f[3], fl[3]);
		g_autofree char *key = g_strdup_printf("%s\n%s", a, b);
		uint64_t epoch = g_ascii_strtoull(d, NULL, 10);
		struct local *l = g_hash_table_lookup(c->locals, key);
		if (!l || l->epoch != epoch)
			return;
		g_hash_table_remove(c->locals, key);
		if (c->ops.replaced && !c->freeing)
			c->ops.replaced(c->user, a, b, epoch, by);
	}
}

static void maybe_up(struct cluster *c)
{
	if (c->st != ST_CONNECTING || !c->hb_ok || !c->own_subscribed)
		return;
	c->st = ST_UP;
	c->backoff_ms = 0;
	c->last_ping_ms = c->last_hb_ms = now_ms();
	metrics_set(cluster_up, true);
	reannounce_all(c);
	if (c->ops.state && !c->freeing)
		c->ops.state(c->user, true);
	/* last: whoever waits for this line (an operator, a test) finds the
	 * daemon up already, /ready included (the admin port's own thread) */
	log_event(LOG_NOTICE, LOG_EVENT_BACKEND_RESTORED, NULL, "cluster: Redis reachable, instance %s",
		  c->me);
}

static void on_sub(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cluster *c = privdata;
	redisReply *rep = r;

	if (!rep || ac != c->sub)
		return; /* a connection that is going away */
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = rep->element[0]->str;
	g_autofree char *ch = g_strndup(rep->element[1]->str, rep->element[1]->len);
	bool mine = !strcmp(ch, c->my_channel);

	if (!strcmp(kind, "unsubscribe")) {
		guint n = GPOINTER_TO_UINT(g_hash_table_lookup(c->unsubs, ch));
		if (n > 1)
			g_hash_table_insert(c->unsubs, g_strdup(ch), GUINT_TO_POINTER(n - 1));
		else
			g_hash_table_remove(c->unsubs, ch);
		return;
	}
	if (!strcmp(kind, "subscribe")) {
		if (mine) {
			c->own_subscribed = true;
			maybe_up(c);
			return;
		}
		/* the confirmation of a subscription since cancelled: its
		 * unsubscribe is still to come, and a newer subscribe after it */
		if (g_hash_table_contains(c->unsubs, ch))
			return;
		struct view *v = g_hash_table_lookup(c->channels, ch);
		if (v && v->st == V_SUBSCRIBING)
			view_start_load(c, v);
		return;
	}
	if (strcmp(kind, "message") || rep->element[2]->type != REDIS_REPLY_STRING)
		return;
	if (mine) {
		on_instance_message(c, rep->element[2]->str, rep->element[2]->len);
		return;
	}
	struct view *v = g_hash_table_lookup(c->channels, ch);
	if (!v)
		return;
	if (v->st == V_READY) {
		view_event(c, v, rep->element[2]->str, rep->element[2]->len, true);
	} else if (v->st == V_LOADING || v->st == V_SUBSCRIBING) {
		if (v->overflowed)
			return;
		if (g_queue_get_length(&v->buffer) >= c->max_buffered) {
			/* bounded: drop them all and load again afterwards */
			view_clear_buffer(v);
			v->overflowed = true;
			metrics_inc(limit_hits[LIMIT_CLUSTER_BUFFERED_EVENTS]);
			return;
		}
		g_queue_push_tail(&v->buffer, g_bytes_new(rep->element[2]->str, rep->element[2]->len));
	}
}

/* AUTH on the subscription connection, answered before any SUBSCRIBE. */
static void on_sub_auth(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cluster *c = privdata;
	redisReply *rep = r;

	if (rep && ac == c->sub && rep->type == REDIS_REPLY_ERROR) {
		log_warning("cluster: Redis: %s", rep->str);
		conn_lost(c, rep->str);
	}
}

static void subscribe(struct cluster *c, const char *channel)
{
	if (c->sub)
		redisAsyncCommand(c->sub, on_sub, c, "SUBSCRIBE %s", channel);
}

/* --- replies on the command connection --- */

static void claim_lost(struct cluster *c, struct req *q, const char *by)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", q->a, q->b);
	struct local *l = g_hash_table_lookup(c->locals, key);

	if (!l || l->epoch != q->epoch)
		return;
	g_hash_table_remove(c->locals, key);
	if (c->ops.replaced && !c->freeing)
		c->ops.replaced(c->user, q->a, q->b, q->epoch, by);
}

/* A new session's claim was answered: refused ones are no longer ours. */
static void claimed(struct cluster *c, struct req *q, enum cluster_claim res, const char *admin)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", q->a, q->b);
	struct local *l = g_hash_table_lookup(c->locals, key);

	if (!q->epoch || !l || l->epoch != q->epoch)
		return; /* withdrawn or replaced meanwhile: nobody waits */
	if (res != CLUSTER_CLAIMED)
		g_hash_table_remove(c->locals, key);
	if (c->ops.claimed && !c->freeing)
		c->ops.claimed(c->user, q->a, q->b, q->epoch, res, admin);
}

/* The sweep's per-instance peer counts, for rtcsignalctl status. */
static void publish_instance_peers(const struct cluster *c)
{
	g_autoptr(GString) s = g_string_new("{");
	for (guint i = 0; i < c->instances->len; i++) {
		const struct cluster_instance_info *in = &g_array_index(c->instances, struct cluster_instance_info, i);
		if (i)
			g_string_append_c(s, ',');
		json_append_string(s, in->id, strlen(in->id));
		g_string_append_printf(s, ":%lld", in->peers);
	}
	g_string_append_c(s, '}');
	metrics_set_cluster_peers(s->str);
}

static void instances_clear(struct cluster *c)
{
	for (guint i = 0; i < c->instances->len; i++)
		g_free(g_array_index(c->instances, struct cluster_instance_info, i).id);
	g_array_set_size(c->instances, 0);
}

static void forward_failed(struct cluster *c, const struct req *q, enum cluster_reason r)
{
	metrics_inc(cluster_forward_failures[r]);
	if (c->ops.delivery_failed && !c->freeing)
		c->ops.delivery_failed(c->user, q->a, q->b, q->tag, r);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct req *q = privdata;
	struct cluster *c = q->c;
	redisReply *rep = r;
	(void)ac;

	if (q->gen != c->gen || !rep) {
		/* lost with its connection: a forward may or may not have gone */
		if (q->kind == R_FORWARD)
			forward_failed(c, q, CLUSTER_UNREACHABLE);
		/* a claim too: the register goes on as while Redis is down,
		 * and the re-announce settles the id by epoch */
		if (q->kind == R_CLAIM && !q->reannounce)
			claimed(c, q, CLUSTER_CLAIMED, NULL);
		goto out;
	}
	if (q->kind == R_CLAIM && !q->reannounce && rep->type == REDIS_REPLY_ERROR)
		claimed(c, q, CLUSTER_CLAIMED, NULL); /* it goes on as while Redis is down */
	if (--c->outstanding)
		c->busy_since_ms = now_ms();
	if (rep->type == REDIS_REPLY_ERROR) {
		unsigned skipped;
		/* NOSCRIPT (a SCRIPT FLUSH), AUTH/SELECT/SCRIPT LOAD refused, or
		 * no heartbeat: start over.  Anything else (one bad entry) is
		 * that command's failure only: reconnecting would not help. */
		if (q->kind == R_FATAL || q->kind == R_HEARTBEAT || !strncmp(rep->str, "NOSCRIPT", 8)) {
			log_warning("cluster: Redis: %s", rep->str);
			conn_lost(c, rep->str);
		} else if (log_rate_due(&c->error_log, now_ms(), &skipped)) {
			log_warning("cluster: Redis: %s (%u more not logged)", rep->str, skipped);
		}
		goto out;
	}
	switch (q->kind) {
	case R_PLAIN:
	case R_FATAL:
		break;
	case R_HEARTBEAT:
		if (c->st == ST_CONNECTING) {
			c->hb_ok = true;
			c->redis_forgot = rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
			maybe_up(c);
		} else if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 &&
			   g_hash_table_size(c->locals)) {
			/* our key had expired: we may have been swept */
			log_warning("cluster: instance %s was presumed dead; announcing its peers again",
				    c->me);
			reannounce_all(c);
		}
		break;
	case R_SWEEP:
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
			redisReply *l = rep->element[0], *g = rep->element[1];
			instances_clear(c);
			for (size_t i = 0; i + 1 < l->elements; i += 2) {
				struct cluster_instance_info in = {
					.id = g_strndup(l->element[i]->str, l->element[i]->len),
					.peers = l->element[i + 1]->integer,
				};
				g_array_append_val(c->instances, in);
			}
			metrics_set(cluster_instances, (int_fast64_t)c->instances->len);
			publish_instance_peers(c);
			for (size_t i = 0; i + 1 < g->elements; i += 2)
				log_notice("cluster: instance %s expired, %lld of its peers removed",
					   g->element[i]->str, g->element[i + 1]->integer);
		}
		break;
	case R_CLAIM:
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
		    rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 0 &&
		    q->reannounce) {
			claim_lost(c, q, rep->element[1]->str);
		} else if (!q->reannounce && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
			   rep->element[0]->type == REDIS_REPLY_INTEGER) {
			const char *third = rep->element[2]->type == REDIS_REPLY_STRING ? rep->element[2]->str : "";
			if (rep->element[0]->integer == 1)
				claimed(c, q, CLUSTER_CLAIMED, *third ? third : NULL);
			else
				claimed(c, q, strcmp(third, "full") == 0 ? CLUSTER_CLAIM_FULL : CLUSTER_CLAIM_TAKEN, NULL);
			q->epoch = 0; /* answered */
		}
		break;
	case R_LOAD: {
		struct view *v = g_hash_table_lookup(c->views, q->a);
		if (v && v->st == V_LOADING && v->load_gen == q->epoch)
			view_loaded(c, v, rep);
		break;
	}
	case R_FORWARD:
		/* nobody subscribed to that instance's channel: it is gone */
		if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
			forward_failed(c, q, CLUSTER_GONE);
		break;
	}
out:
	req_free(q);
}

/* --- claims --- */

static char *peer_value(const struct cluster *c, const struct local *l)
{
	return g_strdup_printf("%s\n%" PRIu64 "\n%" PRId64 "\n%s\n%s\n%s", c->me, l->epoch,
			       l->connected_at, l->role, l->principal, l->meta);
}

static void send_claim(struct cluster *c, const struct local *l, bool reannounce)
{
	g_autofree char *hash = room_key(c, l->room, "peers");
	g_autofree char *seq = room_key(c, l->room, "seq");
	g_autofree char *ch = room_key(c, l->room, "events");
	g_autofree char *value = peer_value(c, l);
	g_autofree char *epoch = g_strdup_printf("%" PRIu64, l->epoch);
	g_autofree char *ts = g_strdup_printf("%" PRId64, realtime_us());
	g_autofree char *admin = room_key(c, l->room, "admin");
	g_autofree char *max = g_strdup_printf("%u", reannounce ? 0 : l->max_peers);
	const char *args[] = { hash, seq, c->my_set, c->my_new_set, admin, l->room, l->peer, c->me, epoch,
			       value, reannounce ? "r" : "f", ts, ch, c->prefix, l->principal, max,
			       !reannounce && l->admin ? "1" : "0" };
	struct req *q = req_new(c, R_CLAIM);

	q->a = g_strdup(l->room);
	q->b = g_strdup(l->peer);
	q->epoch = l->epoch;
	q->reannounce = reannounce;
	eval(c, q, S_CLAIM, G_N_ELEMENTS(args), args, NULL, 5);
}

/* Everything we hold, again (Redis may have restarted empty, or swept us),
 * then whatever of ours Redis has that we no longer hold goes.  Commands
 * on one connection run in order, so a claim sent after this cannot be
 * pruned by it. */
static void reannounce_all(struct cluster *c)
{
	const char *del[] = { "DEL", c->my_new_set };
	g_autofree char *ts = g_strdup_printf("%" PRId64, realtime_us());
	const char *args[] = { c->my_set, c->my_new_set, c->prefix, c->me, ts };
	GHashTableIter it;
	struct local *l;

	send_argv(c, req_new(c, R_PLAIN), 2, del, NULL);
	g_hash_table_iter_init(&it, c->locals);
	while (g_hash_table_iter_next(&it, NULL, (void **)&l))
		send_claim(c, l, true);
	eval(c, req_new(c, R_PLAIN), S_PRUNE, G_N_ELEMENTS(args), args, NULL, 2);
}

/* --- connections --- */

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct cluster *c = ac->data;
	(void)status;

	if (ac == c->cmd)
		c->cmd = NULL;
	else if (ac == c->sub)
		c->sub = NULL;
	else
		return;
	conn_lost(c, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK)
		on_disconnect(ac, status); /* hiredis frees it after this */
}

static redisAsyncContext *open_conn(struct cluster *c)
{
	redisAsyncContext *ac = c->path ? redisAsyncConnectUnix(c->path)
					: redisAsyncConnect(c->host, c->port);
	if (!ac)
		return NULL;
	if (ac->err || redisLibuvAttach(ac, c->loop) != REDIS_OK) {
		log_debug("cluster: cannot connect to Redis: %s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = c;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

static void send_heartbeat(struct cluster *c)
{
	char ttl[16];
	snprintf(ttl, sizeof ttl, "%u", c->ttl_ms);
	const char *args[] = { c->prefix, c->me, ttl };
	c->last_hb_ms = now_ms();
	eval(c, req_new(c, R_HEARTBEAT), S_HEARTBEAT, 3, args, NULL, 0);
}

static void start_connect(struct cluster *c)
{
	c->gen++;
	c->st = ST_CONNECTING;
	c->connect_started_ms = now_ms();
	c->hb_ok = c->own_subscribed = false;
	c->cmd = open_conn(c);
	c->sub = c->cmd ? open_conn(c) : NULL;
	if (!c->cmd || !c->sub) {
		conn_lost(c, "cannot connect");
		return;
	}
	/* queued now, written once connected, answered in this order */
	if (c->password) {
		const char *auth[] = { "AUTH", c->password };
		send_argv(c, req_new(c, R_FATAL), 2, auth, NULL);
		redisAsyncCommandArgv(c->sub, on_sub_auth, c, 2, auth, NULL);
	}
	if (c->db) {
		char db[16];
		snprintf(db, sizeof db, "%d", c->db);
		const char *sel[] = { "SELECT", db };
		send_argv(c, req_new(c, R_FATAL), 2, sel, NULL);
	}
	for (int s = 0; s < S__COUNT; s++) {
		const char *load[] = { "SCRIPT", "LOAD", script_text[s] };
		send_argv(c, req_new(c, R_FATAL), 3, load, NULL);
	}
	send_heartbeat(c);
	subscribe(c, c->my_channel);
	GHashTableIter it;
	struct view *v;
	g_hash_table_remove_all(c->unsubs);
	g_hash_table_iter_init(&it, c->views);
	while (g_hash_table_iter_next(&it, NULL, (void **)&v)) {
		v->st = V_SUBSCRIBING;
		subscribe(c, v->channel);
	}
}

static void on_retry(uv_timer_t *t)
{
	start_connect(t->data);
}

/* Either connection failed or went silent: drop both, keep the views'
 * last state (local work goes on), try again after a bounded backoff. */
static void conn_lost(struct cluster *c, const char *why)
{
	redisAsyncContext *cmd = c->cmd, *sub = c->sub;
	bool was_up = c->st == ST_UP;
	GHashTableIter it;
	struct view *v;

	if (c->st == ST_DOWN)
		return;
	c->cmd = c->sub = NULL;
	c->gen++;
	c->st = ST_DOWN;
	c->outstanding = 0;
	g_hash_table_iter_init(&it, c->views);
	while (g_hash_table_iter_next(&it, NULL, (void **)&v)) {
		view_clear_buffer(v);
		v->st = V_DOWN;
		v->after_outage = true;
	}
	if (cmd)
		redisAsyncFree(cmd);
	if (sub)
		redisAsyncFree(sub);
	if (c->freeing)
		return;
	if (was_up) {
		metrics_set(cluster_up, false);
		log_event(LOG_ERR, LOG_EVENT_BACKEND_LOST, NULL, "cluster: Redis lost: %s", why);
		if (c->ops.state)
			c->ops.state(c->user, false);
	} else {
		log_debug("cluster: Redis not reachable: %s", why);
	}
	c->backoff_ms = c->backoff_ms ? MIN(c->backoff_ms * 2, c->reconnect_max_ms) : 50;
	uv_timer_start(&c->retry, on_retry, c->backoff_ms, 0);
}

/* The peers a snapshot after an outage lacked, and nobody announced
 * since: gone (their instance died meanwhile, or withdrew them unheard). */
static void view_expire(struct cluster *c, struct view *v, uint64_t now)
{
	g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	char *id;
	struct vpeer *p;

	g_hash_table_iter_init(&it, v->peers);
	while (g_hash_table_iter_next(&it, (void **)&id, (void **)&p))
		if (p->unconfirmed_until_ms && p->unconfirmed_until_ms <= now)
			g_ptr_array_add(gone, g_strdup(id));
	for (guint i = 0; i < gone->len; i++)
		view_set(c, v, gone->pdata[i], NULL, "timeout");
}

static void on_tick(uv_timer_t *t)
{
	struct cluster *c = t->data;
	uint64_t now = now_ms();
	GHashTableIter it;
	struct view *v;

	g_hash_table_iter_init(&it, c->views);
	while (g_hash_table_iter_next(&it, NULL, (void **)&v))
		if (v->unconfirmed && v->st == V_READY)
			view_expire(c, v, now);

	if (c->st == ST_CONNECTING && now - c->connect_started_ms > c->ttl_ms) {
		conn_lost(c, "connect timed out");
		return;
	}
	if (c->st != ST_UP)
		return;
	/* a Redis that stopped answering (a partition) is as good as gone */
	if (c->outstanding && now - c->busy_since_ms > c->ttl_ms) {
		conn_lost(c, "commands unanswered");
		return;
	}
	if (now - c->last_ping_ms > c->ttl_ms) {
		conn_lost(c, "subscription silent");
		return;
	}
	if (now - c->last_hb_ms >= c->ttl_ms / 3)
		send_heartbeat(c);
	g_autofree char *ts = g_strdup_printf("%" PRId64, realtime_us());
	const char *args[] = { c->prefix, ts };
	eval(c, req_new(c, R_SWEEP), S_SWEEP, 2, args, NULL, 0);
}

/* --- the API --- */

static void local_free(void *p)
{
	struct local *l = p;
	g_free(l->room);
	g_free(l->peer);
	g_free(l->role);
	g_free(l->meta);
	g_free(l->principal);
	g_free(l);
}

int cluster_new(uv_loop_t *loop, const struct cluster_options *o, const struct cluster_ops *ops,
		void *user, struct cluster **out)
{
	struct cluster *c;
	const char *why;
	struct redisurl url = { 0 };

	if (!o->instance_id || !*o->instance_id || strpbrk(o->instance_id, "\n{}") ||
	    (o->key_prefix && strchr(o->key_prefix, '\n')))
		return -EINVAL;
	if (redisurl_parse(o->redis ? o->redis : "", &url, &why) < 0) {
		log_err("cluster: redis = %s: %s", o->redis ? o->redis : "", why);
		return -EINVAL;
	}
	c = g_new0(struct cluster, 1);
	c->loop = loop;
	c->ops = *ops;
	c->user = user;
	c->host = url.host, c->path = url.path, c->port = url.port, c->db = (int)url.db;
	c->password = g_strdup(o->password && *o->password ? o->password : NULL);
	c->prefix = g_strdup(o->key_prefix ? o->key_prefix : "rtcsignald:");
	c->me = g_strdup(o->instance_id);
	c->ttl_ms = o->instance_ttl_ms ? o->instance_ttl_ms : 10000;
	if (c->ttl_ms < 30)
		c->ttl_ms = 30;
	c->max_payload = o->max_payload ? o->max_payload : 65536;
	c->max_outstanding = o->max_outstanding ? o->max_outstanding : 10000;
	c->max_buffered = o->max_buffered_events ? o->max_buffered_events : 10000;
	c->reconnect_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : 1000;
	for (int s = 0; s < S__COUNT; s++) {
		g_autofree char *hex = g_compute_checksum_for_string(G_CHECKSUM_SHA1, script_text[s], -1);
		memcpy(c->sha[s], hex, 41);
	}
	c->my_channel = g_strdup_printf("%sinst:{%s}:msg", c->prefix, c->me);
	c->my_set = g_strdup_printf("%sinst:{%s}:peers", c->prefix, c->me);
	c->my_new_set = g_strdup_printf("%sinst:{%s}:new", c->prefix, c->me);
	c->locals = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, local_free);
	c->views = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, view_free);
	c->channels = g_hash_table_new(g_str_hash, g_str_equal);
	c->unsubs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	c->instances = g_array_new(FALSE, FALSE, sizeof(struct cluster_instance_info));
	uv_timer_init(loop, &c->tick);
	uv_timer_init(loop, &c->retry);
	c->tick.data = c->retry.data = c;
	c->open_handles = 2;
	/* sweeping often keeps "gone within ttl + 1 s" for any ttl */
	unsigned period = MIN(c->ttl_ms / 4, 500u);
	uv_timer_start(&c->tick, on_tick, period, period);
	metrics_set(cluster_up, false);
	start_connect(c);
	*out = c;
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct cluster *c = h->data;
	if (--c->open_handles)
		return;
	g_free(c->host);
	g_free(c->path);
	g_free(c->password);
	g_free(c->prefix);
	g_free(c->me);
	g_free(c->my_channel);
	g_free(c->my_set);
	g_free(c->my_new_set);
	g_free(c);
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	c->freeing = true;
	conn_lost(c, "shutting down");
	g_hash_table_destroy(c->channels);
	g_hash_table_destroy(c->views);
	g_hash_table_destroy(c->locals);
	g_hash_table_destroy(c->unsubs);
	instances_clear(c);
	g_array_free(c->instances, TRUE);
	metrics_set(cluster_up, false);
	uv_close((uv_handle_t *)&c->tick, on_handle_closed);
	uv_close((uv_handle_t *)&c->retry, on_handle_closed);
}

bool cluster_is_up(const struct cluster *c)
{
	return c->st == ST_UP;
}

unsigned cluster_instances(const struct cluster *c, const struct cluster_instance_info **out)
{
	*out = (const struct cluster_instance_info *)(void *)c->instances->data;
	return c->instances->len;
}

const char *cluster_instance(const struct cluster *c)
{
	return c->me;
}

uint64_t cluster_new_epoch(struct cluster *c)
{
	uint64_t e = (uint64_t)realtime_us();
	c->last_epoch = e > c->last_epoch ? e : c->last_epoch + 1;
	return c->last_epoch;
}

int cluster_announce(struct cluster *c, const struct cluster_peer *p)
{
	if (!clean(p->room) || !clean(p->peer) || !clean(p->role) || !p->meta || !*p->room ||
	    !*p->peer || (p->principal && !clean(p->principal)))
		return -EINVAL;
	struct local *l = g_new0(struct local, 1);
	l->room = g_strdup(p->room);
	l->peer = g_strdup(p->peer);
	l->role = g_strdup(p->role);
	l->meta = g_strdup(p->meta);
	l->principal = g_strdup(p->principal ? p->principal : "");
	l->connected_at = p->connected_at;
	l->epoch = p->epoch;
	l->max_peers = p->max_peers;
	l->admin = p->admin;
	g_hash_table_replace(c->locals, g_strdup_printf("%s\n%s", p->room, p->peer), l);
	/* while down it is announced on reconnect, and nobody waits for it */
	if (c->st != ST_UP)
		return 1;
	send_claim(c, l, false);
	return 0;
}

int cluster_update(struct cluster *c, const char *room, const char *peer, uint64_t epoch,
		   const char *meta)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", room, peer);
	struct local *l = g_hash_table_lookup(c->locals, key);

	if (!meta)
		return -EINVAL;
	if (!l || l->epoch != epoch)
		return -ENOENT;
	g_free(l->meta);
	l->meta = g_strdup(meta);
	if (c->st != ST_UP)
		return 0;
	g_autofree char *hash = room_key(c, room, "peers");
	g_autofree char *seq = room_key(c, room, "seq");
	g_autofree char *ch = room_key(c, room, "events");
	g_autofree char *value = peer_value(c, l);
	g_autofree char *ep = g_strdup_printf("%" PRIu64, epoch);
	g_autofree char *ts = g_strdup_printf("%" PRId64, realtime_us());
	const char *args[] = { hash, seq, peer, c->me, ep, value, ts, ch };
	eval(c, req_new(c, R_PLAIN), S_UPDATE, G_N_ELEMENTS(args), args, NULL, 2);
	return 0;
}

int cluster_withdraw(struct cluster *c, const char *room, const char *peer, uint64_t epoch,
		     const char *why)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", room, peer);
	struct local *l = g_hash_table_lookup(c->locals, key);

	if (!l || l->epoch != epoch)
		return -ENOENT;
	g_hash_table_remove(c->locals, key);
	/* while down, the prune after the reconnect removes it */
	if (c->st != ST_UP)
		return 0;
	g_autofree char *hash = room_key(c, room, "peers");
	g_autofree char *seq = room_key(c, room, "seq");
	g_autofree char *ch = room_key(c, room, "events");
	g_autofree char *ep = g_strdup_printf("%" PRIu64, epoch);
	g_autofree char *ts = g_strdup_printf("%" PRId64, realtime_us());
	g_autofree char *admin = room_key(c, room, "admin");
	const char *args[] = { hash, seq, c->my_set, admin, room, peer, c->me, ep, ts, ch, why };
	eval(c, req_new(c, R_PLAIN), S_WITHDRAW, G_N_ELEMENTS(args), args, NULL, 4);
	return 0;
}

int cluster_watch(struct cluster *c, const char *room)
{
	struct view *v = g_hash_table_lookup(c->views, room);

	if (v)
		return v->st == V_READY ? 1 : c->st != ST_UP ? -ENOTCONN : 0;
	if (!clean(room) || !*room)
		return -EINVAL;
	v = g_new0(struct view, 1);
	v->room = g_strdup(room);
	v->channel = room_key(c, room, "events");
	v->peers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, vpeer_free);
	g_queue_init(&v->buffer);
	g_hash_table_insert(c->views, v->room, v);
	g_hash_table_insert(c->channels, v->channel, v);
	if (c->st == ST_DOWN)
		return -ENOTCONN;
	/* subscribe first, load once subscribed: no change falls between */
	v->st = V_SUBSCRIBING;
	subscribe(c, v->channel);
	return c->st == ST_UP ? 0 : -ENOTCONN;
}

void cluster_unwatch(struct cluster *c, const char *room)
{
	struct view *v = g_hash_table_lookup(c->views, room);

	if (!v)
		return;
	if (c->sub && v->st != V_DOWN) {
		guint n = GPOINTER_TO_UINT(g_hash_table_lookup(c->unsubs, v->channel));
		g_hash_table_insert(c->unsubs, g_strdup(v->channel), GUINT_TO_POINTER(n + 1));
		redisAsyncCommand(c->sub, NULL, NULL, "UNSUBSCRIBE %s", v->channel);
	}
	g_hash_table_remove(c->channels, v->channel);
	g_hash_table_remove(c->views, room);
}

bool cluster_view_ready(const struct cluster *c, const char *room)
{
	struct view *v = g_hash_table_lookup(c->views, room);
	return v && v->st == V_READY;
}

int cluster_forward(struct cluster *c, const char *to_instance, const char *to_peer,
		    uint64_t epoch, const char *from_peer, const char *tag, const char *bytes, size_t len)
{
	enum cluster_reason r = CLUSTER_OK;
	int err = 0;

	if (!tag)
		tag = "";
	if (!clean(to_instance) || !clean(to_peer) || !clean(from_peer) || !clean(tag))
		return -EINVAL;
	if (c->st != ST_UP)
		r = CLUSTER_UNREACHABLE, err = -ENOTCONN;
	else if (len > c->max_payload)
		r = CLUSTER_TOO_LARGE, err = -EMSGSIZE;
	else if (c->outstanding >= c->max_outstanding)
		r = CLUSTER_BUSY, err = -ENOBUFS;
	if (err) {
		metrics_inc(cluster_forward_failures[r]);
		if (r == CLUSTER_BUSY)
			metrics_inc(limit_hits[LIMIT_CLUSTER_OUTSTANDING]);
		return err;
	}
	g_autofree char *ch = g_strdup_printf("%sinst:{%s}:msg", c->prefix, to_instance);
	GString *msg = g_string_sized_new(len + 128);
	g_string_printf(msg, "F\n%s\n%s\n%s\n%" PRIu64 "\n%s\n", c->me, from_peer, to_peer, epoch, tag);
	g_string_append_len(msg, bytes, (gssize)len);
	const char *argv[] = { "PUBLISH", ch, msg->str };
	const size_t lens[] = { 7, strlen(ch), msg->len };
	struct req *q = req_new(c, R_FORWARD);
	q->a = g_strdup(from_peer);
	q->b = g_strdup(to_peer);
	q->tag = g_strdup(tag);
	err = send_argv(c, q, 3, argv, lens);
	g_string_free(msg, TRUE);
	if (err) {
		metrics_inc(cluster_forward_failures[CLUSTER_UNREACHABLE]);
		return err;
	}
	metrics_inc(cluster_forwarded);
	return 0;
}
