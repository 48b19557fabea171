/* log: to the journal with structured fields under systemd, else logfmt
 * lines on stderr, one write(2) per line so that lines from the admin
 * thread never interleave with the loop's. */
#include "util/log.h"
#include "util/metrics.h"
#include "util/netaddr.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int log_level = LOG_INFO;
static atomic_uint repeat_interval_s = 5, repeat_burst = 5;
static bool journal;

/* One source of one kind of event: its current window, the lines logged
 * in it and what was counted since.  Guarded by repeat_lock: the loop and
 * the admin thread both log. */
struct repeat_slot {
	enum log_event ev;
	int prio;
	char code[32];
	char remote[NETADDR_STRLEN];
	int64_t window_us; /* when the window began; 0: free */
	unsigned logged;   /* lines in this window */
	unsigned unlogged;
};
static struct repeat_slot repeats[LOG_REPEAT_SLOTS];
static GMutex repeat_lock;

static const char *const event_names[LOG_EVENT__COUNT] = {
	[LOG_EVENT_NONE] = NULL,
	[LOG_EVENT_STARTED] = "started",
	[LOG_EVENT_LISTENING] = "listening",
	[LOG_EVENT_READY] = "ready",
	[LOG_EVENT_RELOADED] = "reloaded",
	[LOG_EVENT_RELOAD_FAILED] = "reload_failed",
	[LOG_EVENT_STOPPING] = "stopping",
	[LOG_EVENT_STOPPED] = "stopped",
	[LOG_EVENT_PEER_REGISTERED] = "peer_registered",
	[LOG_EVENT_PEER_LEFT] = "peer_left",
	[LOG_EVENT_REGISTRATION_REFUSED] = "registration_refused",
	[LOG_EVENT_SESSION_REPLACED] = "session_replaced",
	[LOG_EVENT_CONNECTION_REFUSED] = "connection_refused",
	[LOG_EVENT_LIMIT_HIT] = "limit_hit",
	[LOG_EVENT_SESSION_CLOSED] = "session_closed",
	[LOG_EVENT_BACKEND_LOST] = "backend_lost",
	[LOG_EVENT_BACKEND_RESTORED] = "backend_restored",
	[LOG_EVENT_ADMIN_ACTION] = "admin_action",
};

/* Stable: never change or reuse one.  data/rtcsignald.catalog explains
 * each. */
static const char *const message_ids[LOG_EVENT__COUNT] = {
	[LOG_EVENT_STARTED] = "e051a9b21113471b9af73f37df4dd3c9",
	[LOG_EVENT_LISTENING] = "95377ba6c2184b6ca056b4b9ccb245cf",
	[LOG_EVENT_READY] = "6769361fd5e2402993acf351b44c4eca",
	[LOG_EVENT_RELOADED] = "14016d7f96324c1180dc1d7950104852",
	[LOG_EVENT_RELOAD_FAILED] = "7bfe8c284d7c417e9d2f6790fa2818d0",
	[LOG_EVENT_STOPPING] = "68212bf11cf54a869197b959a1e36c67",
	[LOG_EVENT_STOPPED] = "e6964b4f40434e4e93db23690d718f03",
	[LOG_EVENT_PEER_REGISTERED] = "2180d2758bec449892ad663d1d675932",
	[LOG_EVENT_PEER_LEFT] = "15243dae4d674bc587e93dd2fedb5866",
	[LOG_EVENT_REGISTRATION_REFUSED] = "5c75fd7f5a204f1d8d86078e5e83a2af",
	[LOG_EVENT_SESSION_REPLACED] = "46dc0228192640da824c7f3baa2dcba7",
	[LOG_EVENT_CONNECTION_REFUSED] = "9a66c53882ad447a9b23af8a170edecf",
	[LOG_EVENT_LIMIT_HIT] = "1ac20a1e0c474d1cb549254b667850ff",
	[LOG_EVENT_SESSION_CLOSED] = "3508ff501bb449eda7c4831b45fdd081",
	[LOG_EVENT_BACKEND_LOST] = "903565a06a0e4cfd89f26fda3c89fa64",
	[LOG_EVENT_BACKEND_RESTORED] = "9c665aa2b0b84acf8f7be0d56e45a5da",
	[LOG_EVENT_ADMIN_ACTION] = "d5cde7aab56f4e1397253aa8c193b271",
};

