#include "util/redisurl.h"

#include <errno.h>
#include <glib.h>
#include <stdbool.h>
#include <string.h>

void redisurl_clear(struct redisurl *u)
{
	g_clear_pointer(&u->host, g_free);
	g_clear_pointer(&u->path, g_free);
	u->port = 0;
	u->db = 0;
}

static bool all_digits(const char *s, size_t n)
{
	return n && strspn(s, "0123456789") >= n;
}

/* A decimal number of N bytes at S within LO..HI. */
static bool parse_number(const char *s, size_t n, guint64 lo, guint64 hi, guint64 *out)
{
	g_autofree char *t = g_strndup(s, n);
	return all_digits(s, n) && n <= 10 && g_ascii_string_to_unsigned(t, 10, lo, hi, out, NULL);
}

static int fail(const char **why, const char *text)
{
	*why = text;
	return -EINVAL;
}

static int parse_tcp(const char *rest, struct redisurl *u, const char **why)
{
	const char *slash = strchr(rest, '/'), *end = slash ? slash : rest + strlen(rest);
	const char *port = NULL;
	guint64 n;

	if (strpbrk(rest, "@"))
		return fail(why, "credentials do not go in the address: use [cluster] password_file");
	if (strpbrk(rest, "?#"))
		return fail(why, "options (?...) are not supported");
	if (rest[0] == '[') { /* [IPv6]:PORT */
		const char *close = memchr(rest, ']', (size_t)(end - rest));
		if (!close || close == rest + 1)
			return fail(why, "an IPv6 address goes in brackets: redis://[ADDRESS]:PORT");
		u->host = g_strndup(rest + 1, (size_t)(close - rest - 1));
		if (close + 1 < end && close[1] != ':')
			return fail(why, "expected :PORT after the bracketed address");
		port = close + 1 < end ? close + 2 : NULL;
	} else {
		const char *colon = memchr(rest, ':', (size_t)(end - rest));
		size_t hl = (size_t)((colon ? colon : end) - rest);
		if (!hl)
			return fail(why, "the host is missing");
		u->host = g_strndup(rest, hl);
		if (strspn(u->host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") != hl)
			return fail(why, "the host is not a host name or address");
		port = colon ? colon + 1 : NULL;
	}
	u->port = REDISURL_DEFAULT_PORT;
	if (port) {
		if (!parse_number(port, (size_t)(end - port), 1, 65535, &n))
			return fail(why, "the port must be a number from 1 to 65535");
		u->port = (int)n;
	}
	if (slash && slash[1]) {
		if (!parse_number(slash + 1, strlen(slash + 1), 0, REDISURL_DB_MAX, &n))
			return fail(why, "the database (after /) must be a number from 0 to 1000000");
		u->db = (unsigned)n;
	}
	return 0;
}

int redisurl_parse(const char *text, struct redisurl *out, const char **why)
{
	struct redisurl u = { 0 };
	int r;

	if (!text || !*text)
		return fail(why, "empty");
	if (g_str_has_prefix(text, "redis://")) {
		r = parse_tcp(text + strlen("redis://"), &u, why);
	} else if (g_str_has_prefix(text, "unix:")) {
		const char *path = text + strlen("unix:");
		/* unix:///run/x.sock is common in other clients' syntax: accept it. */
		if (g_str_has_prefix(path, "//"))
			path += 2;
		if (path[0] != '/' || !path[1])
			r = fail(why, "a unix socket needs an absolute path: unix:/PATH");
		else if (strlen(path) >= 108) /* sizeof sun_path */
			r = fail(why, "the socket path is too long (at most 107 bytes)");
		else {
			u.path = g_strdup(path);
			r = 0;
		}
	} else if (g_str_has_prefix(text, "rediss://")) {
		r = fail(why, "TLS (rediss://) is not supported by hiredis 0.14: use a unix socket or a local tunnel");
	} else {
		r = fail(why, "expected redis://HOST:PORT[/DB] or unix:/PATH");
	}
	if (r < 0) {
		redisurl_clear(&u);
		return r;
	}
	*out = u;
	return 0;
}
