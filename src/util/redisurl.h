/* redisurl: the [cluster] redis address, "redis://HOST[:PORT][/DB]" or
 * "unix:/PATH".  Credentials never go in it: [cluster] password_file. */
#pragma once

#define REDISURL_DEFAULT_PORT 6379
#define REDISURL_DB_MAX 1000000 /* redis.conf "databases" has no real bound; this is sanity */

struct redisurl {
	char *host; /* NULL for a unix socket; an IPv6 address without brackets */
	int port;
	char *path; /* the unix socket, or NULL */
	unsigned db;
};

/* 0, or -EINVAL with *WHY (a static string) saying what is wrong. */
int redisurl_parse(const char *text, struct redisurl *out, const char **why);
void redisurl_clear(struct redisurl *u);
