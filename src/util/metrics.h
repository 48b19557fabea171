/* metrics: counters, gauges and histograms written by the event loop with
 * relaxed atomics and read by the admin thread without locks, plus the
 * Prometheus and JSON renderings of them. */
#pragma once

#include "core/protocol.h"

#include <glib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Every configured bound, counted each time it is hit. */
enum metrics_limit {
	LIMIT_MESSAGE_BYTES,
	LIMIT_JSON_DEPTH,
	LIMIT_JSON_VALUES,
	LIMIT_METADATA_BYTES,
	LIMIT_QUEUED_BYTES,
	LIMIT_SESSIONS,
	LIMIT_PEERS_PER_ROOM,
	LIMIT_MESSAGES_PER_SECOND,
	LIMIT_CONNECTIONS_PER_ADDRESS,
	LIMIT_REGISTRATIONS_PER_ADDRESS,
	LIMIT_FAILED_REGISTRATIONS_PER_ADDRESS,  /* [limits] failed_registrations_per_address_per_minute */
	LIMIT_FAILED_REGISTRATIONS_PER_CONNECTION, /* a connection closed for its failed registers */
	LIMIT_ANSWER_IN_FLIGHT,  /* a second large answer asked for before the first was read */
	LIMIT_ROOMS,             /* [rooms] max_rooms */
	LIMIT_ROOMS_PER_CREATOR, /* [rooms] max_rooms_per_creator */
	LIMIT_ROOMS_PER_ADDRESS, /* [rooms] max_rooms_per_address */
	LIMIT_FILTER_WORK,       /* [limits] max_filter_work */
	LIMIT_HANDSHAKE_TIMEOUT, /* [limits] handshake_timeout_ms */
	LIMIT_HTTP_BODY,                  /* a plain HTTP request's body over 64 KiB */
	LIMIT_PUBLIC_KEYS_PER_ACCOUNT,    /* [auth] max_public_keys_per_account */
	LIMIT_AUTHORIZED_KEYS_LISTED,     /* [auth] max_authorized_keys */
	LIMIT_CLUSTER_OUTSTANDING,        /* cluster: forwards in flight to Redis */
	LIMIT_CLUSTER_BUFFERED_EVENTS,    /* cluster: room events buffered while a view loads */
	LIMIT_WATCHES_PER_SESSION,        /* [limits] watches_per_session */
	LIMIT_WATCHES_PER_ROOM,           /* [limits] watches_per_room */
	LIMIT__COUNT
};

/* Why a connection was refused before it became a session. */
enum metrics_refusal {
	REFUSED_MAX_SESSIONS,
	REFUSED_NOT_LOOPBACK,
	REFUSED_DRAINING,
	REFUSED_PER_ADDRESS,
	REFUSED__COUNT
};

/* Why the admin port turned a connection or request away. */
enum metrics_admin_refusal {
	ADMIN_REFUSED_PER_ADDRESS,   /* [admin] connections_per_address */
	ADMIN_REFUSED_LIMIT,         /* [admin] max_connections */
	ADMIN_REFUSED_DESCRIPTORS,   /* accept() failed: the open file limit */
	ADMIN_REFUSED_FRAMING,       /* ambiguous Content-Length / Transfer-Encoding */
	ADMIN_REFUSED_SLOW_REQUEST,  /* [admin] request_timeout */
	ADMIN_REFUSED_RATE_LIMITED,  /* [admin] requests_per_second (requests) */
	ADMIN_REFUSED__COUNT
};
/* What became of a relayed type (protocol_is_relay). */
enum metrics_relay { RELAY_FORWARDED, RELAY_NO_TARGET, RELAY_FAILED, RELAY__COUNT };

/* Whether the server demands credentials: the configuration's choice
 * ([issuer] groups, [server] require_auth, allow_anonymous), never the
 * key table's. */
enum metrics_auth_mode {
	METRICS_AUTH_UNKNOWN, /* not configured yet */
	METRICS_AUTH_OFF_LOOPBACK,
	METRICS_AUTH_OFF_ANYONE,
	METRICS_AUTH_REQUIRED,
};

/* enum cluster_reason (src/cluster/cluster.h); [0] unused */
#define METRICS_CLUSTER_REASONS 7
/* Latency histograms: bucket upper bounds in seconds, and +Inf. */
#define METRICS_BUCKETS 14
struct metrics_histogram {
	atomic_uint_fast64_t counts[METRICS_BUCKETS + 1]; /* not cumulative */
	atomic_uint_fast64_t sum_ns;
};

