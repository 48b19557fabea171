/* The cluster edge (src/cluster/cluster.c): two or three instances on one libuv
 * loop in this process against one real redis-server (tests/testredis). */
#include "cluster/cluster.h"
#include "cluster/cluster_lua.h"
#include "util/metrics.h"
#include "testredis.h"

#include <errno.h>
#include <string.h>

static uv_loop_t loop;
static uv_timer_t wake; /* keeps UV_RUN_ONCE from blocking for long */

/* Runs the loop until EXPR holds; fails the test after MS milliseconds. */
#define WAIT_UNTIL(expr, ms)                                                          \
	do {                                                                          \
		gint64 end_ = g_get_monotonic_time() + (gint64)(ms)*1000;             \
		while (!(expr)) {                                                     \
			if (g_get_monotonic_time() > end_)                            \
				g_error("%s:%d: timed out waiting for %s", __FILE__, \
					__LINE__, #expr);                             \
			uv_run(&loop, UV_RUN_ONCE);                                   \
		}                                                                     \
	} while (0)

/* Runs the loop for MS milliseconds: only to show that nothing more comes. */
static void run_for(unsigned ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
	while (g_get_monotonic_time() < end)
		uv_run(&loop, UV_RUN_ONCE);
}

struct node {
	const char *id;
	struct cluster *c;
	bool up;
	int ups, downs, ready;
	GHashTable *remote;   /* "room\npeer" -> "instance\nmeta" */
	GHashTable *removals; /* "room\npeer" -> count */
	GHashTable *removal_why; /* "room\npeer" -> the last removal's why */
	GPtrArray *delivered; /* "from_instance from_peer>to_peer epoch:bytes" */
	GPtrArray *failed;    /* "from>to reason" */
	GPtrArray *replaced;  /* "room peer epoch by" */
	enum cluster_reason answer;
};

static void on_state(void *user, bool up)
{
	struct node *n = user;
	n->up = up;
	if (up)
		n->ups++;
	else
		n->downs++;
}

static void on_view_ready(void *user, const char *room, int status)
{
	struct node *n = user;
	(void)room;
	g_assert_cmpint(status, ==, 0);
	n->ready++;
}

static void on_upsert(void *user, const struct cluster_peer *p)
{
	struct node *n = user;
	g_assert_cmpstr(p->instance, !=, n->id);
	g_hash_table_insert(n->remote, g_strdup_printf("%s\n%s", p->room, p->peer),
			    g_strdup_printf("%s\n%s\n%s", p->instance, p->role, p->meta));
}

static void on_remove(void *user, const char *room, const char *peer, const char *instance,
		      const char *why)
{
	struct node *n = user;
	g_autofree char *key = g_strdup_printf("%s\n%s", room, peer);
	const char *had = g_hash_table_lookup(n->remote, key);

	g_assert_nonnull(had);
	g_assert_true(g_str_has_prefix(had, instance));
	g_hash_table_remove(n->remote, key);
	guint k = GPOINTER_TO_UINT(g_hash_table_lookup(n->removals, key));
	g_hash_table_insert(n->removals, g_strdup(key), GUINT_TO_POINTER(k + 1));
	g_hash_table_insert(n->removal_why, g_strdup(key), g_strdup(why));
}

static const char *removal_why(struct node *n, const char *room, const char *peer)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", room, peer);
	return g_hash_table_lookup(n->removal_why, key);
}

static void on_replaced(void *user, const char *room, const char *peer, uint64_t epoch,
			const char *by)
{
	struct node *n = user;
	g_ptr_array_add(n->replaced,
			g_strdup_printf("%s %s %" G_GUINT64_FORMAT " %s", room, peer, epoch, by));
}

static enum cluster_reason on_deliver(void *user, const char *to_peer, uint64_t epoch,
				      const char *from_instance, const char *from_peer,
				      const char *bytes, size_t len)
{
	struct node *n = user;
	GString *s = g_string_new(NULL);
	g_string_printf(s, "%s %s>%s %" G_GUINT64_FORMAT ":", from_instance, from_peer, to_peer, epoch);
	g_string_append_len(s, bytes, (gssize)len);
	g_ptr_array_add(n->delivered, g_string_free(s, FALSE));
	return n->answer;
}

static void on_failed(void *user, const char *from_peer, const char *to_peer, const char *tag,
		      enum cluster_reason r)
{
	struct node *n = user;
	/* the tag shown only when the test gave one */
	g_ptr_array_add(n->failed, g_strdup_printf("%s>%s%s%s %s", from_peer, to_peer, *tag ? "#" : "", tag,
						   cluster_reason_name(r)));
}

