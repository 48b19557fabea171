/* addrlimit: per-address accounting: concurrent connections and
 * registration attempts per client address, in tables of bounded size.
 * Pure: no clock and no I/O; NOW_US is monotonic microseconds.
 *
 * "Address" here is an IPv4 address or an IPv6 /64: one IPv6 host usually
 * holds a whole /64, and counting each /128 apart would let it open as
 * many connections as it likes.
 *
 * Connections: a count per address, dropped at zero.  When the table
 * holds max_addresses addresses, a new address is refused (-ENOSPC): an
 * entry is a live count that cannot be forgotten without breaking the
 * close that will come.  With max_addresses >= max_sessions the table is
 * never full, since each entry holds at least one open connection.
 *
 * Registrations: a token bucket per address, R a minute (R/60 a second)
 * and a burst of R.  24 bytes of state and O(1) per attempt; the
 * long-run rate is exact, and any 60 s window sees at most 2R (R at once,
 * then R refilled), where an exact sliding window would keep R timestamps
 * per address.  When the table is full, the least recently used address
 * is forgotten (counted in reg_evictions): it starts again with a full
 * bucket, which costs only precision, and only against someone holding
 * more addresses than the table; refusing new addresses instead would let
 * that someone lock everybody else out. */
#pragma once

#include "util/netaddr.h"
#include "util/ratelimit.h"

#include <stdint.h>

struct addrlimit_limits {
	unsigned max_addresses;     /* per table, at least 1 */
	unsigned conns_per_address; /* 0: no limit (still counted) */
	unsigned regs_per_minute;   /* 0: no limit (nothing tracked) */
};

struct addrlimit_stats {
	unsigned conn_addresses; /* tracked now */
	unsigned reg_addresses;
	uint64_t conn_table_full; /* connections refused with -ENOSPC */
	uint64_t reg_evictions;   /* addresses forgotten to make room */
};

struct addrlimit;

/* -EINVAL for limits out of range. */
int addrlimit_new(const struct addrlimit_limits *limits, struct addrlimit **out);
void addrlimit_free(struct addrlimit *al);
/* A reload: applies at once, counts and buckets are kept (a lower
 * max_addresses forgets the least recently used registration entries). */
int addrlimit_set_limits(struct addrlimit *al, const struct addrlimit_limits *limits);

/* One more connection from A: 0, or -EDQUOT (conns_per_address reached),
 * or -ENOSPC (table full).  Only a 0 must be paired with a close. */
int addrlimit_conn_open(struct addrlimit *al, const struct netaddr *a);
void addrlimit_conn_close(struct addrlimit *al, const struct netaddr *a);
unsigned addrlimit_conn_count(const struct addrlimit *al, const struct netaddr *a);

/* One registration attempt from A at NOW_US: 0, or -EAGAIN (over the
 * rate: answer RATE_LIMITED).  Every attempt counts, successful or not. */
int addrlimit_register(struct addrlimit *al, const struct netaddr *a, int64_t now_us);

/* At most this many entries are freed by one sweep (about 2 ms): a crowd
 * of addresses that all went quiet at once does not stall the loop. */
#define ADDRLIMIT_SWEEP_MAX 5000

/* Forgets registration entries whose bucket is full again; returns how
 * many.  Meant for a 1 s timer.  Examines the entries last used more than
 * 60/R s ago (1 s at the default), oldest first. */
unsigned addrlimit_sweep(struct addrlimit *al, int64_t now_us);

void addrlimit_get_stats(const struct addrlimit *al, struct addrlimit_stats *out);