struct metrics {
	atomic_uint_fast64_t connections_total;
	atomic_int_fast64_t connections;
	atomic_int_fast64_t lingering_sockets; /* closed by us, draining */
	atomic_int_fast64_t peers;
	atomic_int_fast64_t rooms;
	atomic_uint_fast64_t rooms_created_total;
	atomic_int_fast64_t persistent_rooms; /* unexpired, counted by the room quotas */
	/* by type; MSG_UNKNOWN counts what could not be decoded */
	atomic_uint_fast64_t messages_received[MSG__COUNT];
	atomic_uint_fast64_t messages_routed;
	atomic_uint_fast64_t errors_sent[ERR__COUNT];
	atomic_uint_fast64_t errors_suppressed[ERR__COUNT]; /* not told to v2.0 sessions */
	atomic_uint_fast64_t relayed[MSG__COUNT][RELAY__COUNT]; /* relayed types only */
	atomic_uint_fast64_t sessions_superseded; /* v2.0 sockets kept open, taken over */
	atomic_uint_fast64_t http_deletes_ignored; /* POST /delete-peer, /delete-peers-and-room */
	atomic_uint_fast64_t superseded_closed;   /* and closed by a third registration */
	/* open mode: credentials it cannot check, ignored; [0] api_key, [1] jwt, [2] id_token */
	atomic_uint_fast64_t credentials_ignored[3];
	atomic_uint_fast64_t default_room_registrations; /* [rooms] default_room used */
	/* [ERR__COUNT] counts successes, the rest refusals by code */
	atomic_uint_fast64_t registrations[ERR__COUNT + 1];
	atomic_uint_fast64_t bytes_received;
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t limit_hits[LIMIT__COUNT];
	atomic_uint_fast64_t sessions_refused[REFUSED__COUNT];
	atomic_uint_fast64_t jwks_fetches[2]; /* [0] failed, [1] ok */
	atomic_int_fast64_t jwks_stale; /* key sets whose last refresh failed (cached keys in use) */
	atomic_uint_fast64_t tls_handshakes[2]; /* [0] failed, [1] ok */
	atomic_int_fast64_t tls_certificate_expiry; /* served notAfter, epoch seconds; 0: no TLS */
	/* copied from their owners by the loop's tick */
	atomic_uint_fast64_t address_evictions_total;
	atomic_int_fast64_t store_pending_writes;
	atomic_uint_fast64_t store_retries;    /* a write tried again: database locked */
	atomic_uint_fast64_t store_queue_full; /* a write refused: queue full */
	atomic_uint_fast64_t store_errors[2];  /* backend failures: [0] sqlite, [1] redis */
	atomic_uint_fast64_t store_notices;    /* redis: changes applied from other instances */
	atomic_uint_fast64_t store_reloads;    /* redis: full reloads after (re)subscribing */
	atomic_uint_fast64_t admin_refused[ADMIN_REFUSED__COUNT];
	atomic_uint_fast64_t log_lines_repeated_total; /* [log] repeat_interval */
	atomic_int auth_mode; /* enum metrics_auth_mode, from the configuration */
	/* presence and watches (core/watch.h) */
	atomic_int_fast64_t watches, presence_subscriptions;
	atomic_uint_fast64_t watch_events[PROTOCOL_EVENT__COUNT];
	atomic_uint_fast64_t watches_lost; /* reason queue_full */
	atomic_uint_fast64_t watches_lost_work; /* reason filter_work */
	atomic_uint_fast64_t watch_evaluations;
	struct metrics_histogram route_latency;
	struct metrics_histogram discovery_duration;
	/* cluster (src/cluster/cluster.c) */
	atomic_bool cluster_up;
	atomic_bool cluster_seen_up; /* up once since the start: /ready */
	atomic_bool cluster_configured; /* [cluster] redis is set */
	atomic_int_fast64_t cluster_instances; /* live, as the last sweep saw them */
	atomic_uint_fast64_t cluster_forwarded, cluster_received;
	atomic_uint_fast64_t cluster_forward_failures[METRICS_CLUSTER_REASONS];
	struct metrics_histogram cluster_lag; /* change written until a view applied it */
	/* the loop's liveness and the daemon's state, for /health and /ready */
	atomic_int_fast64_t heartbeat_ms; /* CLOCK_MONOTONIC */
	atomic_bool ready;
	atomic_bool draining;
	atomic_uint_fast64_t max_sessions; /* configured, for alerts near it */
	gint64 start_time; /* seconds since the epoch; set once before threads */
};

extern struct metrics metrics;

#define metrics_add(field, n) atomic_fetch_add_explicit(&metrics.field, (n), memory_order_relaxed)
#define metrics_inc(field) metrics_add(field, 1)
#define metrics_dec(field) metrics_add(field, -1)
#define metrics_set(field, v) atomic_store_explicit(&metrics.field, (v), memory_order_relaxed)
#define metrics_get(field) atomic_load_explicit(&metrics.field, memory_order_relaxed)

/* Whether a register can be answered with CODE: the result labels of
 * rtcsignald_registrations_total exported before they occur. */
bool metrics_registration_result(enum err_code code);
/* The reason label of a refusal, also its log code. */
const char *metrics_refusal_name(enum metrics_refusal r);
uint64_t metrics_now_ns(void); /* CLOCK_MONOTONIC */
void metrics_observe(struct metrics_histogram *h, uint64_t ns);
void metrics_heartbeat(void);

/* Registered peers by role as the loop saw them: the most populous roles
 * by name, the rest folded into "other" so labels stay few. */
struct metrics_roles {
	unsigned n;
	struct {
		char *role;
		gint64 peers;
	} *items;
};
/* Appends ROLE with its PEERS (registry_role_fn's shape: DATA is R). */
void metrics_roles_add(const char *role, gint64 peers, void *r);
void metrics_roles_clear(struct metrics_roles *r);

enum metrics_health { HEALTH_OK, HEALTH_UNHEALTHY, HEALTH_DRAINING };
#define METRICS_STALL_MS 5000
/* Draining wins; a loop that has not ticked for METRICS_STALL_MS is
 * unhealthy. */
enum metrics_health metrics_health(gint64 now_ms);

/* Prometheus text format 0.0.4: every family with HELP and TYPE. */
void metrics_render_prometheus(GString *out, const struct metrics_roles *roles);
/* {"timestamp","active_rooms","active_connections","peers_by_role",
 *  "total_connections","total_messages","rooms_created"} */
void metrics_render_json(GString *out, const struct metrics_roles *roles);
/* [cluster]: {"INSTANCE":PEERS,...} for metrics_render_json's "cluster"
 * ("instance_peers"; rtcsignalctl status); NULL: none. */
void metrics_set_cluster_peers(const char *json);
