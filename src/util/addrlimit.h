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
 * Registrations: two token buckets per address, each N a minute (N/60 a
 * second) and a burst of N: failed_per_minute for failed attempts (what
 * guessing produces), and regs_per_minute, much higher, for successful
 * ones (a lab behind one NAT reconnecting at once).  24 bytes of state and O(1) per attempt; the
 * long-run rate is exact, and any 60 s window sees at most 2N (R at once,
 * then N refilled), where an exact sliding window would keep N timestamps
 * per address.  When the table is full, the least recently used address
 * is forgotten (counted in reg_evictions): it starts again with a full
 * bucket, which costs only precision, and only against someone holding
 * more addresses than the table; refusing new addresses instead would let
 * that someone lock everybody else out. */
#pragma once

#include "util/netaddr.h"
#include "util/ratelimit.h"

#include <stdbool.h>
#include <stdint.h>

struct addrlimit_limits {
	unsigned max_addresses;     /* per table, at least 1 */
	unsigned conns_per_address; /* 0: no limit (still counted) */
	unsigned regs_per_minute;   /* successful registrations; 0: no limit */
	unsigned failed_per_minute; /* failed ones; 0: no limit (both 0: nothing tracked) */
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

/* Before a registration attempt from A at NOW_US: 0, or -EAGAIN (A's
 * failure budget is spent) or -EDQUOT (its success ceiling is reached):
 * answer RATE_LIMITED.  Takes nothing: the outcome is told with
 * addrlimit_register_done, so only failures spend the failure budget. */
int addrlimit_register_check(struct addrlimit *al, const struct netaddr *a, int64_t now_us);
void addrlimit_register_done(struct addrlimit *al, const struct netaddr *a, bool ok, int64_t now_us);
/* An attempt whose outcome is not told apart (the key API): 0, or
 * -EAGAIN over either budget; counted against both. */
int addrlimit_register(struct addrlimit *al, const struct netaddr *a, int64_t now_us);

/* At most this many entries are freed by one sweep (about 2 ms): a crowd
 * of addresses that all went quiet at once does not stall the loop. */
#define ADDRLIMIT_SWEEP_MAX 5000

/* Forgets registration entries whose bucket is full again; returns how
 * many.  Meant for a 1 s timer.  Examines the entries last used more than
 * 60/N s ago (N the larger of the two rates: 10 ms at the defaults),
 * oldest first. */
unsigned addrlimit_sweep(struct addrlimit *al, int64_t now_us);

void addrlimit_get_stats(const struct addrlimit *al, struct addrlimit_stats *out);
