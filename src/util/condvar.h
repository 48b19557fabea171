/* condvar: pthread condition variables on CLOCK_MONOTONIC, for the two
 * places one thread waits on another (the admin thread on the loop in
 * loopcall, the loop on the store's worker at close).  pthread
 * rather than GMutex/GCond: the same thing, but GLib's futex-based
 * mutexes are invisible to ThreadSanitizer, which then reports races
 * that are not there. */
#pragma once

#include <glib.h>
#include <pthread.h>
#include <time.h>

void condvar_init(pthread_cond_t *c);
/* The absolute CLOCK_MONOTONIC time of g_get_monotonic_time() value US,
 * for pthread_cond_timedwait. */
struct timespec condvar_deadline(gint64 us);
