#include "report.h"

#include <dirent.h>
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const groups[] = { "sent", "received", "errors", "client_errors" };

json_object *counts_new(void)
{
	json_object *o = json_object_new_object();
	for (size_t i = 0; i < G_N_ELEMENTS(groups); i++)
		json_object_object_add(o, groups[i], json_object_new_object());
	return o;
}

static json_object *group_of(json_object *counts, const char *group)
{
	json_object *g = NULL;
	if (!json_object_object_get_ex(counts, group, &g)) {
		g = json_object_new_object();
		json_object_object_add(counts, group, g);
	}
	return g;
}

void counts_add(json_object *counts, const char *group, const char *key, int64_t n)
{
	json_object *g = group_of(counts, group), *v;

	if (json_object_object_get_ex(g, key, &v))
		json_object_int_inc(v, n);
	else
		json_object_object_add(g, key, json_object_new_int64(n));
}

int64_t counts_get(json_object *counts, const char *group, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(group_of(counts, group), key, &v) ? json_object_get_int64(v) : 0;
}

void counts_merge(json_object *into, json_object *from)
{
	json_object_object_foreach(from, group, g) {
		if (!json_object_is_type(g, json_type_object))
			continue;
		json_object_object_foreach(g, key, v)
			counts_add(into, group, key, json_object_get_int64(v));
	}
}

static const char *const known_types[] = {
	"peer_message", "registered_auth", "peer_list", "error", "ping", "pong",
	"metadata_updated", "admin_conflict", "peer_joined", "peer_updated", "peer_left",
	"watch_lost", "unwatched",
};

static const char *known(const char *type, size_t len)
{
	for (size_t i = 0; i < G_N_ELEMENTS(known_types); i++)
		if (strlen(known_types[i]) == len && memcmp(known_types[i], type, len) == 0)
			return known_types[i];
	return "other";
}

const char *counts_received(json_object *counts, const char *text, size_t len)
{
	static const char prefix[] = "{\"type\":\"";
	const size_t pl = sizeof prefix - 1;
	char name[40];

	/* The daemon writes "type" first, and the echo floor returns our own
	 * messages, which do too: no parse on the hot path.  Errors (for
	 * their code) and anything else are parsed. */
	if (len > pl && memcmp(text, prefix, pl) == 0) {
		const char *end = memchr(text + pl, '"', MIN(len - pl, sizeof name - 1));
		const char *k = end ? known(text + pl, (size_t)(end - text - pl)) : "other";
		if (strcmp(k, "other") != 0 && strcmp(k, "error") != 0) {
			counts_add(counts, "received", k, 1);
			return k;
		}
	}
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, text, (int)len), *t, *code;
	json_tokener_free(tok);
	const char *type = o && json_object_object_get_ex(o, "type", &t) ? json_object_get_string(t) : NULL;
	const char *ret = "other";
	if (!type) {
		counts_add(counts, "client_errors", "unparsable_message", 1);
	} else {
		g_strlcpy(name, type, sizeof name);
		ret = known(name, strlen(name));
		counts_add(counts, "received", name, 1);
		if (strcmp(ret, "error") == 0)
			counts_add(counts, "errors",
				   json_object_object_get_ex(o, "code", &code) ? json_object_get_string(code)
									       : "(no code)",
				   1);
	}
	json_object_put(o);
	return ret;
}

/* ---- /proc ---- */

static int read_text(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	return 0;
}

static uint64_t task_run_ns(pid_t pid)
{
	char path[64], line[128];
	uint64_t sum = 0;

	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		g_autofree char *p = g_strdup_printf("%s/%s/schedstat", path, e->d_name);
		if (read_text(p, line, sizeof line) == 0)
			sum += strtoull(line, NULL, 10);
	}
	closedir(d);
	return sum;
}

