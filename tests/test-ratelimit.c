/* Unit tests: token buckets and the abuse rule, over synthetic time. */
#include "util/ratelimit.h"

#include <errno.h>
#include <glib.h>

#define SEC INT64_C(1000000)
#define T0 (1000 * SEC) /* any monotonic time */

/* The [limits] defaults: 50 a second, burst 200, with the abuse rule. */
static struct ratelimit_policy defaults(void)
{
	struct ratelimit_policy p;
	g_assert_cmpint(ratelimit_policy_per_second(&p, 50, 200), ==, 0);
	g_assert_cmpint(ratelimit_policy_set_abuse(&p, RATELIMIT_ABUSE_REFUSALS,
						   RATELIMIT_ABUSE_REGAIN_PER_SECOND), ==, 0);
	return p;
}

/* Takes N at NOW and returns how many were allowed. */
static unsigned take_n(struct ratelimit *b, const struct ratelimit_policy *p, int64_t now, unsigned n)
{
	unsigned allowed = 0;
	for (unsigned i = 0; i < n; i++)
		allowed += ratelimit_take(b, p, now) == RATELIMIT_ALLOW;
	return allowed;
}

static void test_size(void)
{
	/* Embedded in every session: three words. */
	g_assert_cmpuint(sizeof(struct ratelimit), ==, 24);
}

static void test_burst(void)
{
	struct ratelimit_policy p = defaults();
	struct ratelimit b;

	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 200), ==, 200);
	g_assert_cmpint(ratelimit_take(&b, &p, T0), ==, RATELIMIT_REFUSE);
}

static void test_refill(void)
{
	struct ratelimit_policy p = defaults();
	struct ratelimit b;

	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 200), ==, 200);
	/* One token every 20 ms, to the microsecond. */
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 19999), ==, RATELIMIT_REFUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 20000), ==, RATELIMIT_ALLOW);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 20000), ==, RATELIMIT_REFUSE);
	/* A second: 50 more. */
	g_assert_cmpuint(take_n(&b, &p, T0 + 20000 + SEC, 60), ==, 50);
	/* Long idle: full, never more than the burst. */
	g_assert_cmpuint(take_n(&b, &p, T0 + 3600 * SEC, 300), ==, 200);
}

static void test_fractional_rate(void)
{
	struct ratelimit_policy p;
	struct ratelimit b;

	/* 3 a second: a token every 333333.33 us, with no rounding drift. */
	g_assert_cmpint(ratelimit_policy_per_second(&p, 3, 1), ==, 0);
	ratelimit_init(&b, &p, T0);
	g_assert_cmpint(ratelimit_take(&b, &p, T0), ==, RATELIMIT_ALLOW);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 333333), ==, RATELIMIT_REFUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 333334), ==, RATELIMIT_ALLOW);
	/* Over 1000 s exactly 3000 tokens, taken one every 100 ms (burst 2:
	 * never full, so nothing is lost to the cap). */
	g_assert_cmpint(ratelimit_policy_per_second(&p, 3, 2), ==, 0);
	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 2), ==, 2);
	unsigned allowed = 0;
	for (int64_t t = T0 + 100000; t <= T0 + 1000 * SEC; t += 100000)
		allowed += ratelimit_take(&b, &p, t) == RATELIMIT_ALLOW;
	g_assert_cmpuint(allowed, ==, 3000);

	/* Per minute: 6 a minute is one every 10 s. */
	g_assert_cmpint(ratelimit_policy_per_minute(&p, 6, 6), ==, 0);
	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 10), ==, 6);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 10 * SEC - 1), ==, RATELIMIT_REFUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 10 * SEC), ==, RATELIMIT_ALLOW);
}

static void test_no_limit(void)
{
	struct ratelimit_policy p;
	struct ratelimit b;

	g_assert_cmpint(ratelimit_policy_per_second(&p, 0, 0), ==, 0);
	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 100000), ==, 100000);
}