static const struct {
	const char *name;
	int prio;
} level_names[] = {
	{ "err", LOG_ERR },         { "error", LOG_ERR },
	{ "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO },       { "debug", LOG_DEBUG },
};

const char *log_event_name(enum log_event ev)
{
	return ev > LOG_EVENT_NONE && ev < LOG_EVENT__COUNT ? event_names[ev] : NULL;
}

const char *log_event_message_id(enum log_event ev)
{
	return ev > LOG_EVENT_NONE && ev < LOG_EVENT__COUNT ? message_ids[ev] : NULL;
}

void log_init(void)
{
	const char *stream = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	journal = stream && sscanf(stream, "%llu:%llu", &dev, &ino) == 2 &&
		  fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
		  (unsigned long long)st.st_ino == ino;
}

int log_level_parse(const char *name, int *prio)
{
	for (size_t i = 0; i < G_N_ELEMENTS(level_names); i++) {
		if (strcmp(name, level_names[i].name) == 0) {
			*prio = level_names[i].prio;
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_level(int prio)
{
	atomic_store_explicit(&log_level, prio, memory_order_relaxed);
}

bool log_enabled(int prio)
{
	return prio <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void log_set_repeats(unsigned interval_s, unsigned burst)
{
	atomic_store_explicit(&repeat_interval_s, interval_s, memory_order_relaxed);
	atomic_store_explicit(&repeat_burst, burst ? burst : 1, memory_order_relaxed);
}

static const char *prio_name(int prio)
{
	switch (prio) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR:
		return "err";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

/* logfmt value: bare when safe, else quoted with \" \\ and control
 * characters escaped, so a client-chosen id cannot forge log fields. */
static void append_value(GString *s, const char *v)
{
	bool bare = *v != '\0';
	for (const unsigned char *p = (const unsigned char *)v; *p && bare; p++)
		bare = *p > ' ' && *p != '"' && *p != '=' && *p != '\\' && *p < 0x7f;
	if (bare) {
		g_string_append(s, v);
		return;
	}
	g_string_append_c(s, '"');
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_c(s, '\\'), g_string_append_c(s, (char)*p);
		else if (*p == '\n')
			g_string_append(s, "\\n");
		else if (*p < ' ' || *p == 0x7f)
			g_string_append_printf(s, "\\x%02x", *p);
		else
			g_string_append_c(s, (char)*p);
	}
	g_string_append_c(s, '"');
}

static void append_field(GString *s, const char *key, const char *v)
{
	if (!v)
		return;
	g_string_append_printf(s, " %s=", key);
	append_value(s, v);
}

/* " room=.. peer=.. ... repeated=N": F's values (REMOTE is F->remote as
 * text, "" if none), in the order journal readers expect. */
static void append_fields(GString *s, const struct log_fields *f, const char *remote,
			  unsigned repeated)
{
	if (f) {
		append_field(s, "room", f->room);
		append_field(s, "peer", f->peer);
		append_field(s, "role", f->role);
		append_field(s, "remote", *remote ? remote : NULL);
		append_field(s, "code", f->code);
		append_field(s, "actor", f->actor);
		append_field(s, "object", f->object);
		if (f->close_code)
			g_string_append_printf(s, " close_code=%d", f->close_code);
	}
	if (repeated)
		g_string_append_printf(s, " repeated=%u", repeated);
}

char *log_format_message(const char *msg, const struct log_fields *f, const char *remote,
			 unsigned repeated)
{
	GString *s = g_string_new(msg);
	gsize mark = s->len;

	append_fields(s, f, remote, repeated);
	/* " [a=b c=d]": the first field's space becomes the bracket. */
	if (s->len > mark) {
		s->str[mark] = '[';
		g_string_insert_c(s, (gssize)mark, ' ');
		g_string_append_c(s, ']');
	}
	return g_string_free(s, FALSE);
}

#define MAX_JOURNAL_FIELDS 14

static void add_field(struct iovec *iov, unsigned *n, char **owned, const char *key,
		      const char *value)
{
	if (!value)
		return;
	owned[*n] = g_strconcat(key, "=", value, NULL);
	iov[*n].iov_base = owned[*n];
	iov[*n].iov_len = strlen(owned[*n]);
	(*n)++;
}

/* Native journal fields; values may hold anything, sd_journal_sendv
 * encodes newlines. */
static void send_journal(int prio, enum log_event ev, const struct log_fields *f,
			 const char *remote, unsigned repeated, const char *file, int line,
			 const char *func, const char *msg)
{
	struct iovec iov[MAX_JOURNAL_FIELDS];
	char *owned[MAX_JOURNAL_FIELDS];
	char prio_text[4], code_text[16], repeated_text[16];
	unsigned n = 0;

	g_snprintf(prio_text, sizeof prio_text, "%d", prio);
	/* The values in the text too: "journalctl -u rtcsignald" shows only
	 * MESSAGE, and the fields alone need -o verbose. */
	g_autofree char *text = log_format_message(msg, f, remote, repeated);
	add_field(iov, &n, owned, "MESSAGE", text);
	add_field(iov, &n, owned, "PRIORITY", prio_text);
	add_field(iov, &n, owned, "MESSAGE_ID", log_event_message_id(ev));
	add_field(iov, &n, owned, "RTCSIGNALD_EVENT", log_event_name(ev));
	if (f) {
		add_field(iov, &n, owned, "RTCSIGNALD_ROOM", f->room);
		add_field(iov, &n, owned, "RTCSIGNALD_PEER", f->peer);
		add_field(iov, &n, owned, "RTCSIGNALD_ROLE", f->role);
		add_field(iov, &n, owned, "RTCSIGNALD_REMOTE", *remote ? remote : NULL);
		add_field(iov, &n, owned, "RTCSIGNALD_CODE", f->code);
		add_field(iov, &n, owned, "RTCSIGNALD_ACTOR", f->actor);
		add_field(iov, &n, owned, "RTCSIGNALD_OBJECT", f->object);
		if (f->close_code) {
			g_snprintf(code_text, sizeof code_text, "%d", f->close_code);
			add_field(iov, &n, owned, "RTCSIGNALD_CLOSE_CODE", code_text);
		}
	}
	if (repeated) {
		g_snprintf(repeated_text, sizeof repeated_text, "%u", repeated);
		add_field(iov, &n, owned, "RTCSIGNALD_REPEATED", repeated_text);
	}
	g_autofree char *code_file = g_strconcat("CODE_FILE=", file, NULL);
	g_autofree char *code_line = g_strdup_printf("CODE_LINE=%d", line);
	sd_journal_sendv_with_location(code_file, code_line, func, iov, (int)n);
	for (unsigned i = 0; i < n; i++)
		g_free(owned[i]);
}

static bool same_source(const struct repeat_slot *s, enum log_event ev, const char *code,
			const char *remote)
{
	return s->window_us && s->ev == ev && strcmp(s->code, code) == 0 &&
	       strcmp(s->remote, remote) == 0;
}

static void emit(int prio, enum log_event ev, const struct log_fields *f, const char *remote,
		 unsigned repeated, const char *file, int line, const char *func, const char *msg);

/* Whether this line of EV from REMOTE is due: the first BURST of a window
 * of INTERVAL are, the rest are counted, and the first line of the next
 * window says in *REPEATED how many.  A slot taken for a new source
 * reports its old source's count first, so no count is lost to the
 * bound. */
static bool repeat_due(int prio, enum log_event ev, const struct log_fields *f,
		       const char *remote, unsigned *repeated)
{
	int64_t interval = (int64_t)atomic_load_explicit(&repeat_interval_s, memory_order_relaxed) *
			   G_USEC_PER_SEC;
	unsigned burst = atomic_load_explicit(&repeat_burst, memory_order_relaxed);
	int64_t now = g_get_monotonic_time();
	const char *code = f->code ? f->code : "";
	struct repeat_slot *slot = NULL, *oldest = &repeats[0], evicted = { 0 };
	bool due = true;

	*repeated = 0;
	if (!interval)
		return true;
	g_mutex_lock(&repeat_lock);
	for (unsigned i = 0; i < LOG_REPEAT_SLOTS && !slot; i++) {
		struct repeat_slot *s = &repeats[i];
		if (same_source(s, ev, code, remote))
			slot = s;
		else if (s->window_us < oldest->window_us)
			oldest = s;
	}
	if (slot && now - slot->window_us < interval) {
		due = slot->logged < burst;
		if (due)
			slot->logged++;
		else
			slot->unlogged++;
	} else if (slot) {
		*repeated = slot->unlogged;
		slot->unlogged = 0;
		slot->logged = 1;
		slot->window_us = now;
	} else {
		if (oldest->window_us && oldest->unlogged)
			evicted = *oldest;
		oldest->ev = ev;
		oldest->prio = prio;
		g_strlcpy(oldest->code, code, sizeof oldest->code);
		g_strlcpy(oldest->remote, remote, sizeof oldest->remote);
		oldest->window_us = now;
		oldest->logged = 1;
		oldest->unlogged = 0;
	}
	g_mutex_unlock(&repeat_lock);
	if (!due)
		metrics_inc(log_lines_repeated_total);
	if (evicted.unlogged) {
		struct log_fields ef = { .code = *evicted.code ? evicted.code : NULL };
		char msg[96];
		g_snprintf(msg, sizeof msg, "%s: more like the last line, not logged",
			   log_event_name(evicted.ev));
		emit(evicted.prio, evicted.ev, &ef, evicted.remote, evicted.unlogged, __FILE__,
		     __LINE__, __func__, msg);
	}
	return due;
}

void log_full(int prio, enum log_event ev, const struct log_fields *f,
	      const char *file, int line, const char *func, const char *fmt, ...)
{
	if (!log_enabled(prio))
		return;

	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	/* Formatted only for a line that is written. */
	char remote[NETADDR_STRLEN] = "";
	if (f && f->remote)
		netaddr_to_string(f->remote, remote);

	/* Refusals, limits and warnings are what one client can repeat
	 * without end; info lines (a peer registered, left) stay one per
	 * peer: each needs valid credentials, and their rate per address is
	 * bounded by registrations_per_address_per_minute. */
	unsigned repeated = 0;
	if (prio <= LOG_NOTICE && ev != LOG_EVENT_NONE && f && f->remote &&
	    !repeat_due(prio, ev, f, remote, &repeated))
		return;
	emit(prio, ev, f, remote, repeated, file, line, func, msg);
}

static void emit(int prio, enum log_event ev, const struct log_fields *f, const char *remote,
		 unsigned repeated, const char *file, int line, const char *func, const char *msg)
{
	if (journal) {
		send_journal(prio, ev, f, remote, repeated, file, line, func, msg);
		return;
	}

	GDateTime *now = g_date_time_new_now_utc();
	g_autofree char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S");
	GString *s = g_string_sized_new(256);
	g_string_append_printf(s, "ts=%s.%03dZ level=%s", ts,
			       g_date_time_get_microsecond(now) / 1000, prio_name(prio));
	g_date_time_unref(now);
	append_field(s, "event", log_event_name(ev));
	append_fields(s, f, remote, repeated);
	append_field(s, "msg", msg);
	if (prio >= LOG_DEBUG)
		g_string_append_printf(s, " src=%s:%d", func, line);
	(void)file;
	g_string_append_c(s, '\n');
	/* One write per line; a short write to a full pipe is not retried. */
	ssize_t w = write(STDERR_FILENO, s->str, s->len);
	(void)w;
	g_string_free(s, TRUE);
}

bool log_rate_due(struct log_rate *r, uint64_t now_ms, unsigned *skipped)
{
	if (r->logged_ms && now_ms - r->logged_ms < 1000) {
		r->unlogged++;
		return false;
	}
	*skipped = r->unlogged;
	r->logged_ms = now_ms;
	r->unlogged = 0;
	return true;
}
