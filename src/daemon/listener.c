#include "daemon/listener.h"

#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* At most this many accepts per wake-up, so one busy port cannot starve
 * the rest of the loop. */
#define ACCEPT_BATCH 64
/* Out of descriptors, accepting pauses this long: the connection waits in
 * the backlog and the socket stays readable, so trying again at once
 * would spin the loop. */
#define ACCEPT_PAUSE_MS 100

struct listener {
	uv_poll_t poll;
	uv_timer_t pause;
	int fd;
	int handles; /* open libuv handles: freed when the last closes */
	bool paused;
	listener_accept_fn fn;
	void *data;
};

int listener_bind(const struct listen_addr *addr)
{
	int one = 1;
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (addr->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 4096) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

void listener_describe(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
			port = ntohs(s4->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
			port = ntohs(s6->sin6_port);
			snprintf(buf, len, "[%s]:%u", host, port);
			return;
		}
	}
	snprintf(buf, len, "%s:%u", host, port);
}

static void on_readable(uv_poll_t *poll, int status, int events);

static void on_pause_over(uv_timer_t *t)
{
	struct listener *l = t->data;
	uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
	struct listener *l = poll->data;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (l->paused) {
				l->paused = false;
				log_notice("accepting connections again");
			}
			/* Signaling is small messages that want to leave now: Nagle
			 * plus the peer's delayed ACK would hold each for 40 ms. */
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			l->fn(l->data, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			if (!l->paused)
				log_warning("accept failed: %s; pausing new connections (is the open "
					    "file limit below max_sessions?)", g_strerror(errno));
			l->paused = true;
			uv_poll_stop(&l->poll);
			uv_timer_start(&l->pause, on_pause_over, ACCEPT_PAUSE_MS, 0);
			return;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			log_warning("accept failed: %s", g_strerror(errno));
		break;
	}
}

int listener_new(uv_loop_t *loop, int fd, listener_accept_fn fn, void *data,
		 struct listener **out)
{
	struct listener *l = g_new0(struct listener, 1);
	int r;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	l->fd = fd;
	l->fn = fn;
	l->data = data;
	r = uv_poll_init(loop, &l->poll, fd);
	if (r < 0) {
		g_free(l);
		return r;
	}
	l->poll.data = l;
	uv_timer_init(loop, &l->pause);
	l->pause.data = l;
	l->handles = 2;
	uv_poll_start(&l->poll, UV_READABLE, on_readable);
	*out = l;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	if (--l->handles)
		return;
	close(l->fd);
	g_free(l);
}

void listener_close(struct listener *l)
{
	if (!l)
		return;
	uv_close((uv_handle_t *)&l->poll, on_closed);
	uv_close((uv_handle_t *)&l->pause, on_closed);
}