int proc_sample(pid_t pid, struct proc_sample *out)
{
	char path[64], buf[4096];
	unsigned long long ut, st;
	long tck = sysconf(_SC_CLK_TCK);

	memset(out, 0, sizeof *out);
	if (pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_text(path, buf, sizeof buf) < 0)
		return -1;
	/* Fields after the command name, which may hold spaces: state is
	 * field 3, utime 14 and stime 15. */
	const char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	out->utime_us = ut * 1000000ull / (unsigned long long)tck;
	out->stime_us = st * 1000000ull / (unsigned long long)tck;
	out->run_ns = task_run_ns(pid);
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (read_text(path, buf, sizeof buf) < 0)
		return -1;
	const char *rss = strstr(buf, "\nVmRSS:");
	out->rss_kib = rss ? strtol(rss + 7, NULL, 10) : -1;
	out->ok = true;
	return 0;
}

static json_object *per_op(uint64_t us, uint64_t ops)
{
	return json_object_new_double(ops ? (double)us / (double)ops : 0.0);
}

json_object *proc_report(pid_t pid, const struct proc_sample *before,
			 const struct proc_sample *after, uint64_t ops)
{
	if (pid <= 0 || !before->ok || !after->ok)
		return NULL;
	json_object *o = json_object_new_object(), *po = json_object_new_object();
	uint64_t u = after->utime_us - before->utime_us, s = after->stime_us - before->stime_us;
	uint64_t run = (after->run_ns - before->run_ns) / 1000;

	json_object_object_add(o, "pid", json_object_new_int(pid));
	json_object_object_add(o, "cpu_user_us", json_object_new_int64((int64_t)u));
	json_object_object_add(o, "cpu_sys_us", json_object_new_int64((int64_t)s));
	json_object_object_add(o, "cpu_run_us", json_object_new_int64((int64_t)run));
	json_object_object_add(po, "user", per_op(u, ops));
	json_object_object_add(po, "sys", per_op(s, ops));
	json_object_object_add(po, "total", per_op(u + s, ops));
	json_object_object_add(po, "run", per_op(run, ops));
	json_object_object_add(o, "cpu_us_per_op", po);
	json_object_object_add(o, "rss_kib_before", json_object_new_int64(before->rss_kib));
	json_object_object_add(o, "rss_kib_after", json_object_new_int64(after->rss_kib));
	return o;
}

/* ---- latency ---- */

void samples_init(struct samples *s, size_t cap)
{
	s->v = g_new(int64_t, MAX(cap, 1));
	s->n = 0;
	s->cap = MAX(cap, 1);
}

void samples_add(struct samples *s, int64_t ns)
{
	if (s->n < s->cap)
		s->v[s->n++] = ns;
}

void samples_free(struct samples *s)
{
	g_clear_pointer(&s->v, g_free);
	s->n = s->cap = 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

double samples_pct_us(const struct samples *s, double p)
{
	if (!s->n)
		return 0;
	size_t rank = (size_t)((p / 100.0) * (double)s->n + 0.999999999);
	rank = rank ? MIN(rank, s->n) : 1;
	return (double)s->v[rank - 1] / 1000.0;
}

static json_object *us(double v)
{
	return json_object_new_double((double)(int64_t)(v * 10 + 0.5) / 10);
}

json_object *samples_report(struct samples *s)
{
	json_object *o = json_object_new_object();
	double sum = 0;

	qsort(s->v, s->n, sizeof *s->v, cmp_i64);
	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->v[i];
	json_object_object_add(o, "samples", json_object_new_int64((int64_t)s->n));
	json_object_object_add(o, "min", us(s->n ? (double)s->v[0] / 1000 : 0));
	json_object_object_add(o, "mean", us(s->n ? sum / (double)s->n / 1000 : 0));
	json_object_object_add(o, "p50", us(samples_pct_us(s, 50)));
	json_object_object_add(o, "p90", us(samples_pct_us(s, 90)));
	json_object_object_add(o, "p99", us(samples_pct_us(s, 99)));
	json_object_object_add(o, "p999", us(samples_pct_us(s, 99.9)));
	json_object_object_add(o, "max", us(s->n ? (double)s->v[s->n - 1] / 1000 : 0));
	return o;
}

void report_print(json_object *o)
{
	fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
	      stdout);
	fputc('\n', stdout);
	fflush(stdout);
}
