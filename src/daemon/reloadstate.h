/* reloadstate: the daemon's verdict on each SIGHUP, written where
 * "rtcsignald --reload PID" (systemd's ExecReload) waits for it.
 *
 * A separate "--check-config" process cannot judge a reload: under
 * DynamicUser= only the main process can read its credentials
 * (LoadCredential=), so the main process itself reports.  The verdict is
 * one small file in $RUNTIME_DIRECTORY (else /run/rtcsignald), replaced
 * atomically (rename), holding the daemon's pid, a generation that counts
 * its reloads, when the reload began (CLOCK_MONOTONIC) and the outcome. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define RELOADSTATE_FILE "reload"

struct reloadstate_verdict {
	pid_t pid;
	uint64_t generation;
	uint64_t begin_usec; /* CLOCK_MONOTONIC, as g_get_monotonic_time() */
	bool ok;
	char reason[512];
};

/* The daemon: a reload begins, then ends with OK and a reason (NULL: none).
 * Writes only when $RUNTIME_DIRECTORY is set (under systemd); a write that
 * fails is logged and the reload goes on. */
void reloadstate_begin(void);
void reloadstate_finish(bool ok, const char *reason);

/* The directory the verdict is in: $RUNTIME_DIRECTORY's first entry, else
 * /run/rtcsignald.  Free with g_free(). */
char *reloadstate_dir(void);

/* Parses a verdict file's text; -EINVAL when it is not one. */
int reloadstate_parse(const char *text, struct reloadstate_verdict *out);

/* "rtcsignald --reload PID": sends SIGHUP to PID and waits up to
 * TIMEOUT_MS for a verdict on a reload that began after the signal was
 * sent.  0 when it was applied, -EBADMSG when PID refused the new
 * configuration (the reason in OUT), -ETIMEDOUT, or a negative errno from
 * kill(). */
int reloadstate_request(const char *dir, pid_t pid, int timeout_ms,
			struct reloadstate_verdict *out);
