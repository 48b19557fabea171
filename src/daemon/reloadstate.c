/* reloadstate: see reloadstate.h. */
#include "daemon/reloadstate.h"
#include "util/log.h"

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POLL_US 10000

static uint64_t generation, begin_usec;

char *reloadstate_dir(void)
{
	const char *env = getenv("RUNTIME_DIRECTORY");

	/* systemd joins several RuntimeDirectory= entries with ':'. */
	if (env && *env)
		return g_strndup(env, strcspn(env, ":"));
	return g_strdup("/run/rtcsignald");
}

void reloadstate_begin(void)
{
	generation++;
	begin_usec = (uint64_t)g_get_monotonic_time();
}

void reloadstate_finish(bool ok, const char *reason)
{
	const char *env = getenv("RUNTIME_DIRECTORY");
	g_autoptr(GError) err = NULL;

	if (!env || !*env)
		return;
	g_autofree char *dir = reloadstate_dir();
	g_autofree char *path = g_build_filename(dir, RELOADSTATE_FILE, NULL);
	/* One line per field; the reason's newlines would start new ones. */
	g_autofree char *flat = g_strdup(reason ? reason : "");
	g_strdelimit(flat, "\r\n", ' ');
	g_autofree char *text = g_strdup_printf(
		"pid=%ld\ngeneration=%" G_GUINT64_FORMAT "\nbegin_usec=%" G_GUINT64_FORMAT
		"\nresult=%s\nreason=%s\n",
		(long)getpid(), generation, begin_usec, ok ? "ok" : "failed", flat);
	/* g_file_set_contents writes a temporary file and renames it: a
	 * reader sees the old verdict or the new one, never half of one. */
	if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, &err))
		log_warning("reload: cannot write the verdict for rtcsignald --reload: %s",
			    err->message);
}

int reloadstate_parse(const char *text, struct reloadstate_verdict *out)
{
	g_auto(GStrv) lines = g_strsplit(text, "\n", 0);
	unsigned seen = 0;

	memset(out, 0, sizeof *out);
	for (char **l = lines; *l; l++) {
		const char *eq = strchr(*l, '=');
		char *end;
		if (!eq)
			continue;
		g_autofree char *key = g_strndup(*l, (gsize)(eq - *l));
		const char *v = eq + 1;
		if (strcmp(key, "pid") == 0) {
			out->pid = (pid_t)g_ascii_strtoll(v, &end, 10);
			seen |= *end ? 0 : 1;
		} else if (strcmp(key, "generation") == 0) {
			out->generation = g_ascii_strtoull(v, &end, 10);
			seen |= *end ? 0 : 2;
		} else if (strcmp(key, "begin_usec") == 0) {
			out->begin_usec = g_ascii_strtoull(v, &end, 10);
			seen |= *end ? 0 : 4;
		} else if (strcmp(key, "result") == 0) {
			out->ok = strcmp(v, "ok") == 0;
			seen |= out->ok || strcmp(v, "failed") == 0 ? 8 : 0;
		} else if (strcmp(key, "reason") == 0) {
			g_strlcpy(out->reason, v, sizeof out->reason);
			seen |= 16;
		}
	}
	return seen == 31 ? 0 : -EINVAL;
}

static bool read_verdict(const char *path, struct reloadstate_verdict *out)
{
	g_autofree char *text = NULL;

	return g_file_get_contents(path, &text, NULL, NULL) && reloadstate_parse(text, out) == 0;
}

int reloadstate_request(const char *dir, pid_t pid, int timeout_ms,
			struct reloadstate_verdict *out)
{
	g_autofree char *path = g_build_filename(dir, RELOADSTATE_FILE, NULL);
	/* A verdict counts if its reload began after the signal went out:
	 * the daemon reads the file only then, so it judged the file as it
	 * is now.  An earlier reload still running when the signal arrives
	 * ends with an older begin_usec and is passed over. */
	uint64_t sent = (uint64_t)g_get_monotonic_time();
	int64_t deadline = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;

	if (kill(pid, SIGHUP) < 0)
		return -errno;
	while (g_get_monotonic_time() < deadline) {
		if (read_verdict(path, out) && out->pid == pid && out->begin_usec >= sent)
			return out->ok ? 0 : -EBADMSG;
		/* The verdict comes from another process, which tells nothing
		 * when it is done: look again shortly, within the bound. */
		g_usleep(POLL_US);
	}
	return -ETIMEDOUT;
}
