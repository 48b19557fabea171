/* log: logfmt lines on stderr, one write(2) per line so that lines from the
 * admin thread never interleave with the loop's. */
#include "log.h"

#include <errno.h>
#include <glib.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int log_level = LOG_INFO;

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

	GDateTime *now = g_date_time_new_now_utc();
	g_autofree char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S");
	GString *s = g_string_sized_new(256);
	g_string_append_printf(s, "ts=%s.%03dZ level=%s", ts,
			       g_date_time_get_microsecond(now) / 1000, prio_name(prio));
	g_date_time_unref(now);
	append_field(s, "event", log_event_name(ev));
	if (f) {
		append_field(s, "room", f->room);
		append_field(s, "peer", f->peer);
		append_field(s, "role", f->role);
		append_field(s, "remote", f->remote);
		append_field(s, "code", f->code);
		if (f->close_code)
			g_string_append_printf(s, " close_code=%d", f->close_code);
	}
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