static const struct cluster_ops ops = {
	.state = on_state, .view_ready = on_view_ready, .peer_upsert = on_upsert,
	.peer_remove = on_remove, .replaced = on_replaced, .deliver = on_deliver,
	.delivery_failed = on_failed,
};

/* Options of the next node_start, reset by it. */
static struct cluster_options next;

static void node_start(struct node *n, const char *id, struct testredis *r, bool unix_socket)
{
	struct cluster_options o = {
		.redis = unix_socket ? r->unix_url : r->url, .key_prefix = "t:", .instance_id = id,
		.instance_ttl_ms = 2000, .max_payload = 4096, .reconnect_max_ms = 200,
		.max_outstanding = next.max_outstanding, .max_buffered_events = next.max_buffered_events,
		.password = next.password,
	};
	memset(&next, 0, sizeof next);
	memset(n, 0, sizeof *n);
	n->id = id;
	n->remote = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	n->removals = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	n->removal_why = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	n->delivered = g_ptr_array_new_with_free_func(g_free);
	n->failed = g_ptr_array_new_with_free_func(g_free);
	n->replaced = g_ptr_array_new_with_free_func(g_free);
	g_assert_cmpint(cluster_new(&loop, &o, &ops, n, &n->c), ==, 0);
}

static void node_stop(struct node *n)
{
	cluster_free(n->c);
	n->c = NULL;
}

static void node_free(struct node *n)
{
	if (n->c)
		node_stop(n);
	g_hash_table_destroy(n->remote);
	g_hash_table_destroy(n->removals);
	g_hash_table_destroy(n->removal_why);
	g_ptr_array_free(n->delivered, TRUE);
	g_ptr_array_free(n->failed, TRUE);
	g_ptr_array_free(n->replaced, TRUE);
}

static const char *remote(struct node *n, const char *room, const char *peer)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", room, peer);
	return g_hash_table_lookup(n->remote, key);
}

static guint removals(struct node *n, const char *room, const char *peer)
{
	g_autofree char *key = g_strdup_printf("%s\n%s", room, peer);
	return GPOINTER_TO_UINT(g_hash_table_lookup(n->removals, key));
}

static void announce(struct node *n, const char *room, const char *peer, const char *meta,
		     uint64_t epoch)
{
	struct cluster_peer p = { .room = room, .peer = peer, .role = "worker", .meta = meta,
				  .connected_at = 1700000000, .epoch = epoch };
	/* while down: recorded, announced once Redis is back (1) */
	g_assert_cmpint(cluster_announce(n->c, &p), ==, cluster_is_up(n->c) ? 0 : 1);
}

/* Who owns PEER in ROOM in Redis ("" if nobody). */
static char *owner(struct testredis *r, const char *room, const char *peer)
{
	redisReply *rep = testredis_command(r, "HGET t:{%s}:peers %s", room, peer);
	char *o = g_strdup("");
	g_assert_nonnull(rep);
	if (rep->type == REDIS_REPLY_STRING) {
		g_free(o);
		o = g_strndup(rep->str, strcspn(rep->str, "\n"));
	}
	freeReplyObject(rep);
	return o;
}

static long long hlen(struct testredis *r, const char *room)
{
	redisReply *rep = testredis_command(r, "HLEN t:{%s}:peers", room);
	g_assert_nonnull(rep);
	long long n = rep->integer;
	freeReplyObject(rep);
	return n;
}

static void on_wake(uv_timer_t *t)
{
	(void)t;
}

static void loop_start(void)
{
	g_assert_cmpint(uv_loop_init(&loop), ==, 0);
	uv_timer_init(&loop, &wake);
	uv_timer_start(&wake, on_wake, 10, 10);
}

/* Every handle closed, hiredis's too: uv_loop_close refuses otherwise. */
static void loop_finish(void)
{
	uv_close((uv_handle_t *)&wake, NULL);
	for (int i = 0; i < 1000 && uv_run(&loop, UV_RUN_NOWAIT); i++)
		;
	g_assert_cmpint(uv_loop_close(&loop), ==, 0);
}

/* Announce on A is seen by B's view with its metadata; update; withdraw;
 * a view loaded after the announce starts with it (the snapshot). */
