/* testredis: a real redis-server for one test, on a free loopback port and
 * a unix socket in its own directory, with no persistence. */
#pragma once

#include <glib.h>
#include <hiredis.h>
#include <stdbool.h>

struct testredis {
	GPid pid;      /* 0 while stopped */
	char *dir;     /* its directory (removed by testredis_free) */
	char *socket;  /* DIR/redis.sock */
	int port;      /* 127.0.0.1:PORT, kept across restarts */
	char *url;     /* redis://127.0.0.1:PORT */
	char *unix_url; /* unix:DIR/redis.sock */
};

/* Starts one and waits until it answers PING; aborts the test if it cannot. */
struct testredis *testredis_start(void);
/* SIGKILL, as an outage: nothing is saved. */
void testredis_kill(struct testredis *r);
/* Starts it again, empty, on the same port and socket. */
void testredis_restart(struct testredis *r);
/* A command on a new connection (the test's own view); NULL if it is down.
 * freeReplyObject. */
redisReply *testredis_command(struct testredis *r, const char *fmt, ...);
/* Stops it (if running) and removes its directory. */
void testredis_free(struct testredis *r);
