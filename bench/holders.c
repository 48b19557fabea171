#include "holders.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CTL_FD 3
#define REPORT_FD 4
#define GRACE_NS (10 * (int64_t)1000000000)

struct worker {
	pid_t pid;
	int ctl;    /* parent -> worker: closed to release */
	int report; /* worker -> parent: one JSON line when ready, one at exit */
	GString *line;
	bool eof;
};

struct holders {
	struct worker *w;
	unsigned n;
};

/* ---- the worker process ---- */

struct hold {
	struct crowd *cr;
	bool released;
};

static bool hold_settled(void *data)
{
	struct hold *h = data;
	return h->released || crowd_settled(h->cr);
}

static bool hold_released(void *data)
{
	return ((struct hold *)data)->released;
}

static void hold_tick(void *data)
{
	struct hold *h = data;
	struct pollfd p = { .fd = CTL_FD, .events = POLLIN };

	if (poll(&p, 1, 0) > 0)
		h->released = true; /* EOF (or a byte): the parent is done */
	crowd_expire(h->cr);
}

static void write_line(json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s), off = 0;

	while (off < len) {
		ssize_t n = write(REPORT_FD, s + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += (size_t)n;
	}
	if (write(REPORT_FD, "\n", 1) < 0)
		return;
}

static G_NORETURN void worker_main(const struct crowd_spec *spec, int64_t deadline)
{
	static const struct crowd_ops no_ops = { 0 };
	struct wsloop *l = wsloop_new();
	json_object *counts = counts_new();
	struct hold h = { .cr = crowd_new(l, spec, &no_ops, NULL, counts) };
	unsigned slice_count = spec->count;

	crowd_pump(h.cr);
	/* Reports a little before the parent stops waiting. */
	int r = wsloop_run(l, hold_settled, hold_tick, &h, 100, deadline - 500000000);
	if (r < 0)
		crowd_deadline(h.cr);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ready", json_object_new_int64(h.cr->ready));
	json_object_object_add(o, "failed", json_object_new_int64(h.cr->failed + (slice_count - h.cr->started)));
	json_object_object_add(o, "t_first", json_object_new_int64(h.cr->t_first));
	json_object_object_add(o, "t_last", json_object_new_int64(h.cr->t_last));
	json_object_object_add(o, "timed_out", json_object_new_boolean(r < 0));
	write_line(o);
	json_object_put(o);

	wsloop_run(l, hold_released, hold_tick, &h, 100, deadline + GRACE_NS);
	crowd_free(h.cr);
	wsloop_free(l);
	o = json_object_new_object();
	json_object_object_add(o, "counts", counts);
	write_line(o);
	json_object_put(o);
	_exit(0);
}

/* ---- the parent ---- */

struct holders *holders_start(const struct crowd_spec *spec, unsigned procs, int64_t deadline)
{
	struct holders *h = g_new0(struct holders, 1);
	unsigned need = (spec->count + HOLDERS_MAX_PER_PROC - 1) / HOLDERS_MAX_PER_PROC;

	h->n = MAX(MAX(procs, need), 1);
	h->n = MIN(h->n, MAX(spec->count, 1));
	h->w = g_new0(struct worker, h->n);
	fflush(NULL); /* nothing buffered may be written twice */
	for (unsigned i = 0; i < h->n; i++) {
		struct worker *w = &h->w[i];
		struct crowd_spec slice = *spec;
		int ctl[2], rep[2];
		unsigned per = spec->count / h->n, extra = spec->count % h->n;

		slice.first = spec->first + i * per + MIN(i, extra);
		slice.count = per + (i < extra);
		w->line = g_string_new(NULL);
		w->pid = -1;
		if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
			w->eof = true;
			w->ctl = w->report = -1;
			continue;
		}
		w->pid = fork();
		if (w->pid == 0) {
			/* Only the two pipes survive, as fds 3 and 4. */
			int a = fcntl(ctl[0], F_DUPFD, REPORT_FD + 1);
			int b = fcntl(rep[1], F_DUPFD, REPORT_FD + 1);
			if (a < 0 || b < 0 || dup2(a, CTL_FD) < 0 || dup2(b, REPORT_FD) < 0)
				_exit(1);
			close_range(REPORT_FD + 1, ~0u, 0);
			signal(SIGPIPE, SIG_IGN);
			for (unsigned k = 0; k <= i; k++)
				g_string_free(h->w[k].line, TRUE);
			g_free(h->w);
			g_free(h);
			worker_main(&slice, deadline);
		}
		close(ctl[0]);
		close(rep[1]);
		w->ctl = ctl[1];
		w->report = rep[0];
		if (w->pid < 0) {
			close(w->ctl);
			close(w->report);
			w->ctl = w->report = -1;
			w->eof = true;
		}
	}
	return h;
}

