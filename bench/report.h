/* report: what the load generator counts and measures, and how it is
 * printed (one JSON object per scenario on stdout). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Counters as a JSON object of four objects of integers:
 *   "sent"          WebSocket messages the generator sent, by "type"
 *   "received"      messages it received, by "type"
 *   "errors"        {"type":"error"} messages received, by "code"
 *   "client_errors" failures seen by the generator itself: "connect",
 *                   "handshake", "eof", "server_close_<code>", "timeout"...
 * Objects so that the counts of forked workers merge by addition. */
json_object *counts_new(void);
void counts_add(json_object *counts, const char *group, const char *key, int64_t n);
int64_t counts_get(json_object *counts, const char *group, const char *key);
/* Adds every counter of FROM into INTO. */
void counts_merge(json_object *into, json_object *from);
/* Counts one received message by its type (and code, for errors);
 * returns the type as a static string for the caller to dispatch on:
 * "peer_message", "registered_auth", "peer_list", "error", ... (other
 * types are counted under their own name but returned as "other"). */
const char *counts_received(json_object *counts, const char *text, size_t len);

/* A server process as /proc shows it. */
struct proc_sample {
	bool ok;
	uint64_t utime_us, stime_us; /* /proc/PID/stat, clock-tick resolution */
	uint64_t run_ns;             /* sum of /proc/PID/task/STAR/schedstat */
	long rss_kib;                /* VmRSS of /proc/PID/status */
};
int proc_sample(pid_t pid, struct proc_sample *out);
/* {"pid","cpu_user_us","cpu_sys_us","cpu_run_us","cpu_us_per_op":{"user","sys","total"},
 *  "rss_kib_before","rss_kib_after"}, or null without a pid. */
json_object *proc_report(pid_t pid, const struct proc_sample *before,
			 const struct proc_sample *after, uint64_t ops);

/* Latency samples in nanoseconds; percentiles by sorting all of them
 * (exact, nearest rank). */
struct samples {
	int64_t *v;
	size_t n, cap;
};
void samples_init(struct samples *s, size_t cap);
void samples_add(struct samples *s, int64_t ns);
void samples_free(struct samples *s);
/* Sorts and returns {"samples","min","mean","p50","p90","p99","p999","max"}
 * in microseconds. */
json_object *samples_report(struct samples *s);
/* The P-th percentile (0 < P <= 100) in microseconds of sorted samples. */
double samples_pct_us(const struct samples *s, double p);

/* Prints the scenario's JSON object on stdout (one line). */
void report_print(json_object *o);