static void test_views(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, true);
	WAIT_UNTIL(a.up && b.up, 5000);

	/* before B watches: the snapshot carries it */
	announce(&a, "room1", "p1", "{\"gpu\":\"a100\"}", cluster_new_epoch(a.c));
	g_assert_cmpint(cluster_watch(a.c, "room1"), ==, 0);
	WAIT_UNTIL(hlen(r, "room1") == 1, 2000);
	g_assert_cmpint(cluster_watch(b.c, "room1"), ==, 0);
	g_assert_false(cluster_view_ready(b.c, "room1"));
	WAIT_UNTIL(b.ready == 1, 2000);
	g_assert_true(cluster_view_ready(b.c, "room1"));
	g_assert_cmpint(cluster_watch(b.c, "room1"), ==, 1);
	g_assert_cmpstr(remote(&b, "room1", "p1"), ==, "A\nworker\n{\"gpu\":\"a100\"}");
	g_assert_null(remote(&a, "room1", "p1")); /* its own peer is not "remote" */

	/* after: the room's channel carries it */
	uint64_t e2 = cluster_new_epoch(a.c);
	announce(&a, "room1", "p2", "{}", e2);
	WAIT_UNTIL(remote(&b, "room1", "p2"), 2000);
	g_assert_cmpint(cluster_update(a.c, "room1", "p2", e2, "{\"state\":\"busy\"}"), ==, 0);
	WAIT_UNTIL(g_str_has_suffix(remote(&b, "room1", "p2"), "busy\"}"), 2000);
	g_assert_cmpint(cluster_update(a.c, "room1", "p2", e2 + 1, "{}"), ==, -ENOENT);

	/* B's own peer: seen by A, not by B itself */
	announce(&b, "room1", "q1", "{\"x\":[1,2]}", cluster_new_epoch(b.c));
	WAIT_UNTIL(a.ready == 1 && remote(&a, "room1", "q1"), 2000);
	g_assert_null(remote(&b, "room1", "q1"));

	g_assert_cmpint(cluster_withdraw(a.c, "room1", "p2", e2, "left"), ==, 0);
	WAIT_UNTIL(!remote(&b, "room1", "p2"), 2000);
	g_assert_cmpuint(removals(&b, "room1", "p2"), ==, 1);
	g_assert_cmpstr(removal_why(&b, "room1", "p2"), ==, "left"); /* the withdrawer's word */
	g_assert_cmpint(cluster_withdraw(a.c, "room1", "p2", e2, "left"), ==, -ENOENT);
	g_assert_nonnull(remote(&b, "room1", "p1"));

	/* unwatched: no more news of it; watched again: loaded afresh */
	cluster_unwatch(b.c, "room1");
	announce(&a, "room1", "p3", "{}", cluster_new_epoch(a.c));
	g_assert_cmpint(cluster_watch(b.c, "room1"), ==, 0);
	WAIT_UNTIL(b.ready == 2, 2000);
	WAIT_UNTIL(remote(&b, "room1", "p3"), 2000);
	g_assert_cmpint(hlen(r, "room1"), ==, 3);
	g_assert_cmpint(metrics_get(cluster_up), ==, 1);

	/* an entry nobody can read (not ours): skipped by views, overwritten
	 * by a claim, and no reconnect */
	redisReply *rep = testredis_command(r, "HSET t:{room1}:peers junk garbage");
	freeReplyObject(rep);
	rep = testredis_command(r, "HSET t:{room1}:peers junk2 x\ny");
	freeReplyObject(rep);
	cluster_unwatch(b.c, "room1");
	g_assert_cmpint(cluster_watch(b.c, "room1"), ==, 0);
	WAIT_UNTIL(b.ready == 3, 2000);
	g_assert_null(remote(&b, "room1", "junk"));
	announce(&a, "room1", "junk2", "{}", cluster_new_epoch(a.c));
	WAIT_UNTIL(remote(&b, "room1", "junk2"), 2000);
	g_assert_cmpint(a.downs + b.downs, ==, 0);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* A field of INFO's answer, e.g. "total_commands_processed:". */
static long long info_field(struct testredis *r, const char *section, const char *name)
{
	redisReply *rep = testredis_command(r, "INFO %s", section);
	g_assert_nonnull(rep);
	const char *at = strstr(rep->str, name);
	long long v = at ? g_ascii_strtoll(at + strlen(name), NULL, 10) : 0;
	freeReplyObject(rep);
	return v;
}

/* 1000 messages A -> B arrive once each, in order, bytes intact, each one
 * Redis command. */