static void test_reload(void)
{
	struct ratelimit_policy p = defaults(), q;
	struct ratelimit b;

	/* Lower: a full bucket is clamped to the new burst at once. */
	ratelimit_init(&b, &p, T0);
	g_assert_cmpint(ratelimit_policy_per_second(&q, 10, 5), ==, 0);
	g_assert_cmpuint(take_n(&b, &q, T0, 10), ==, 5);
	/* and refills at the new rate: one every 100 ms, up to 5. */
	g_assert_cmpuint(take_n(&b, &q, T0 + SEC / 10, 10), ==, 1);
	g_assert_cmpuint(take_n(&b, &q, T0 + 10 * SEC, 10), ==, 5);

	/* Higher: what is left is kept and refills to the new burst. */
	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 150), ==, 150); /* 50 left */
	g_assert_cmpint(ratelimit_policy_per_second(&q, 100, 1000), ==, 0);
	g_assert_cmpuint(take_n(&b, &q, T0 + SEC, 1000), ==, 150);
	g_assert_cmpuint(take_n(&b, &q, T0 + 100 * SEC, 2000), ==, 1000);

	/* Off, then on again: the bucket starts full. */
	g_assert_cmpint(ratelimit_policy_per_second(&q, 0, 0), ==, 0);
	g_assert_cmpuint(take_n(&b, &q, T0 + 101 * SEC, 5000), ==, 5000);
	g_assert_cmpuint(take_n(&b, &p, T0 + 101 * SEC, 300), ==, 200);
}

static void test_abuse_threshold(void)
{
	struct ratelimit_policy p = defaults();
	struct ratelimit b;

	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 200), ==, 200);
	/* 100 refusals are tolerated, the next one is abuse. */
	for (unsigned i = 0; i < RATELIMIT_ABUSE_REFUSALS; i++)
		g_assert_cmpint(ratelimit_take(&b, &p, T0), ==, RATELIMIT_REFUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0), ==, RATELIMIT_ABUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0), ==, RATELIMIT_ABUSE);
	/* 100 ms later: 5 tokens back, and one refusal (10 a second). */
	g_assert_cmpuint(take_n(&b, &p, T0 + SEC / 10, 5), ==, 5);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + SEC / 10), ==, RATELIMIT_REFUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + SEC / 10), ==, RATELIMIT_ABUSE);
	/* After 10 s of quiet the allowance is whole again. */
	g_assert_cmpuint(take_n(&b, &p, T0 + 11 * SEC, 200), ==, 200);
	for (unsigned i = 0; i < RATELIMIT_ABUSE_REFUSALS; i++)
		g_assert_cmpint(ratelimit_take(&b, &p, T0 + 11 * SEC), ==, RATELIMIT_REFUSE);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 11 * SEC), ==, RATELIMIT_ABUSE);
}

/* Sends every INTERVAL microseconds for up to SECS seconds; the time of
 * the first abuse verdict (relative to T0), or -1. */
static int64_t first_abuse(const struct ratelimit_policy *p, int64_t interval, int secs,
			   unsigned *refused)
{
	struct ratelimit b;

	*refused = 0;
	ratelimit_init(&b, p, T0);
	for (int64_t t = T0; t < T0 + secs * SEC; t += interval) {
		enum ratelimit_verdict v = ratelimit_take(&b, p, t);
		if (v == RATELIMIT_ABUSE)
			return t - T0;
		*refused += v == RATELIMIT_REFUSE;
	}
	return -1;
}

static void test_sustained_abuse(void)
{
	struct ratelimit_policy p = defaults(), lax;
	unsigned refused;

	/* Twice the rate: the burst lasts 4 s (200 / (100 - 50)), then 50
	 * refusals a second against 10 regained: abuse 2.5 s later. */
	int64_t t = first_abuse(&p, 10000, 60, &refused);
	g_assert_cmpint(t, >=, 6400000);
	g_assert_cmpint(t, <=, 6600000);
	/* A flood: abuse after the burst and 100 refusals. */
	g_assert_cmpint(first_abuse(&p, 1, 60, &refused), ==, 300);
	/* 10% over the rate is refused now and then, never cut off. */
	g_assert_cmpint(first_abuse(&p, 1000000 / 55, 120, &refused), ==, -1);
	g_assert_cmpuint(refused, >, 0);
	/* Without the abuse rule a flood is only refused. */
	g_assert_cmpint(ratelimit_policy_per_second(&lax, 50, 200), ==, 0);
	g_assert_cmpint(first_abuse(&lax, 1, 1, &refused), ==, -1);
	g_assert_cmpuint(refused, >, 900000);
}

