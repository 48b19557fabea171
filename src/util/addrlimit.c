#include "util/addrlimit.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

struct conn_entry {
	struct netaddr key; /* first: the entry is its own hash key */
	unsigned n;
};

struct reg_entry {
	struct netaddr key; /* first, as above */
	GList link;         /* in lru */
	struct ratelimit bucket; /* successful registrations */
	struct ratelimit failed; /* failed ones (addrlimit.h) */
};

struct addrlimit {
	struct addrlimit_limits limits;
	struct ratelimit_policy reg_policy;
	struct ratelimit_policy fail_policy;
	int64_t reg_token_us; /* time to regain one token of either bucket */
	GHashTable *conns;    /* set of struct conn_entry */
	GHashTable *regs;     /* set of struct reg_entry */
	GQueue lru;           /* of struct reg_entry, least recently used first */
	uint64_t conn_table_full;
	uint64_t reg_evictions;
};

static guint64 hash_seed;

/* Seeded, so that nobody can work out offline which addresses collide. */
static guint addr_hash(gconstpointer p)
{
	uint64_t w[2];

	memcpy(w, p, sizeof w);
	uint64_t h = (w[0] ^ hash_seed) * UINT64_C(0x9e3779b97f4a7c15) ^ w[1];
	/* splitmix64's finalizer */
	h = (h ^ (h >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	h = (h ^ (h >> 27)) * UINT64_C(0x94d049bb133111eb);
	return (guint)(h ^ (h >> 31));
}

static gboolean addr_equal(gconstpointer a, gconstpointer b)
{
	return memcmp(a, b, sizeof(struct netaddr)) == 0;
}

/* The unit we count: the IPv4 address, or the IPv6 /64. */
static void account_key(const struct netaddr *a, struct netaddr *key)
{
	*key = *a;
	if (!netaddr_is_v4(a))
		memset(key->b + 8, 0, 8);
}

static void reg_drop(struct addrlimit *al, struct reg_entry *e)
{
	g_queue_unlink(&al->lru, &e->link);
	g_hash_table_remove(al->regs, e); /* frees it */
}

/* Forgets the least recently used entries down to MAX; returns how many. */
static unsigned reg_trim(struct addrlimit *al, unsigned max)
{
	unsigned n = 0;

	for (; al->lru.length > max; n++)
		reg_drop(al, al->lru.head->data);
	return n;
}

static bool limits_valid(const struct addrlimit_limits *l)
{
	struct ratelimit_policy p;
	return l->max_addresses >= 1 &&
	       ratelimit_policy_per_minute(&p, l->regs_per_minute, l->regs_per_minute) == 0 &&
	       ratelimit_policy_per_minute(&p, l->failed_per_minute, l->failed_per_minute) == 0;
}

static bool tracking(const struct addrlimit *al)
{
	return al->limits.regs_per_minute || al->limits.failed_per_minute;
}

int addrlimit_set_limits(struct addrlimit *al, const struct addrlimit_limits *limits)
{
	unsigned r = limits->regs_per_minute, f = limits->failed_per_minute;

	if (!limits_valid(limits))
		return -EINVAL;
	al->limits = *limits;
	ratelimit_policy_per_minute(&al->reg_policy, r, r);
	ratelimit_policy_per_minute(&al->fail_policy, f, f);
	/* The sweep's cutoff: the faster bucket's token time. */
	unsigned fastest = MAX(r, f);
	al->reg_token_us = fastest ? (60 * G_USEC_PER_SEC + fastest - 1) / fastest : 0;
	/* No limit: nothing to remember.  A lower cap: evictions. */
	if (tracking(al))
		al->reg_evictions += reg_trim(al, limits->max_addresses);
	else
		reg_trim(al, 0);
	return 0;
}

int addrlimit_new(const struct addrlimit_limits *limits, struct addrlimit **out)
{
	static gsize seeded;

	if (!limits_valid(limits))
		return -EINVAL;
	if (g_once_init_enter(&seeded)) {
		hash_seed = (guint64)g_random_int() << 32 | g_random_int();
		g_once_init_leave(&seeded, 1);
	}
	struct addrlimit *al = g_new0(struct addrlimit, 1);
	/* Sets: key and value are the entry, freed once through the key. */
	al->conns = g_hash_table_new_full(addr_hash, addr_equal, g_free, NULL);
	al->regs = g_hash_table_new_full(addr_hash, addr_equal, g_free, NULL);
	g_queue_init(&al->lru);
	addrlimit_set_limits(al, limits);
	*out = al;
	return 0;
}

void addrlimit_free(struct addrlimit *al)
{
	if (!al)
		return;
	g_hash_table_unref(al->conns);
	g_hash_table_unref(al->regs);
	g_free(al);
}

int addrlimit_conn_open(struct addrlimit *al, const struct netaddr *a)
{
	struct netaddr key;

	account_key(a, &key);
	struct conn_entry *e = g_hash_table_lookup(al->conns, &key);
	if (e) {
		if (al->limits.conns_per_address && e->n >= al->limits.conns_per_address)
			return -EDQUOT;
		e->n++;
		return 0;
	}
	if (g_hash_table_size(al->conns) >= al->limits.max_addresses) {
		al->conn_table_full++;
		return -ENOSPC;
	}
	e = g_new(struct conn_entry, 1);
	e->key = key;
	e->n = 1;
	g_hash_table_add(al->conns, e);
	return 0;
}

void addrlimit_conn_close(struct addrlimit *al, const struct netaddr *a)
{
	struct netaddr key;

	account_key(a, &key);
	struct conn_entry *e = g_hash_table_lookup(al->conns, &key);
	if (!e)
		return; /* never counted: not ours to decrement */
	if (--e->n == 0)
		g_hash_table_remove(al->conns, e);
}

unsigned addrlimit_conn_count(const struct addrlimit *al, const struct netaddr *a)
{
	struct netaddr key;

	account_key(a, &key);
	const struct conn_entry *e = g_hash_table_lookup(al->conns, &key);
	return e ? e->n : 0;
}

/* A's entry, made (full buckets) if new, and now the most recent. */
static struct reg_entry *reg_touch(struct addrlimit *al, const struct netaddr *a, int64_t now_us)
{
	struct netaddr key;

	account_key(a, &key);
	struct reg_entry *e = g_hash_table_lookup(al->regs, &key);
	if (e) {
		g_queue_unlink(&al->lru, &e->link);
	} else {
		al->reg_evictions += reg_trim(al, al->limits.max_addresses - 1);
		e = g_new(struct reg_entry, 1);
		e->key = key;
		e->link = (GList){ .data = e };
		ratelimit_init(&e->bucket, &al->reg_policy, now_us);
		ratelimit_init(&e->failed, &al->fail_policy, now_us);
		g_hash_table_add(al->regs, e);
	}
	g_queue_push_tail_link(&al->lru, &e->link);
	return e;
}

/* Whether a take would be allowed, without taking: on a copy. */
static bool has_token(const struct ratelimit *b, const struct ratelimit_policy *p, int64_t now_us)
{
	struct ratelimit copy = *b;
	return ratelimit_take(&copy, p, now_us) == RATELIMIT_ALLOW;
}

int addrlimit_register_check(struct addrlimit *al, const struct netaddr *a, int64_t now_us)
{
	if (!tracking(al))
		return 0;
	struct reg_entry *e = reg_touch(al, a, now_us);
	if (al->limits.failed_per_minute && !has_token(&e->failed, &al->fail_policy, now_us))
		return -EAGAIN;
	if (al->limits.regs_per_minute && !has_token(&e->bucket, &al->reg_policy, now_us))
		return -EDQUOT;
	return 0;
}

void addrlimit_register_done(struct addrlimit *al, const struct netaddr *a, bool ok, int64_t now_us)
{
	if (!tracking(al))
		return;
	struct reg_entry *e = reg_touch(al, a, now_us);
	if (ok && al->limits.regs_per_minute)
		ratelimit_take(&e->bucket, &al->reg_policy, now_us);
	else if (!ok && al->limits.failed_per_minute)
		ratelimit_take(&e->failed, &al->fail_policy, now_us);
}

int addrlimit_register(struct addrlimit *al, const struct netaddr *a, int64_t now_us)
{
	int rc = addrlimit_register_check(al, a, now_us);
	if (rc < 0)
		return -EAGAIN;
	addrlimit_register_done(al, a, false, now_us);
	addrlimit_register_done(al, a, true, now_us);
	return 0;
}

unsigned addrlimit_sweep(struct addrlimit *al, int64_t now_us)
{
	unsigned dropped = 0;
	GList *next;

	for (GList *l = al->lru.head; l && dropped < ADDRLIMIT_SWEEP_MAX; l = next) {
		struct reg_entry *e = l->data;
		next = l->next;
		/* Oldest first: from here on every entry gave a token less
		 * than a token's time ago, so none is full yet.  (One refused
		 * may be, and waits for a later sweep.) */
		if (now_us - MAX(e->bucket.last_us, e->failed.last_us) < al->reg_token_us)
			break;
		if (ratelimit_is_idle(&e->bucket, &al->reg_policy, now_us) &&
		    ratelimit_is_idle(&e->failed, &al->fail_policy, now_us)) {
			reg_drop(al, e);
			dropped++;
		}
	}
	return dropped;
}

void addrlimit_get_stats(const struct addrlimit *al, struct addrlimit_stats *out)
{
	out->conn_addresses = g_hash_table_size(al->conns);
	out->reg_addresses = g_hash_table_size(al->regs);
	out->conn_table_full = al->conn_table_full;
	out->reg_evictions = al->reg_evictions;
}
