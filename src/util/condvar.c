#include "util/condvar.h"

void condvar_init(pthread_cond_t *c)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(c, &attr);
	pthread_condattr_destroy(&attr);
}

struct timespec condvar_deadline(gint64 us)
{
	/* g_get_monotonic_time() is CLOCK_MONOTONIC in microseconds. */
	return (struct timespec){ .tv_sec = us / G_USEC_PER_SEC,
				  .tv_nsec = (long)(us % G_USEC_PER_SEC) * 1000 };
}
