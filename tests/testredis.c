#include "testredis.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A port nobody listens on now.  Redis cannot take port 0, so the kernel
 * picks one for a socket that is then closed; a clash is retried. */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof a), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&a, &len), ==, 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool answers_ping(struct testredis *r)
{
	redisReply *rep = testredis_command(r, "PING");
	bool ok = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");

	if (rep)
		freeReplyObject(rep);
	return ok;
}

/* A test that aborts must not leave its redis-server behind (holding the
 * test driver's output pipe open). */
static void die_with_parent(gpointer unused)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Whether the server at R's address came up, within five seconds. */
static bool spawn(struct testredis *r)
{
	g_autofree char *port = g_strdup_printf("%d", r->port);
	const char *argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1",
			       "--unixsocket", r->socket, "--unixsocketperm", "700",
			       "--save", "", "--appendonly", "no", "--dir", r->dir,
			       "--logfile", "redis.log", "--daemonize", "no", NULL };
	g_autoptr(GError) err = NULL;

	if (!g_spawn_async(r->dir, (char **)argv, NULL,
			   G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
			   die_with_parent, NULL, &r->pid, &err))
		g_error("cannot start redis-server: %s", err->message);
	for (int i = 0; i < 500; i++) {
		int status;
		if (answers_ping(r))
			return true;
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			r->pid = 0; /* exited: the port was taken */
			return false;
		}
		g_usleep(10000);
	}
	return false;
}

struct testredis *testredis_start(void)
{
	struct testredis *r = g_new0(struct testredis, 1);

	r->dir = g_dir_make_tmp("rtcsignald-redis-XXXXXX", NULL);
	g_assert_nonnull(r->dir);
	r->socket = g_build_filename(r->dir, "redis.sock", NULL);
	r->unix_url = g_strdup_printf("unix:%s", r->socket);
	for (int attempt = 0; attempt < 5; attempt++) {
		r->port = free_port();
		if (spawn(r)) {
			r->url = g_strdup_printf("redis://127.0.0.1:%d", r->port);
			return r;
		}
		testredis_kill(r);
	}
	g_error("redis-server did not start (see %s/redis.log)", r->dir);
}

void testredis_kill(struct testredis *r)
{
	if (!r->pid)
		return;
	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	g_spawn_close_pid(r->pid);
	r->pid = 0;
	unlink(r->socket);
}

void testredis_restart(struct testredis *r)
{
	testredis_kill(r);
	if (!spawn(r))
		g_error("redis-server did not restart on port %d", r->port);
}

redisReply *testredis_command(struct testredis *r, const char *fmt, ...)
{
	struct timeval tv = { .tv_sec = 2 };
	redisContext *c = redisConnectUnixWithTimeout(r->socket, tv);
	redisReply *rep = NULL;
	va_list ap;

	if (c && !c->err) {
		redisSetTimeout(c, tv);
		va_start(ap, fmt);
		rep = redisvCommand(c, fmt, ap);
		va_end(ap);
	}
	if (c)
		redisFree(c);
	return rep;
}

void testredis_free(struct testredis *r)
{
	if (!r)
		return;
	if (r->pid) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
		g_spawn_close_pid(r->pid);
	}
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", r->dir);
	g_spawn_command_line_sync(rm, NULL, NULL, NULL, NULL);
	g_free(r->dir);
	g_free(r->socket);
	g_free(r->url);
	g_free(r->unix_url);
	g_free(r);
}
