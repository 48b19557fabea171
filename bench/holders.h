/* holders: forked worker processes that each open and register a slice of
 * a crowd and keep it open (answering pings) until released.  One process
 * may hold about 19,900 sockets (RLIMIT_NOFILE is 20,000 and cannot be
 * raised), so larger crowds need several; they also keep the idle peers'
 * client-side work off the measuring process. */
#pragma once

#include "crowd.h"

#include <sys/types.h>

/* At most this many connections per worker process. */
#define HOLDERS_MAX_PER_PROC 19000

struct holders;

struct holders_result {
	unsigned ready, failed, procs;
	int64_t t_first, t_last; /* monotonic ns, over every worker */
	bool timed_out;
};

/* Forks max(PROCS, what the fd limit needs) workers sharing SPEC's peers
 * (ops: none; they only hold).  Call before the caller opens sockets of
 * its own: workers close every inherited descriptor.  A worker gives up at
 * DEADLINE + 10 s if never released. */
struct holders *holders_start(const struct crowd_spec *spec, unsigned procs, int64_t deadline);
/* Waits until every worker has its slice ready (or failed) or DEADLINE. */
void holders_wait_ready(struct holders *h, int64_t deadline, struct holders_result *r);
/* Releases the workers (they close their sockets and exit), adds their
 * counts to COUNTS and reaps them. */
void holders_stop(struct holders *h, json_object *counts);
