/* metrics: counters and gauges written by the event loop with relaxed
 * atomics, read by the admin thread without locks. */
#pragma once

#include "protocol.h"

#include <stdatomic.h>
#include <stdint.h>

/* Every configured bound, counted each time it is hit. */
enum metrics_limit {
	LIMIT_MESSAGE_BYTES,
	LIMIT_JSON_DEPTH,
	LIMIT_METADATA_BYTES,
	LIMIT_QUEUED_BYTES,
	LIMIT_SESSIONS,
	LIMIT_PEERS_PER_ROOM,
	LIMIT__COUNT
};

struct metrics {
	atomic_uint_fast64_t connections_total;
	atomic_int_fast64_t connections;
	atomic_int_fast64_t peers;
	atomic_int_fast64_t rooms;
	atomic_uint_fast64_t rooms_created_total;
	/* by type; MSG_UNKNOWN counts what could not be decoded */
	atomic_uint_fast64_t messages_received[MSG__COUNT];
	atomic_uint_fast64_t messages_routed;
	atomic_uint_fast64_t errors_sent[ERR__COUNT];
	/* [ERR__COUNT] counts successes, the rest refusals by code */
	atomic_uint_fast64_t registrations[ERR__COUNT + 1];
	atomic_uint_fast64_t bytes_received;
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t limit_hits[LIMIT__COUNT];
};

extern struct metrics metrics;

#define metrics_add(field, n) atomic_fetch_add_explicit(&metrics.field, (n), memory_order_relaxed)
#define metrics_inc(field) metrics_add(field, 1)
#define metrics_set(field, v) atomic_store_explicit(&metrics.field, (v), memory_order_relaxed)
#define metrics_get(field) atomic_load_explicit(&metrics.field, memory_order_relaxed)

const char *metrics_limit_name(enum metrics_limit l);
