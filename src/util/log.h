/* log: the one logging API of rtcsignald.
 *
 * Every line is an event: a priority, an optional event type (stable, one
 * per kind of thing that happened) and a few structured fields.  The
 * fields carry identifiers only; payloads, SDPs, tokens and keys are never
 * passed here. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct netaddr;
#include <syslog.h>

enum log_event {
	LOG_EVENT_NONE = 0,
	LOG_EVENT_STARTED,
	LOG_EVENT_LISTENING,
	LOG_EVENT_READY,
	LOG_EVENT_RELOADED,
	LOG_EVENT_RELOAD_FAILED,
	LOG_EVENT_STOPPING,
	LOG_EVENT_STOPPED,
	LOG_EVENT_PEER_REGISTERED,
	LOG_EVENT_PEER_LEFT,
	LOG_EVENT_REGISTRATION_REFUSED,
	LOG_EVENT_SESSION_REPLACED,
	LOG_EVENT_CONNECTION_REFUSED,
	LOG_EVENT_LIMIT_HIT,
	LOG_EVENT_SESSION_CLOSED,
	LOG_EVENT_BACKEND_LOST,
	LOG_EVENT_BACKEND_RESTORED,
	LOG_EVENT_ADMIN_ACTION, /* audit: an operator changed rooms or keys */
	LOG_EVENT__COUNT
};

/* Structured fields; NULL (or 0 for close_code) means absent. */
struct log_fields {
	const char *room;
	const char *peer;
	const char *role;
	const struct netaddr *remote;
	const char *code;
	int close_code;
	const char *actor;  /* an admin action's: "admin-token" or a JWT subject */
	const char *object; /* an admin action's: a room or key id */
};

const char *log_event_name(enum log_event ev);
/* The journal MESSAGE_ID of an event type (see data/rtcsignald.catalog). */
const char *log_event_message_id(enum log_event ev);

/* Chooses the journal when stderr is the journal stream systemd set up
 * ($JOURNAL_STREAM), else logfmt lines on stderr. */
void log_init(void);

/* LOG_ERR .. LOG_DEBUG; "err", "warning", "notice", "info", "debug". */
int log_level_parse(const char *name, int *prio);
void log_set_level(int prio);
bool log_enabled(int prio);

/* Repeats, as printk_ratelimit: of a notice, warning or error event with
 * a remote address, the first BURST from one source (same event, code and
 * address) in a window of INTERVAL_S seconds are logged, the rest counted;
 * the first line of a later window says how many ("repeated=N").
 * INTERVAL_S 0 logs every one.  The table of sources is bounded
 * (LOG_REPEAT_SLOTS); a source pushed out says its count then.  Metrics
 * count every event regardless: callers count before they log. */
#define LOG_REPEAT_SLOTS 256
void log_set_repeats(unsigned interval_s, unsigned burst);

/* The journal MESSAGE of a line: MSG, then the fields present as
 * " [room=R peer=P role=X remote=A code=C close_code=N repeated=K]",
 * each value bare or quoted and escaped as in logfmt, so a client-chosen
 * id cannot forge text.  REMOTE is F->remote as text. */
char *log_format_message(const char *msg, const struct log_fields *f, const char *remote,
			 unsigned repeated);

void log_full(int prio, enum log_event ev, const struct log_fields *f,
	      const char *file, int line, const char *func,
	      const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#define log_event(prio, ev, fields, ...) \
	log_full(prio, ev, fields, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_err(...)     log_event(LOG_ERR, LOG_EVENT_NONE, NULL, __VA_ARGS__)
#define log_warning(...) log_event(LOG_WARNING, LOG_EVENT_NONE, NULL, __VA_ARGS__)
#define log_notice(...)  log_event(LOG_NOTICE, LOG_EVENT_NONE, NULL, __VA_ARGS__)
#define log_info(...)    log_event(LOG_INFO, LOG_EVENT_NONE, NULL, __VA_ARGS__)
#define log_debug(...)   log_event(LOG_DEBUG, LOG_EVENT_NONE, NULL, __VA_ARGS__)

/* A kind of line logged once a second at most, so that a flood (of
 * refusals, of cut sessions) costs one line a second and still says how
 * many: when it was last logged, and how many went unlogged since. */
struct log_rate {
	uint64_t logged_ms;
	unsigned unlogged;
};

/* True when a line is due at NOW_MS (any monotonic clock), with in
 * *SKIPPED how many were not logged since the last; else counts this one
 * as skipped. */
bool log_rate_due(struct log_rate *r, uint64_t now_ms, unsigned *skipped);
