/* Unit tests: the [cluster] redis address (src/redisurl.c). */
#include "util/redisurl.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

static void good(const char *text, const char *host, int port, const char *path, unsigned db)
{
	struct redisurl u;
	const char *why = NULL;

	g_assert_cmpint(redisurl_parse(text, &u, &why), ==, 0);
	g_assert_cmpstr(u.host, ==, host);
	g_assert_cmpint(u.port, ==, port);
	g_assert_cmpstr(u.path, ==, path);
	g_assert_cmpuint(u.db, ==, db);
	redisurl_clear(&u);
}

static void bad(const char *text, const char *why_part)
{
	struct redisurl u = { 0 };
	const char *why = NULL;

	g_assert_cmpint(redisurl_parse(text, &u, &why), ==, -EINVAL);
	g_assert_nonnull(why);
	if (!strstr(why, why_part))
		g_error("%s: \"%s\" does not say \"%s\"", text, why, why_part);
	g_assert_null(u.host);
	g_assert_null(u.path);
}

static void test_tcp(void)
{
	good("redis://127.0.0.1:6380", "127.0.0.1", 6380, NULL, 0);
	good("redis://localhost", "localhost", 6379, NULL, 0);
	good("redis://redis.example.org:6379/3", "redis.example.org", 6379, NULL, 3);
	good("redis://[::1]:7000/15", "::1", 7000, NULL, 15);
	good("redis://[::1]", "::1", 6379, NULL, 0);
	good("redis://h:1/", "h", 1, NULL, 0);
}

static void test_db(void)
{
	good("redis://h:1/0", "h", 1, NULL, 0);
	good("redis://h:1/1000000", "h", 1, NULL, 1000000);
	bad("redis://h:1/1000001", "database");
	bad("redis://h:1/-1", "database");
	bad("redis://h:1/x", "database");
	bad("redis://h:1/1/2", "database");
	bad("redis://h:1/ 1", "database");
}

static void test_unix(void)
{
	good("unix:/run/redis/redis-server.sock", NULL, 0, "/run/redis/redis-server.sock", 0);
	good("unix:///run/redis.sock", NULL, 0, "/run/redis.sock", 0);
	bad("unix:run/redis.sock", "absolute");
	bad("unix:", "absolute");
	bad("unix:/", "absolute");
	g_autofree char *longp = g_strnfill(120, 'a');
	g_autofree char *text = g_strconcat("unix:/", longp, NULL);
	bad(text, "too long");
}

static void test_bad(void)
{
	bad("", "empty");
	bad(NULL, "empty");
	bad("127.0.0.1:6379", "expected");
	bad("http://h:1", "expected");
	bad("rediss://h:1", "TLS");
	bad("redis://", "host");
	bad("redis://:6379", "host");
	bad("redis://user:pw@h:1", "password_file");
	bad("redis://h:1?db=2", "options");
	bad("redis://h:0", "port");
	bad("redis://h:65536", "port");
	bad("redis://h:", "port");
	bad("redis://h:12x", "port");
	bad("redis://h_x:1", "host");
	bad("redis://[::1", "brackets");
	bad("redis://[]:1", "brackets");
	bad("redis://[::1]x", "PORT");
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/redisurl/tcp", test_tcp);
	g_test_add_func("/redisurl/db", test_db);
	g_test_add_func("/redisurl/unix", test_unix);
	g_test_add_func("/redisurl/bad", test_bad);
	return g_test_run();
}