/* Reads until every live worker has a complete line, or with TO_EOF until
 * every worker has closed its end (it does when it exits), or DEADLINE. */
static void read_lines(struct holders *h, bool to_eof, int64_t deadline)
{
	for (;;) {
		struct pollfd p[h->n];
		unsigned np = 0;
		for (unsigned i = 0; i < h->n; i++) {
			struct worker *w = &h->w[i];
			if (!w->eof && (to_eof || !memchr(w->line->str, '\n', w->line->len)))
				p[np++] = (struct pollfd){ .fd = w->report, .events = POLLIN };
		}
		int64_t left = deadline - wsloop_now();
		if (!np || left <= 0)
			return;
		if (poll(p, np, (int)(left / 1000000) + 1) <= 0)
			continue;
		for (unsigned k = 0; k < np; k++) {
			if (!p[k].revents)
				continue;
			for (unsigned i = 0; i < h->n; i++) {
				struct worker *w = &h->w[i];
				if (w->report != p[k].fd)
					continue;
				char buf[4096];
				ssize_t n = read(w->report, buf, sizeof buf);
				if (n > 0)
					g_string_append_len(w->line, buf, n);
				else if (n == 0 || errno != EINTR)
					w->eof = true;
			}
		}
	}
}

/* Takes the first complete line of W as JSON (NULL if none). */
static json_object *take_line(struct worker *w)
{
	char *nl = memchr(w->line->str, '\n', w->line->len);
	if (!nl)
		return NULL;
	*nl = '\0';
	json_object *o = json_tokener_parse(w->line->str);
	g_string_erase(w->line, 0, nl - w->line->str + 1);
	return o;
}

static int64_t get_i64(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

void holders_wait_ready(struct holders *h, int64_t deadline, struct holders_result *r)
{
	memset(r, 0, sizeof *r);
	r->procs = h->n;
	read_lines(h, false, deadline);
	for (unsigned i = 0; i < h->n; i++) {
		json_object *o = take_line(&h->w[i]), *v;
		if (!o) {
			r->timed_out = true;
			continue;
		}
		r->ready += (unsigned)get_i64(o, "ready");
		r->failed += (unsigned)get_i64(o, "failed");
		int64_t t0 = get_i64(o, "t_first"), t1 = get_i64(o, "t_last");
		if (t0 && (!r->t_first || t0 < r->t_first))
			r->t_first = t0;
		r->t_last = MAX(r->t_last, t1);
		if (json_object_object_get_ex(o, "timed_out", &v) && json_object_get_boolean(v))
			r->timed_out = true;
		json_object_put(o);
	}
}

/* Waits up to MS for PID to exit, then kills it: its status, or -1 when
 * it had to be killed. */
static int reap(pid_t pid, int ms)
{
	int status;

	for (int waited = 0;; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		if (waited >= ms)
			break;
		g_usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

void holders_stop(struct holders *h, json_object *counts)
{
	if (!h)
		return;
	for (unsigned i = 0; i < h->n; i++) {
		if (h->w[i].ctl >= 0)
			close(h->w[i].ctl);
	}
	read_lines(h, true, wsloop_now() + GRACE_NS);
	for (unsigned i = 0; i < h->n; i++) {
		struct worker *w = &h->w[i];
		json_object *o, *c;
		/* The ready line may still be unread when the wait timed out. */
		while ((o = take_line(w))) {
			if (json_object_object_get_ex(o, "counts", &c))
				counts_merge(counts, c);
			json_object_put(o);
		}
		if (w->pid > 0) {
			int status = reap(w->pid, 10000);
			if (status == -1)
				counts_add(counts, "client_errors", "worker_killed", 1);
			else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				counts_add(counts, "client_errors", "worker_failed", 1);
		}
		if (w->report >= 0)
			close(w->report);
		g_string_free(w->line, TRUE);
	}
	g_free(h->w);
	g_free(h);
}
