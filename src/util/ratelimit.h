/* ratelimit: token buckets over caller-supplied time.
 *
 * The rate lives in a shared policy and only the state lives in each
 * bucket, so a bucket is three words (it is embedded in every session)
 * and a reloaded policy applies to every bucket at once.  Pure: no clock
 * and no I/O; NOW_US is monotonic microseconds (g_get_monotonic_time()).
 *
 * Abuse: a refused message also spends one unit of a second allowance,
 * RATELIMIT_ABUSE_REFUSALS refusals that come back at
 * RATELIMIT_ABUSE_REGAIN_PER_SECOND.  A refusal with that allowance empty
 * is abuse.  So a burst a little over the limit gets RATE_LIMITED answers
 * only, while a client that keeps sending more than 10 messages a second
 * over its rate is cut off within seconds of spending its burst (at twice
 * the default rate, 50 refused a second: after 100 / (50 - 10) = 2.5 s). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Largest rate (per second) and burst a policy accepts. */
#define RATELIMIT_MAX 1000000u

#define RATELIMIT_ABUSE_REFUSALS 100u
#define RATELIMIT_ABUSE_REGAIN_PER_SECOND 10u

/* How fast one bucket fills.  Built by the functions below.  Tokens are
 * counted in units of 1/60,000,000: at N a minute a bucket gains exactly N
 * units a microsecond, so refills are exact integers for any rate. */
struct ratelimit_rate {
	int64_t cap;         /* burst, in units */
	int64_t fill_us;     /* from empty to full: after that long, full */
	uint32_t per_minute; /* 0: no limit */
};

struct ratelimit_policy {
	struct ratelimit_rate rate;
	struct ratelimit_rate refusals; /* the abuse allowance; per_minute 0: no abuse rule */
};

/* One bucket's state: 24 bytes. */
struct ratelimit {
	int64_t tokens;    /* in units */
	int64_t allowance; /* refusals left before abuse, in units */
	int64_t last_us;   /* time of the last take */
};

enum ratelimit_verdict {
	RATELIMIT_ALLOW,  /* go ahead */
	RATELIMIT_REFUSE, /* over the rate: drop it, answer RATE_LIMITED */
	RATELIMIT_ABUSE,  /* over the rate with no refusals left: close with 1008 */
};

/* PER_SECOND or PER_MINUTE tokens (0: no limit) and at most BURST at once
 * (1..RATELIMIT_MAX), with no abuse rule.  -EINVAL when out of range. */
int ratelimit_policy_per_second(struct ratelimit_policy *p, uint32_t per_second, uint32_t burst);
int ratelimit_policy_per_minute(struct ratelimit_policy *p, uint32_t per_minute, uint32_t burst);
/* Turns the abuse rule on: REFUSALS refusals (1..RATELIMIT_MAX), regained
 * at REGAIN_PER_SECOND (1..RATELIMIT_MAX). */
int ratelimit_policy_set_abuse(struct ratelimit_policy *p, uint32_t refusals,
			       uint32_t regain_per_second);

/* A full bucket with its whole refusal allowance. */
void ratelimit_init(struct ratelimit *b, const struct ratelimit_policy *p, int64_t now_us);
/* Takes one token at NOW_US.  Only RATELIMIT_ALLOW lets the message in. */
enum ratelimit_verdict ratelimit_take(struct ratelimit *b, const struct ratelimit_policy *p,
				      int64_t now_us);
/* True when the bucket and its allowance are full again at NOW_US:
 * forgetting it loses nothing, since a new one starts full. */
bool ratelimit_is_idle(const struct ratelimit *b, const struct ratelimit_policy *p, int64_t now_us);