static void test_clock_backwards(void)
{
	struct ratelimit_policy p = defaults();
	struct ratelimit b;

	ratelimit_init(&b, &p, T0);
	g_assert_cmpuint(take_n(&b, &p, T0, 300), ==, 200);
	/* Earlier times refund nothing and do not move the clock back. */
	g_assert_cmpint(ratelimit_take(&b, &p, T0 - 10 * SEC), !=, RATELIMIT_ALLOW);
	g_assert_cmpint(b.last_us, ==, T0);
	g_assert_cmpint(ratelimit_take(&b, &p, T0 + 20000), ==, RATELIMIT_ALLOW);
}

static void test_idle(void)
{
	struct ratelimit_policy p = defaults();
	struct ratelimit b;

	ratelimit_init(&b, &p, T0);
	g_assert_true(ratelimit_is_idle(&b, &p, T0));
	ratelimit_take(&b, &p, T0);
	g_assert_false(ratelimit_is_idle(&b, &p, T0));
	g_assert_false(ratelimit_is_idle(&b, &p, T0 + 19999));
	g_assert_true(ratelimit_is_idle(&b, &p, T0 + 20000));
	/* A spent refusal allowance is not idle either: tokens are back
	 * after 4 s, the 100 refusals after 10 s. */
	ratelimit_init(&b, &p, T0);
	take_n(&b, &p, T0, 300);
	g_assert_false(ratelimit_is_idle(&b, &p, T0 + 4 * SEC));
	g_assert_false(ratelimit_is_idle(&b, &p, T0 + 10 * SEC - 1));
	g_assert_true(ratelimit_is_idle(&b, &p, T0 + 10 * SEC));
}

static void test_invalid(void)
{
	struct ratelimit_policy p;

	g_assert_cmpint(ratelimit_policy_per_second(&p, 50, 0), ==, -EINVAL);
	g_assert_cmpint(ratelimit_policy_per_second(&p, RATELIMIT_MAX + 1, 10), ==, -EINVAL);
	g_assert_cmpint(ratelimit_policy_per_second(&p, 50, RATELIMIT_MAX + 1), ==, -EINVAL);
	g_assert_cmpint(ratelimit_policy_per_second(&p, RATELIMIT_MAX, RATELIMIT_MAX), ==, 0);
	g_assert_cmpint(ratelimit_policy_per_minute(&p, 60 * RATELIMIT_MAX, RATELIMIT_MAX), ==, 0);
	g_assert_cmpint(ratelimit_policy_set_abuse(&p, 0, 10), ==, -EINVAL);
	g_assert_cmpint(ratelimit_policy_set_abuse(&p, 10, 0), ==, -EINVAL);

	/* The extremes: no overflow after any idle time. */
	struct ratelimit b;
	ratelimit_init(&b, &p, 0);
	g_assert_cmpuint(take_n(&b, &p, 0, 10), ==, 10);
	g_assert_cmpint(ratelimit_take(&b, &p, INT64_MAX / 2), ==, RATELIMIT_ALLOW);
	g_assert_cmpint(b.tokens, ==, (int64_t)RATELIMIT_MAX * 60000000 - 60000000);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/ratelimit/size", test_size);
	g_test_add_func("/ratelimit/burst", test_burst);
	g_test_add_func("/ratelimit/refill", test_refill);
	g_test_add_func("/ratelimit/fractional-rate", test_fractional_rate);
	g_test_add_func("/ratelimit/no-limit", test_no_limit);
	g_test_add_func("/ratelimit/reload", test_reload);
	g_test_add_func("/ratelimit/abuse-threshold", test_abuse_threshold);
	g_test_add_func("/ratelimit/sustained-abuse", test_sustained_abuse);
	g_test_add_func("/ratelimit/clock-backwards", test_clock_backwards);
	g_test_add_func("/ratelimit/idle", test_idle);
	g_test_add_func("/ratelimit/invalid", test_invalid);
	return g_test_run();
}
