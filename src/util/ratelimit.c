#include "util/ratelimit.h"

#include <errno.h>

/* One token.  Refilling at N tokens a minute adds N units a microsecond. */
#define UNIT INT64_C(60000000)

static int rate_init(struct ratelimit_rate *r, uint64_t per_minute, uint32_t burst)
{
	if (per_minute > 60ull * RATELIMIT_MAX ||
	    (per_minute && (burst < 1 || burst > RATELIMIT_MAX)))
		return -EINVAL;
	/* No limit: a bottomless bucket, kept full (fill_us 0).  Should a
	 * reload set a limit, it is clamped to that burst: it starts full. */
	r->cap = per_minute ? burst * UNIT : INT64_MAX / 2;
	r->per_minute = (uint32_t)per_minute;
	r->fill_us = per_minute ? (r->cap + (int64_t)per_minute - 1) / (int64_t)per_minute : 0;
	return 0;
}

/* TOKENS after ELAPSED microseconds.  Past fill_us the bucket is full, so
 * the product below stays under cap + per_minute: no overflow. */
static int64_t refill(int64_t tokens, const struct ratelimit_rate *r, int64_t elapsed)
{
	if (elapsed >= r->fill_us)
		return r->cap;
	tokens += elapsed * r->per_minute;
	return tokens < r->cap ? tokens : r->cap; /* also clamps a burst lowered by a reload */
}

static int policy_init(struct ratelimit_policy *p, uint64_t per_minute, uint32_t burst)
{
	int r = rate_init(&p->rate, per_minute, burst);
	if (r < 0)
		return r;
	return rate_init(&p->refusals, 0, 0);
}

int ratelimit_policy_per_second(struct ratelimit_policy *p, uint32_t per_second, uint32_t burst)
{
	return policy_init(p, 60ull * per_second, burst);
}

int ratelimit_policy_per_minute(struct ratelimit_policy *p, uint32_t per_minute, uint32_t burst)
{
	return policy_init(p, per_minute, burst);
}

int ratelimit_policy_set_abuse(struct ratelimit_policy *p, uint32_t refusals,
			       uint32_t regain_per_second)
{
	if (regain_per_second < 1)
		return -EINVAL;
	return rate_init(&p->refusals, 60ull * regain_per_second, refusals);
}

void ratelimit_init(struct ratelimit *b, const struct ratelimit_policy *p, int64_t now_us)
{
	b->tokens = p->rate.cap;
	b->allowance = p->refusals.cap;
	b->last_us = now_us;
}

static int64_t elapsed_since(const struct ratelimit *b, int64_t now_us)
{
	/* A clock that steps back refunds nothing. */
	return now_us > b->last_us ? now_us - b->last_us : 0;
}

enum ratelimit_verdict ratelimit_take(struct ratelimit *b, const struct ratelimit_policy *p,
				      int64_t now_us)
{
	int64_t elapsed = elapsed_since(b, now_us);

	if (elapsed)
		b->last_us = now_us;
	/* Both refill on every take: they share last_us. */
	b->tokens = refill(b->tokens, &p->rate, elapsed);
	b->allowance = refill(b->allowance, &p->refusals, elapsed);
	if (b->tokens >= UNIT) {
		b->tokens -= UNIT;
		return RATELIMIT_ALLOW;
	}
	if (b->allowance >= UNIT) {
		b->allowance -= UNIT;
		return RATELIMIT_REFUSE;
	}
	return RATELIMIT_ABUSE;
}

bool ratelimit_is_idle(const struct ratelimit *b, const struct ratelimit_policy *p, int64_t now_us)
{
	int64_t elapsed = elapsed_since(b, now_us);

	return refill(b->tokens, &p->rate, elapsed) == p->rate.cap &&
	       refill(b->allowance, &p->refusals, elapsed) == p->refusals.cap;
}