static void test_forward_order(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;
	const unsigned n = 1000;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	uint64_t before = metrics_get(cluster_forwarded);
	long long cmds = info_field(r, "stats", "total_commands_processed:");
	gint64 t0 = g_get_monotonic_time();
	for (unsigned i = 0; i < n; i++) {
		g_autofree char *m = g_strdup_printf("{\"n\":%u}\n\x01", i);
		g_assert_cmpint(cluster_forward(a.c, "B", "pb", 7, "pa", NULL, m, strlen(m) + 1), ==, 0);
	}
	WAIT_UNTIL(b.delivered->len == n, 5000);
	gint64 took = g_get_monotonic_time() - t0;
	/* besides the forwards: heartbeats and sweeps (two a second each),
	 * this test's INFO */
	long long used = info_field(r, "stats", "total_commands_processed:") - cmds;
	g_test_message("%u forwards: %lld Redis commands in %" G_GINT64_FORMAT " ms", n, used,
		       took / 1000);
	g_assert_cmpint(used, >=, n);
	g_assert_cmpint(used, <=, n + 4 + 8 * (took / 1000000 + 1));
	for (unsigned i = 0; i < n; i++) {
		g_autofree char *want = g_strdup_printf("A pa>pb 7:{\"n\":%u}\n\x01", i);
		g_assert_cmpstr(b.delivered->pdata[i], ==, want);
	}
	g_assert_cmpuint(metrics_get(cluster_forwarded) - before, ==, n);
	g_assert_cmpuint(a.failed->len, ==, 0);

	/* over max_payload: refused at once */
	char big[4097];
	memset(big, 'x', sizeof big);
	g_assert_cmpint(cluster_forward(a.c, "B", "pb", 7, "pa", NULL, big, sizeof big), ==, -EMSGSIZE);
	g_assert_cmpint(cluster_forward(a.c, "B", "p\nb", 7, "pa", NULL, "x", 1), ==, -EINVAL);
	run_for(100);
	g_assert_cmpuint(b.delivered->len, ==, n);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* A failure on the far side, and a target instance nobody runs, come
 * back to the sender with the reason. */
static void test_delivery_failed(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	uint64_t full = metrics_get(cluster_forward_failures[CLUSTER_QUEUE_FULL]);
	uint64_t gone = metrics_get(cluster_forward_failures[CLUSTER_GONE]);
	b.answer = CLUSTER_QUEUE_FULL;
	g_assert_cmpint(cluster_forward(a.c, "B", "pb", 1, "pa", "offer", "hi", 2), ==, 0);
	WAIT_UNTIL(a.failed->len == 1, 2000);
	g_assert_cmpstr(a.failed->pdata[0], ==, "pa>pb#offer queue_full"); /* its tag back */
	g_assert_cmpuint(b.delivered->len, ==, 1);
	g_assert_cmpuint(metrics_get(cluster_forward_failures[CLUSTER_QUEUE_FULL]) - full, ==, 1);

	g_assert_cmpint(cluster_forward(a.c, "Z", "pz", 1, "pa", "target", "hi", 2), ==, 0);
	WAIT_UNTIL(a.failed->len == 2, 2000);
	g_assert_cmpstr(a.failed->pdata[1], ==, "pa>pz#target gone");
	g_assert_cmpuint(metrics_get(cluster_forward_failures[CLUSTER_GONE]) - gone, ==, 1);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* Claiming an id that lives on A from B evicts A's session, and A's late
 * withdraw of its old session never removes B's. */
static void test_replace(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	uint64_t ea = cluster_new_epoch(a.c);
	announce(&a, "room", "dup", "{\"on\":\"A\"}", ea);
	g_assert_cmpint(cluster_watch(a.c, "room"), ==, 0);
	WAIT_UNTIL(a.ready == 1, 2000);
	g_autofree char *o1 = owner(r, "room", "dup");
	g_assert_cmpstr(o1, ==, "A");

	uint64_t eb = cluster_new_epoch(b.c);
	announce(&b, "room", "dup", "{\"on\":\"B\"}", eb);
	g_assert_cmpint(cluster_watch(b.c, "room"), ==, 0);
	WAIT_UNTIL(a.replaced->len == 1, 2000);
	g_autofree char *want = g_strdup_printf("room dup %" G_GUINT64_FORMAT " B", ea);
	g_assert_cmpstr(a.replaced->pdata[0], ==, want);
	WAIT_UNTIL(remote(&a, "room", "dup"), 2000);
	g_assert_cmpstr(remote(&a, "room", "dup"), ==, "B\nworker\n{\"on\":\"B\"}");
	/* the evicted session closes: its withdraw is a no-op */
	g_assert_cmpint(cluster_withdraw(a.c, "room", "dup", ea, "disconnected"), ==, -ENOENT);

	/* the same race with the withdraw already on its way to Redis: the
	 * script compares instance and epoch */
	int by_script = 0;
	for (int i = 0; i < 20; i++) {
		g_autofree char *id = g_strdup_printf("race%d", i);
		uint64_t e1 = cluster_new_epoch(a.c);
		announce(&a, "room", id, "{}", e1);
		WAIT_UNTIL(remote(&b, "room", id), 2000);
		announce(&b, "room", id, "{}", cluster_new_epoch(b.c));
		uv_run(&loop, UV_RUN_NOWAIT); /* B's claim goes out first */
		int w = cluster_withdraw(a.c, "room", id, e1, "disconnected");
		g_assert_true(w == 0 || w == -ENOENT);
		by_script += w == 0;
		WAIT_UNTIL(remote(&a, "room", id), 2000);
		run_for(20);
		g_autofree char *o = owner(r, "room", id);
		g_assert_cmpstr(o, ==, "B");
		g_assert_nonnull(remote(&a, "room", id));
	}
	g_test_message("%d of 20 late withdraws reached the script", by_script);
	/* and the script itself, for an old epoch of the owner */
	redisReply *rep = testredis_command(r, "EVAL %s 3 t:{room}:peers t:{room}:seq t:inst:{B}:peers "
					    "room dup B 1 0 t:{room}:events", CLUSTER_LUA_WITHDRAW);
	g_assert_nonnull(rep);
	g_assert_cmpint(rep->type, ==, REDIS_REPLY_INTEGER);
	g_assert_cmpint(rep->integer, ==, 0);
	freeReplyObject(rep);
	g_autofree char *o2 = owner(r, "room", "dup");
	g_assert_cmpstr(o2, ==, "B");

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* A stops without withdrawing: B and C remove its peers within ttl + 1 s,
 * each removal seen exactly once although both sweep. */
static void test_instance_death(void)
{
	struct testredis *r = testredis_start();
	struct node a, b, c;
	const char *peers[] = { "d1", "d2", "d3" };

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	node_start(&c, "C", r, true);
	WAIT_UNTIL(a.up && b.up && c.up, 5000);
	for (int i = 0; i < 3; i++)
		announce(&a, "dead", peers[i], "{}", cluster_new_epoch(a.c));
	announce(&b, "dead", "alive", "{}", cluster_new_epoch(b.c));
	cluster_watch(b.c, "dead");
	cluster_watch(c.c, "dead");
	WAIT_UNTIL(g_hash_table_size(c.remote) == 4 && g_hash_table_size(b.remote) == 3, 2000);
	WAIT_UNTIL(metrics_get(cluster_instances) == 3, 2000);
	/* what "rtcsignalctl status" will show: instances and their peers */
	const struct cluster_instance_info *in;
	unsigned nin;
	g_autoptr(GString) seen = g_string_new(NULL);
	gint64 until = g_get_monotonic_time() + 2000000;
	do { /* the sweep after the announces */
		uv_run(&loop, UV_RUN_ONCE);
		nin = cluster_instances(b.c, &in);
		g_string_truncate(seen, 0);
		for (int k = 0; k < 3; k++) /* in id order */
			for (unsigned i = 0; i < nin; i++)
				if (!strcmp(in[i].id, (const char *[]){ "A", "B", "C" }[k]))
					g_string_append_printf(seen, "%s=%lld ", in[i].id, in[i].peers);
	} while (strcmp(seen->str, "A=3 B=1 C=0 ") && g_get_monotonic_time() < until);
	g_assert_cmpstr(seen->str, ==, "A=3 B=1 C=0 ");

	gint64 t0 = g_get_monotonic_time();
	node_stop(&a); /* as kill -9: nothing withdrawn */
	WAIT_UNTIL(g_hash_table_size(c.remote) == 1 && g_hash_table_size(b.remote) == 0, 4000);
	gint64 took_ms = (g_get_monotonic_time() - t0) / 1000;
	g_test_message("peers of a dead instance gone after %" G_GINT64_FORMAT " ms (ttl 2000)", took_ms);
	g_assert_cmpint(took_ms, <=, 2000 + 1000);
	run_for(1200); /* two more sweeps by each */
	for (int i = 0; i < 3; i++) {
		g_assert_cmpuint(removals(&b, "dead", peers[i]), ==, 1);
		g_assert_cmpuint(removals(&c, "dead", peers[i]), ==, 1);
		g_assert_cmpstr(removal_why(&b, "dead", peers[i]), ==, "timeout");
	}
	g_assert_nonnull(remote(&c, "dead", "alive"));
	g_assert_cmpint(hlen(r, "dead"), ==, 1);
	WAIT_UNTIL(metrics_get(cluster_instances) == 2, 2000);

	node_free(&a);
	node_free(&b);
	node_free(&c);
	loop_finish();
	testredis_free(r);
}

/* Redis killed: degraded, forwards fail at once; local changes go on.
 * Restarted empty: both announce again, the views converge without
 * telling a peer that stayed gone, and an id claimed on both during the
 * outage ends with one owner. */
static void test_outage(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, true);
	WAIT_UNTIL(a.up && b.up, 5000);
	uint64_t epa = cluster_new_epoch(a.c);
	announce(&a, "o", "pa", "{}", epa);
	announce(&b, "o", "pb", "{}", cluster_new_epoch(b.c));
	cluster_watch(a.c, "o");
	cluster_watch(b.c, "o");
	WAIT_UNTIL(remote(&a, "o", "pb") && remote(&b, "o", "pa"), 2000);

	testredis_kill(r);
	WAIT_UNTIL(!a.up && !b.up, 3000);
	g_assert_cmpint(metrics_get(cluster_up), ==, 0);
	uint64_t unreachable = metrics_get(cluster_forward_failures[CLUSTER_UNREACHABLE]);
	g_assert_cmpint(cluster_forward(a.c, "B", "pb", 1, "pa", NULL, "x", 1), ==, -ENOTCONN);
	g_assert_cmpuint(metrics_get(cluster_forward_failures[CLUSTER_UNREACHABLE]) - unreachable, ==, 1);

	/* meanwhile: pa leaves, pa2 comes, and "dup" registers on both */
	g_assert_cmpint(cluster_withdraw(a.c, "o", "pa", epa, "disconnected"), ==, 0);
	announce(&a, "o", "pa2", "{\"n\":2}", cluster_new_epoch(a.c));
	uint64_t dup_a = cluster_new_epoch(a.c);
	announce(&a, "o", "dup", "{}", dup_a);
	run_for(100); /* a few reconnect attempts fail */
	announce(&b, "o", "dup", "{}", cluster_new_epoch(b.c)); /* newer */
	g_assert_cmpint(cluster_watch(a.c, "o"), ==, -ENOTCONN);

	testredis_restart(r);
	WAIT_UNTIL(a.up && b.up, 5000);
	WAIT_UNTIL(a.replaced->len == 1, 3000);
	g_autofree char *want = g_strdup_printf("o dup %" G_GUINT64_FORMAT " B", dup_a);
	g_assert_cmpstr(a.replaced->pdata[0], ==, want);
	WAIT_UNTIL(remote(&b, "o", "pa2") && !remote(&b, "o", "pa") && remote(&a, "o", "dup"), 3000);
	WAIT_UNTIL(hlen(r, "o") == 3, 2000); /* pa2, pb, dup */
	g_autofree char *od = owner(r, "o", "dup");
	g_assert_cmpstr(od, ==, "B");
	g_assert_nonnull(remote(&a, "o", "pb"));
	/* pb stayed throughout: never told gone, though A's first snapshot
	 * may have come before B announced again; pa, withdrawn unheard,
	 * went once it stayed missing */
	g_assert_cmpuint(removals(&a, "o", "pb"), ==, 0);
	g_assert_cmpuint(removals(&b, "o", "pa"), ==, 1);
	g_assert_cmpstr(removal_why(&b, "o", "pa"), ==, "timeout");
	g_assert_true(cluster_view_ready(a.c, "o") && cluster_view_ready(b.c, "o"));
	g_assert_cmpint(a.downs, ==, 1);
	g_assert_cmpint(a.ups, ==, 2);

	/* and routing again */
	g_assert_cmpint(cluster_forward(a.c, "B", "pb", 1, "pa2", NULL, "again", 5), ==, 0);
	WAIT_UNTIL(b.delivered->len == 1, 2000);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* A stale entry of ours that Redis kept through an outage of our
 * connection only (Redis did not restart) goes after the reconnect. */
static void test_prune_after_blip(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	uint64_t e = cluster_new_epoch(a.c);
	announce(&a, "blip", "gone", "{}", e);
	cluster_watch(b.c, "blip");
	WAIT_UNTIL(remote(&b, "blip", "gone"), 2000);
	/* cut A's connections from the server side */
	redisReply *rep = testredis_command(r, "CLIENT KILL TYPE pubsub");
	freeReplyObject(rep);
	WAIT_UNTIL(!a.up, 2000);
	g_assert_cmpint(cluster_withdraw(a.c, "blip", "gone", e, "disconnected"), ==, 0);
	WAIT_UNTIL(a.up && b.up, 3000);
	WAIT_UNTIL(!remote(&b, "blip", "gone"), 2000);
	g_assert_cmpint(hlen(r, "blip"), ==, 0);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* Redis stops answering (a partition, here CLIENT PAUSE): within the ttl
 * the instance is degraded and forwards fail at once; then it recovers. */
static void test_stalled(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	announce(&a, "st", "pa", "{}", cluster_new_epoch(a.c));
	cluster_watch(b.c, "st");
	WAIT_UNTIL(remote(&b, "st", "pa"), 2000);
	redisReply *rep = testredis_command(r, "CLIENT PAUSE 3500 ALL");
	g_assert_nonnull(rep);
	freeReplyObject(rep);
	gint64 t0 = g_get_monotonic_time();
	WAIT_UNTIL(!a.up && !b.up, 3500);
	g_test_message("silent Redis noticed after %" G_GINT64_FORMAT " ms (ttl 2000)",
		       (g_get_monotonic_time() - t0) / 1000);
	g_assert_cmpint(cluster_forward(a.c, "B", "pb", 1, "pa", NULL, "x", 1), ==, -ENOTCONN);
	WAIT_UNTIL(a.up && b.up, 6000);
	WAIT_UNTIL(cluster_view_ready(b.c, "st"), 2000);
	g_assert_nonnull(remote(&b, "st", "pa"));
	g_assert_cmpint(hlen(r, "st"), ==, 1);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* max_outstanding: forwards beyond it are refused at once, counted. */
static void test_outstanding_bound(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;
	int ok = 0, busy = 0;

	loop_start();
	next.max_outstanding = 50;
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	run_for(50); /* the first heartbeat and sweep answered */
	uint64_t hits = metrics_get(limit_hits[LIMIT_CLUSTER_OUTSTANDING]);
	uint64_t fails = metrics_get(cluster_forward_failures[CLUSTER_BUSY]);
	for (int i = 0; i < 200; i++) { /* all in one turn of the loop */
		int e = cluster_forward(a.c, "B", "pb", 1, "pa", NULL, "m", 1);
		g_assert_true(e == 0 || e == -ENOBUFS);
		ok += e == 0;
		busy += e == -ENOBUFS;
	}
	g_assert_cmpint(ok, <=, 50);
	g_assert_cmpint(busy, >=, 150);
	g_assert_cmpuint(metrics_get(limit_hits[LIMIT_CLUSTER_OUTSTANDING]) - hits, ==, (guint64)busy);
	g_assert_cmpuint(metrics_get(cluster_forward_failures[CLUSTER_BUSY]) - fails, ==, (guint64)busy);
	WAIT_UNTIL(b.delivered->len == (guint)ok, 2000);
	g_assert_cmpint(cluster_forward(a.c, "B", "pb", 1, "pa", NULL, "m", 1), ==, 0);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* max_buffered_events: events that come while a view loads are bounded;
 * past the bound they are dropped, counted, and the view loads again. */
static void test_buffer_bound(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	loop_start();
	node_start(&a, "A", r, false);
	next.max_buffered_events = 3;
	node_start(&b, "B", r, false);
	WAIT_UNTIL(a.up && b.up, 5000);
	announce(&a, "buf", "pa", "{}", cluster_new_epoch(a.c));
	WAIT_UNTIL(hlen(r, "buf") == 1, 2000);
	uint64_t hits = metrics_get(limit_hits[LIMIT_CLUSTER_BUFFERED_EVENTS]);
	g_assert_cmpint(cluster_watch(b.c, "buf"), ==, 0);
	/* once Redis has B subscribed, and before B's load can have been
	 * written (the loop does not run meanwhile), ten events */
	for (int i = 0; i < 1000; i++) {
		redisReply *rep = testredis_command(r, "PUBSUB NUMSUB t:{buf}:events");
		long long subs = rep->element[1]->integer;
		freeReplyObject(rep);
		if (subs)
			break;
		uv_run(&loop, UV_RUN_ONCE);
	}
	for (int i = 0; i < 10; i++) {
		redisReply *rep = testredis_command(r, "PUBLISH t:{buf}:events %s",
						    "U\n1000\n0\nfake\nZ\n1\n0\nworker\n\n{}");
		freeReplyObject(rep);
	}
	WAIT_UNTIL(cluster_view_ready(b.c, "buf"), 2000);
	g_assert_cmpuint(metrics_get(limit_hits[LIMIT_CLUSTER_BUFFERED_EVENTS]) - hits, ==, 1);
	g_assert_nonnull(remote(&b, "buf", "pa"));
	g_assert_null(remote(&b, "buf", "fake"));
	g_assert_cmpint(b.ready, ==, 1);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* AUTH: a wrong password never comes up; the right one does. */
static void test_password(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;

	redisReply *rep = testredis_command(r, "CONFIG SET requirepass s3cret");
	freeReplyObject(rep);
	loop_start();
	next.password = "wrong";
	node_start(&a, "A", r, false);
	next.password = "s3cret";
	node_start(&b, "B", r, true);
	WAIT_UNTIL(b.up, 5000);
	run_for(300);
	g_assert_false(a.up);
	g_assert_cmpint(cluster_watch(b.c, "pw"), ==, 0);
	WAIT_UNTIL(b.ready == 1, 2000);

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

/* Replication lag (announce on A until B's view has it), 1000
 * registrations at about 1000 a second: reported, bounded loosely. */
static struct {
	gint64 sent[1000];
	gint64 seen[1000];
} lag;

static void lag_upsert(void *user, const struct cluster_peer *p)
{
	(void)user;
	int i = atoi(p->peer + 1);
	if (!lag.seen[i])
		lag.seen[i] = g_get_monotonic_time();
}

static int cmp_gint64(const void *a, const void *b)
{
	gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;
	return x < y ? -1 : x > y;
}

static void test_lag(void)
{
	struct testredis *r = testredis_start();
	struct node a, b;
	const int n = 1000;
	gint64 d[1000];

	memset(&lag, 0, sizeof lag);
	loop_start();
	node_start(&a, "A", r, false);
	node_start(&b, "B", r, false);
	/* B again, with the callback that takes the time */
	struct cluster_ops lag_ops = ops;
	lag_ops.peer_upsert = lag_upsert;
	cluster_free(b.c);
	struct cluster_options o = { .redis = r->url, .key_prefix = "t:", .instance_id = "B",
				     .instance_ttl_ms = 2000 };
	g_assert_cmpint(cluster_new(&loop, &o, &lag_ops, &b, &b.c), ==, 0);
	WAIT_UNTIL(cluster_is_up(a.c) && cluster_is_up(b.c), 5000);
	cluster_watch(b.c, "lag");
	WAIT_UNTIL(cluster_view_ready(b.c, "lag"), 2000);
	gint64 start = g_get_monotonic_time();
	for (int i = 0; i < n;) {
		/* as many as are due at 1 per millisecond */
		gint64 due = (g_get_monotonic_time() - start) / 1000 + 1;
		for (; i < n && i < due; i++) {
			g_autofree char *id = g_strdup_printf("p%d", i);
			lag.sent[i] = g_get_monotonic_time();
			announce(&a, "lag", id, "{\"k\":\"v\"}", cluster_new_epoch(a.c));
		}
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	for (int i = 0; i < n; i++) {
		WAIT_UNTIL(lag.seen[i], 5000);
		d[i] = lag.seen[i] - lag.sent[i];
	}
	qsort(d, (size_t)n, sizeof d[0], cmp_gint64);
	g_test_message("replication lag over %d registrations in %" G_GINT64_FORMAT
		       " ms: p50 %" G_GINT64_FORMAT " us, p99 %" G_GINT64_FORMAT " us, max %" G_GINT64_FORMAT " us",
		       n, (g_get_monotonic_time() - start) / 1000, d[n / 2], d[n * 99 / 100], d[n - 1]);
	g_assert_cmpint(d[n * 99 / 100], <, 1000000); /* a sanity bound, not the target */

	node_free(&a);
	node_free(&b);
	loop_finish();
	testredis_free(r);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/cluster/views", test_views);
	g_test_add_func("/cluster/forward-order", test_forward_order);
	g_test_add_func("/cluster/delivery-failed", test_delivery_failed);
	g_test_add_func("/cluster/replace", test_replace);
	g_test_add_func("/cluster/instance-death", test_instance_death);
	g_test_add_func("/cluster/outage", test_outage);
	g_test_add_func("/cluster/prune-after-blip", test_prune_after_blip);
	g_test_add_func("/cluster/stalled", test_stalled);
	g_test_add_func("/cluster/outstanding-bound", test_outstanding_bound);
	g_test_add_func("/cluster/buffer-bound", test_buffer_bound);
	g_test_add_func("/cluster/password", test_password);
	g_test_add_func("/cluster/lag", test_lag);
	return g_test_run();
}
