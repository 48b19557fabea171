#include "util/metrics.h"

#include "util/json.h"
#include "util/msgbuf.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct metrics metrics;

static const double bucket_bounds[METRICS_BUCKETS] = {
	0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001,    0.0025,  0.005,    0.01,    0.025,  0.1,     1.0,
};

bool metrics_registration_result(enum err_code code)
{
	switch (code) {
	case ERR_INVALID_MESSAGE: case ERR_AUTH_REQUIRED: case ERR_AUTH_FAILED:
	case ERR_ROOM_NOT_FOUND: case ERR_ROOM_EXPIRED: case ERR_ROOM_FULL:
	case ERR_PEER_ID_TAKEN: case ERR_RATE_LIMITED:
		return true;
	default:
		return false;
	}
}

static const char *const limit_names[LIMIT__COUNT] = {
	[LIMIT_MESSAGE_BYTES] = "max_message_bytes",
	[LIMIT_JSON_DEPTH] = "max_json_depth",
	[LIMIT_JSON_VALUES] = "max_json_values",
	[LIMIT_METADATA_BYTES] = "max_metadata_bytes",
	[LIMIT_QUEUED_BYTES] = "max_queued_bytes",
	[LIMIT_SESSIONS] = "max_sessions",
	[LIMIT_PEERS_PER_ROOM] = "max_peers_per_room",
	[LIMIT_MESSAGES_PER_SECOND] = "messages_per_second",
	[LIMIT_CONNECTIONS_PER_ADDRESS] = "connections_per_address",
	[LIMIT_REGISTRATIONS_PER_ADDRESS] = "registrations_per_address_per_minute",
	[LIMIT_FAILED_REGISTRATIONS_PER_ADDRESS] = "failed_registrations_per_address_per_minute",
	[LIMIT_FAILED_REGISTRATIONS_PER_CONNECTION] = "failed_registrations_per_connection",
	[LIMIT_ANSWER_IN_FLIGHT] = "answer_in_flight",
	[LIMIT_ROOMS] = "max_rooms",
	[LIMIT_ROOMS_PER_CREATOR] = "max_rooms_per_creator",
	[LIMIT_ROOMS_PER_ADDRESS] = "max_rooms_per_address",
	[LIMIT_FILTER_WORK] = "max_filter_work",
	[LIMIT_WATCHES_PER_SESSION] = "watches_per_session",
	[LIMIT_WATCHES_PER_ROOM] = "watches_per_room",
	[LIMIT_HANDSHAKE_TIMEOUT] = "handshake_timeout_ms",
	[LIMIT_HTTP_BODY] = "http_body_bytes",
	[LIMIT_PUBLIC_KEYS_PER_ACCOUNT] = "max_public_keys_per_account",
	[LIMIT_AUTHORIZED_KEYS_LISTED] = "max_authorized_keys",
	[LIMIT_CLUSTER_OUTSTANDING] = "cluster_max_outstanding",
	[LIMIT_CLUSTER_BUFFERED_EVENTS] = "cluster_max_buffered_events",
};

static const char *const refusal_names[REFUSED__COUNT] = {
	[REFUSED_MAX_SESSIONS] = "max_sessions",
	[REFUSED_NOT_LOOPBACK] = "not_loopback",
	[REFUSED_DRAINING] = "draining",
	[REFUSED_PER_ADDRESS] = "connections_per_address",
};

const char *metrics_refusal_name(enum metrics_refusal r)
{
	return refusal_names[r];
}

uint64_t metrics_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void metrics_observe(struct metrics_histogram *h, uint64_t ns)
{
	double s = (double)ns / 1e9;
	unsigned i = 0;
	while (i < METRICS_BUCKETS && s > bucket_bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void metrics_heartbeat(void)
{
	metrics_set(heartbeat_ms, (int_fast64_t)(metrics_now_ns() / 1000000u));
}

enum metrics_health metrics_health(gint64 now_ms)
{
	if (metrics_get(draining))
		return HEALTH_DRAINING;
	if (now_ms - metrics_get(heartbeat_ms) > METRICS_STALL_MS)
		return HEALTH_UNHEALTHY;
	return HEALTH_OK;
}

void metrics_roles_add(const char *role, gint64 peers, void *data)
{
	struct metrics_roles *r = data;

	r->items = g_renew(typeof(*r->items), r->items, r->n + 1);
	r->items[r->n].role = g_strdup(role);
	r->items[r->n++].peers = peers;
}

void metrics_roles_clear(struct metrics_roles *r)
{
	for (unsigned i = 0; i < r->n; i++)
		g_free(r->items[i].role);
	g_free(r->items);
	r->items = NULL;
	r->n = 0;
}

/* --- Prometheus text --- */

static void family(GString *o, const char *name, const char *type, const char *help)
{
	g_string_append_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(GString *o, const char *name, const char *label, const char *value, double v)
{
	if (label)
		g_string_append_printf(o, "%s{%s=\"%s\"} %.17g\n", name, label, value, v);
	else
		g_string_append_printf(o, "%s %.17g\n", name, v);
}

static void counter(GString *o, const char *name, const char *help, double v)
{
	family(o, name, "counter", help);
	sample(o, name, NULL, NULL, v);
}

static void gauge(GString *o, const char *name, const char *help, double v)
{
	family(o, name, "gauge", help);
	sample(o, name, NULL, NULL, v);
}

/* A label value: Prometheus escapes \ " and newline. */
static void append_label_value(GString *o, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			g_string_append_c(o, '\\'), g_string_append_c(o, *v);
		else if (*v == '\n')
			g_string_append(o, "\\n");
		else
			g_string_append_c(o, *v);
	}
}

static void histogram(GString *o, const char *name, const char *help,
		      struct metrics_histogram *h)
{
	uint64_t cumulative = 0;

	family(o, name, "histogram", help);
	for (unsigned i = 0; i <= METRICS_BUCKETS; i++) {
		cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
		if (i < METRICS_BUCKETS)
			g_string_append_printf(o, "%s_bucket{le=\"%g\"} %" G_GUINT64_FORMAT "\n", name,
					       bucket_bounds[i], cumulative);
		else
			g_string_append_printf(o, "%s_bucket{le=\"+Inf\"} %" G_GUINT64_FORMAT "\n", name,
					       cumulative);
	}
	g_string_append_printf(o, "%s_sum %.9f\n", name,
			       (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
	/* _count from the same reads as the buckets: never torn against them */
	g_string_append_printf(o, "%s_count %" G_GUINT64_FORMAT "\n", name, cumulative);
}

/* Gauges are written by one thread and may be read mid-update of a
 * related one; never report a negative count. */
static gint64 nonneg(gint64 v)
{
	return v < 0 ? 0 : v;
}

struct process_stats {
	double cpu_seconds, start_time;
	uint64_t rss_bytes, vm_bytes;
	unsigned open_fds;
	rlim_t max_fds;
};

static void read_process(struct process_stats *p)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	char buf[1024];
	FILE *f;

	memset(p, 0, sizeof *p);
	if ((f = fopen("/proc/self/stat", "r"))) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = '\0';
		fclose(f);
		/* fields after the command name, which may hold spaces */
		const char *rest = strrchr(buf, ')');
		unsigned long utime, stime;
		unsigned long long starttime;
		if (rest && sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
					     "%*d %*d %*d %*d %*d %*d %llu",
				   &utime, &stime, &starttime) == 3) {
			p->cpu_seconds = (double)(utime + stime) / (double)tick;
			unsigned long long btime = 0;
			FILE *s = fopen("/proc/stat", "r");
			while (s && fgets(buf, sizeof buf, s))
				if (sscanf(buf, "btime %llu", &btime) == 1)
					break;
			if (s)
				fclose(s);
			p->start_time = (double)btime + (double)starttime / (double)tick;
		}
	}
	if ((f = fopen("/proc/self/statm", "r"))) {
		unsigned long size, resident;
		if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
			p->vm_bytes = (uint64_t)size * (uint64_t)page;
			p->rss_bytes = (uint64_t)resident * (uint64_t)page;
		}
		fclose(f);
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		for (struct dirent *e; (e = readdir(d));)
			if (e->d_name[0] != '.')
				p->open_fds++;
		closedir(d);
		p->open_fds--; /* the directory we were reading */
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = rl.rlim_cur;
}

void metrics_render_prometheus(GString *o, const struct metrics_roles *roles)
{
	struct process_stats ps;

	family(o, "rtcsignald_build_info", "gauge", "Version of the running rtcsignald, as a label.");
	sample(o, "rtcsignald_build_info", "version", PACKAGE_VERSION, 1);
	gauge(o, "rtcsignald_start_time_seconds", "When the daemon started, seconds since the epoch.",
	      (double)metrics.start_time);
	gauge(o, "rtcsignald_connections", "Open WebSocket sessions.",
	      (double)nonneg(metrics_get(connections)));
	gauge(o, "rtcsignald_lingering_sockets",
	      "Sessions the server closed, kept until the client has its close frame.",
	      (double)nonneg(metrics_get(lingering_sockets)));
	gauge(o, "rtcsignald_max_sessions", "Configured maximum of sessions ([limits] max_sessions).",
	      (double)metrics_get(max_sessions));
	gauge(o, "rtcsignald_event_loop_heartbeat_age_seconds",
	      "Seconds since the event loop last ticked; above 5 the daemon is unhealthy.",
	      (double)(g_get_monotonic_time() / 1000 - metrics_get(heartbeat_ms)) / 1000.0);
	gauge(o, "rtcsignald_authentication_required",
	      "1 when every register needs credentials ([issuer] or [server] require_auth), else 0.",
	      metrics_get(auth_mode) == METRICS_AUTH_REQUIRED ? 1 : 0);
	gauge(o, "rtcsignald_draining", "1 while shutting down and draining sessions.",
	      metrics_get(draining) ? 1 : 0);
	gauge(o, "rtcsignald_rooms", "Rooms with at least one registered peer.",
	      (double)nonneg(metrics_get(rooms)));
	gauge(o, "rtcsignald_persistent_rooms", "Unexpired persistent rooms ([rooms] max_rooms counts them).",
	      (double)nonneg(metrics_get(persistent_rooms)));

	family(o, "rtcsignald_peers", "gauge",
	       "Registered peers by role (the most common roles; the rest as \"other\").");
	bool other = false;
	for (unsigned i = 0; roles && i < roles->n; i++) {
		g_string_append(o, "rtcsignald_peers{role=\"");
		append_label_value(o, roles->items[i].role);
		g_string_append_printf(o, "\"} %" G_GINT64_FORMAT "\n", nonneg(roles->items[i].peers));
		other = other || strcmp(roles->items[i].role, "other") == 0;
	}
	/* Always a series, 0 with no peers: a sum over none is "no data" on
	 * a dashboard, not 0. */
	if (!other)
		sample(o, "rtcsignald_peers", "role", "other", 0);
	counter(o, "rtcsignald_connections_total", "WebSocket sessions established.",
		(double)metrics_get(connections_total));
	counter(o, "rtcsignald_rooms_created_total", "Rooms created (in memory, by a first register).",
		(double)metrics_get(rooms_created_total));
	counter(o, "rtcsignald_address_evictions_total",
		"Client addresses the registration limiter forgot to make room (more addresses than max_sessions).",
		(double)metrics_get(address_evictions_total));
	gauge(o, "rtcsignald_store_pending_writes", "Room store writes queued or in progress (at most 10000).",
	      (double)nonneg(metrics_get(store_pending_writes)));
	counter(o, "rtcsignald_store_retries_total",
		"Room store writes tried again because the database was locked ([rooms] store_retry_timeout).",
		(double)metrics_get(store_retries));
	counter(o, "rtcsignald_store_queue_full_total",
		"Room store writes refused because the write queue was full.",
		(double)metrics_get(store_queue_full));
	family(o, "rtcsignald_store_errors_total", "counter",
	       "Room store operations the backend failed (unreachable, refused, malformed), by backend.");
	sample(o, "rtcsignald_store_errors_total", "backend", "sqlite", (double)metrics_get(store_errors[0]));
	sample(o, "rtcsignald_store_errors_total", "backend", "redis", (double)metrics_get(store_errors[1]));
	counter(o, "rtcsignald_store_notices_total",
		"Room store changes made by other instances and applied here ([rooms] store = redis).",
		(double)metrics_get(store_notices));
	counter(o, "rtcsignald_store_reloads_total",
		"Full reloads of the room store after subscribing to its changes again ([rooms] store = redis).",
		(double)metrics_get(store_reloads));
	static const char *const admin_refusals[ADMIN_REFUSED__COUNT] = {
		"per_address", "connection_limit", "no_descriptors", "ambiguous_framing",
		"request_timeout", "rate_limited"
	};
	family(o, "rtcsignald_admin_refused_total", "counter",
	       "Admin port connections (or requests: ambiguous_framing, rate_limited) turned away, by reason.");
	for (int i = 0; i < ADMIN_REFUSED__COUNT; i++)
		sample(o, "rtcsignald_admin_refused_total", "reason", admin_refusals[i],
		       (double)metrics_get(admin_refused[i]));

	counter(o, "rtcsignald_log_lines_repeated_total",
		"Log lines not written: a repeat of one event from one address within [log] repeat_interval.",
		(double)metrics_get(log_lines_repeated_total));

	family(o, "rtcsignald_registrations_total", "counter", "register requests by result.");
	sample(o, "rtcsignald_registrations_total", "result", "ok",
	       (double)metrics_get(registrations[ERR__COUNT]));
	/* The codes a register can be answered with (docs/protocol.md); any
	 * other only once it has happened, so nothing counted is hidden. */
	for (int c = 0; c < ERR__COUNT; c++)
		if (metrics_registration_result(c) || metrics_get(registrations[c]))
			sample(o, "rtcsignald_registrations_total", "result", protocol_code_name(c),
			       (double)metrics_get(registrations[c]));

	family(o, "rtcsignald_messages_received_total", "counter",
	       "Messages received from clients by type (\"unknown\": not decodable or unknown type).");
	for (int t = 0; t < MSG__COUNT; t++)
		sample(o, "rtcsignald_messages_received_total", "type", protocol_type_name(t),
		       (double)metrics_get(messages_received[t]));
	counter(o, "rtcsignald_messages_routed_total",
		"Messages queued for another peer (peer_message, signaling and mesh).",
		(double)metrics_get(messages_routed));

	family(o, "rtcsignald_errors_sent_total", "counter", "Error messages sent to clients by code.");
	for (int c = 0; c < ERR__COUNT; c++)
		sample(o, "rtcsignald_errors_sent_total", "code", protocol_code_name(c),
		       (double)metrics_get(errors_sent[c]));

	family(o, "rtcsignald_suppressed_errors_total", "counter",
	       "Errors v2.0 sessions were not sent, where the original server sent none, by code.");
	for (int c = 0; c < ERR__COUNT; c++)
		sample(o, "rtcsignald_suppressed_errors_total", "code", protocol_code_name(c),
		       (double)metrics_get(errors_suppressed[c]));
	static const char *const relay_results[RELAY__COUNT] = { "forwarded", "no_target", "failed" };
	family(o, "rtcsignald_relayed_total", "counter",
	       "Relayed types (a busy worker's error, job_status, ...) by type and result.");
	for (int t = 0; t < MSG__COUNT; t++)
		for (int k = 0; k < RELAY__COUNT && protocol_is_relay(t); k++) {
			g_string_append_printf(o, "rtcsignald_relayed_total{type=\"%s\",result=\"%s\"} %" G_GUINT64_FORMAT "\n",
					       protocol_type_name(t), relay_results[k],
					       (guint64)metrics_get(relayed[t][k]));
		}
	counter(o, "rtcsignald_sessions_superseded_total",
		"v2.0 sessions whose peer id a newer registration took over, kept open.",
		(double)metrics_get(sessions_superseded));
	counter(o, "rtcsignald_http_deletes_ignored_total",
		"POST /delete-peer and /delete-peers-and-room, answered 200 and ignored.",
		(double)metrics_get(http_deletes_ignored));
	counter(o, "rtcsignald_superseded_closed_total",
		"Superseded sessions closed (1000) by a third registration of their peer id.",
		(double)metrics_get(superseded_closed));
	family(o, "rtcsignald_credentials_ignored_total", "counter",
	       "Credentials a register brought that open mode cannot check and ignored, by field.");
	sample(o, "rtcsignald_credentials_ignored_total", "field", "api_key",
	       (double)metrics_get(credentials_ignored[0]));
	sample(o, "rtcsignald_credentials_ignored_total", "field", "jwt",
	       (double)metrics_get(credentials_ignored[1]));
	sample(o, "rtcsignald_credentials_ignored_total", "field", "id_token",
	       (double)metrics_get(credentials_ignored[2]));
	counter(o, "rtcsignald_default_room_registrations_total",
		"Registrations without room_id that joined [rooms] default_room.",
		(double)metrics_get(default_room_registrations));

	counter(o, "rtcsignald_received_bytes_total", "WebSocket payload bytes received.",
		(double)metrics_get(bytes_received));
	counter(o, "rtcsignald_sent_bytes_total", "WebSocket payload bytes sent.",
		(double)metrics_get(bytes_sent));
	counter(o, "rtcsignald_queue_overflows_total",
		"Sessions closed because their outbound queue passed max_queued_bytes.",
		(double)metrics_get(limit_hits[LIMIT_QUEUED_BYTES]));
	counter(o, "rtcsignald_rate_limited_total", "Messages refused with RATE_LIMITED.",
		(double)metrics_get(errors_sent[ERR_RATE_LIMITED]));

	family(o, "rtcsignald_sessions_refused_total", "counter",
	       "Connections refused before becoming a session, by reason.");
	for (int r = 0; r < REFUSED__COUNT; r++)
		sample(o, "rtcsignald_sessions_refused_total", "reason", refusal_names[r],
		       (double)metrics_get(sessions_refused[r]));

	family(o, "rtcsignald_limit_hits_total", "counter",
	       "Times each configured bound was hit, by configuration key.");
	for (int l = 0; l < LIMIT__COUNT; l++)
		sample(o, "rtcsignald_limit_hits_total", "limit", limit_names[l],
		       (double)metrics_get(limit_hits[l]));

	family(o, "rtcsignald_jwks_fetches_total", "counter",
	       "Fetches of issuers' key sets (jwks_url) by result.");
	sample(o, "rtcsignald_jwks_fetches_total", "result", "ok", (double)metrics_get(jwks_fetches[1]));
	sample(o, "rtcsignald_jwks_fetches_total", "result", "error",
	       (double)metrics_get(jwks_fetches[0]));
	gauge(o, "rtcsignald_jwks_stale", "Key sets whose last refresh failed: their cached keys are in use.",
	      (double)nonneg(metrics_get(jwks_stale)));
	family(o, "rtcsignald_tls_handshakes_total", "counter",
	       "TLS handshakes on the WebSocket port by result ([server] tls_certificate).");
	sample(o, "rtcsignald_tls_handshakes_total", "result", "ok", (double)metrics_get(tls_handshakes[1]));
	sample(o, "rtcsignald_tls_handshakes_total", "result", "error",
	       (double)metrics_get(tls_handshakes[0]));
	gauge(o, "rtcsignald_tls_certificate_expiry_timestamp_seconds",
	      "When the served certificate expires (notAfter); 0 without TLS.",
	      (double)metrics_get(tls_certificate_expiry));

	gauge(o, "rtcsignald_watches", "Watches (discover_peers with watch:true) active.",
	      (double)nonneg(metrics_get(watches)));
	gauge(o, "rtcsignald_presence_subscriptions", "Connections subscribed to presence events.",
	      (double)nonneg(metrics_get(presence_subscriptions)));
	family(o, "rtcsignald_watch_events_total", "counter",
	       "Presence and watch events sent, by type.");
	for (int e = 0; e < PROTOCOL_EVENT__COUNT; e++)
		sample(o, "rtcsignald_watch_events_total", "type", protocol_event_name(e),
		       (double)metrics_get(watch_events[e]));
	family(o, "rtcsignald_watches_lost_total", "counter",
	       "Watches and presence subscriptions ended with watch_lost, by reason.");
	sample(o, "rtcsignald_watches_lost_total", "reason", "queue_full", (double)metrics_get(watches_lost));
	sample(o, "rtcsignald_watches_lost_total", "reason", "filter_work",
	       (double)metrics_get(watches_lost_work));
	counter(o, "rtcsignald_watch_evaluations_total",
		"Filters of watches evaluated against a changed peer.",
		(double)metrics_get(watch_evaluations));

	histogram(o, "rtcsignald_route_latency_seconds",
		  "Time from receiving a message to queueing it for its target.",
		  &metrics.route_latency);
	histogram(o, "rtcsignald_discovery_duration_seconds",
		  "Time to answer a discover_peers request.", &metrics.discovery_duration);

	gauge(o, "rtcsignald_cluster_configured", "1 when [cluster] redis is set: this instance is one of several.",
	      metrics_get(cluster_configured) ? 1 : 0);
	gauge(o, "rtcsignald_cluster_up", "1 while Redis is reachable and this instance announced ([cluster] redis).",
	      metrics_get(cluster_up) ? 1 : 0);
	gauge(o, "rtcsignald_cluster_instances", "Live instances of the cluster, as the last sweep saw them.",
	      (double)nonneg(metrics_get(cluster_instances)));
	counter(o, "rtcsignald_cluster_forwarded_total", "Messages sent to peers on other instances.",
		(double)metrics_get(cluster_forwarded));
	counter(o, "rtcsignald_cluster_received_total", "Messages received from other instances for local peers.",
		(double)metrics_get(cluster_received));
	static const char *const cluster_reasons[METRICS_CLUSTER_REASONS] = {
		NULL, "gone", "queue_full", "closing", "unreachable", "too_large", "busy"
	};
	family(o, "rtcsignald_cluster_forward_failures_total", "counter",
	       "Messages for peers on other instances that did not arrive, by reason.");
	for (int i = 1; i < METRICS_CLUSTER_REASONS; i++)
		sample(o, "rtcsignald_cluster_forward_failures_total", "reason", cluster_reasons[i],
		       (double)metrics_get(cluster_forward_failures[i]));
	histogram(o, "rtcsignald_cluster_replication_lag_seconds",
		  "Time from a peer change on one instance until this instance's view applied it.",
		  &metrics.cluster_lag);

	read_process(&ps);
	counter(o, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
		ps.cpu_seconds);
	gauge(o, "process_resident_memory_bytes", "Resident memory size in bytes.", (double)ps.rss_bytes);
	gauge(o, "process_virtual_memory_bytes", "Virtual memory size in bytes.", (double)ps.vm_bytes);
	gauge(o, "process_open_fds", "Number of open file descriptors.", ps.open_fds);
	gauge(o, "process_max_fds", "Maximum number of open file descriptors.", (double)ps.max_fds);
	gauge(o, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
	      ps.start_time);
}

/* --- JSON, the seed's shape --- */

/* [cluster]: each live instance's peer count, as JSON (the sweep's) */
static GMutex cluster_peers_lock;
static char *cluster_peers_json;

void metrics_render_json(GString *o, const struct metrics_roles *roles)
{
	GDateTime *now = g_date_time_new_now_utc();
	g_autofree char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
	uint64_t total_messages = 0;

	g_date_time_unref(now);
	for (int t = 0; t < MSG__COUNT; t++)
		total_messages += metrics_get(messages_received[t]);
	g_string_append(o, "{\"timestamp\":");
	json_append_string(o, ts, strlen(ts));
	g_string_append_printf(o, ",\"active_rooms\":%" G_GINT64_FORMAT
				  ",\"active_connections\":%" G_GINT64_FORMAT ",\"peers_by_role\":{",
			       nonneg(metrics_get(rooms)), nonneg(metrics_get(connections)));
	for (unsigned i = 0; roles && i < roles->n; i++) {
		if (i)
			g_string_append_c(o, ',');
		json_append_string(o, roles->items[i].role, strlen(roles->items[i].role));
		g_string_append_printf(o, ":%" G_GINT64_FORMAT, nonneg(roles->items[i].peers));
	}
	static const char *const modes[] = {
		[METRICS_AUTH_OFF_LOOPBACK] = "off: loopback clients only",
		[METRICS_AUTH_OFF_ANYONE] = "off: any client (allow_anonymous)",
		[METRICS_AUTH_REQUIRED] = "required",
	};
	int mode = metrics_get(auth_mode);
	g_string_append_c(o, '}');
	if (mode > METRICS_AUTH_UNKNOWN && mode <= METRICS_AUTH_REQUIRED) {
		g_string_append(o, ",\"authentication\":");
		json_append_string(o, modes[mode], strlen(modes[mode]));
	}
	g_string_append_printf(o, ",\"total_connections\":%" G_GUINT64_FORMAT
				  ",\"total_messages\":%" G_GUINT64_FORMAT
				  ",\"rooms_created\":%" G_GUINT64_FORMAT "}",
			       (guint64)metrics_get(connections_total), (guint64)total_messages,
			       (guint64)metrics_get(rooms_created_total));
	if (metrics_get(cluster_configured)) {
		/* [cluster]: for rtcsignalctl status; the mean lag since the start */
		uint64_t n = 0;
		for (int i = 0; i <= METRICS_BUCKETS; i++)
			n += atomic_load(&metrics.cluster_lag.counts[i]);
		g_string_truncate(o, o->len - 1);
		g_string_append_printf(o, ",\"cluster\":{\"up\":%s,\"instances\":%" G_GINT64_FORMAT
					  ",\"forwarded\":%" G_GUINT64_FORMAT ",\"received\":%" G_GUINT64_FORMAT
					  ",\"lag_mean_ms\":%.3f}}",
				       metrics_get(cluster_up) ? "true" : "false",
				       nonneg(metrics_get(cluster_instances)),
				       (guint64)metrics_get(cluster_forwarded), (guint64)metrics_get(cluster_received),
				       n ? (double)atomic_load(&metrics.cluster_lag.sum_ns) / (double)n / 1e6 : 0.0);
		g_mutex_lock(&cluster_peers_lock);
		if (cluster_peers_json) {
			g_string_truncate(o, o->len - 2);
			g_string_append_printf(o, ",\"instance_peers\":%s}}", cluster_peers_json);
		}
		g_mutex_unlock(&cluster_peers_lock);
	}
}

void metrics_set_cluster_peers(const char *json)
{
	g_mutex_lock(&cluster_peers_lock);
	g_free(cluster_peers_json);
	cluster_peers_json = g_strdup(json);
	g_mutex_unlock(&cluster_peers_lock);
}
