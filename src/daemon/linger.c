#include "daemon/linger.h"
#include "util/metrics.h"

#include <errno.h>
#include <glib.h>
#include <sys/socket.h>
#include <unistd.h>

struct lingering {
	uv_poll_t poll;
	uv_timer_t timer;
	int fd;
	int open_handles;
	struct linger_pool *owner;
	GList link;
};

struct linger_pool {
	uv_loop_t *loop;
	unsigned max_sockets, grace_ms;
	GQueue sockets;
	unsigned allocated; /* lingering structs not yet freed */
	bool freeing;
};

struct linger_pool *linger_new(uv_loop_t *loop, unsigned max_sockets, unsigned grace_ms)
{
	struct linger_pool *l = g_new0(struct linger_pool, 1);
	l->loop = loop;
	l->max_sockets = max_sockets;
	l->grace_ms = grace_ms;
	return l;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct lingering *s = h->data;
	struct linger_pool *l = s->owner;

	if (--s->open_handles)
		return;
	g_free(s);
	if (--l->allocated == 0 && l->freeing)
		g_free(l);
}

static void finish(struct lingering *s)
{
	g_queue_unlink(&s->owner->sockets, &s->link);
	metrics_set(lingering_sockets, s->owner->sockets.length);
	uv_close((uv_handle_t *)&s->poll, on_handle_closed);
	uv_close((uv_handle_t *)&s->timer, on_handle_closed);
	close(s->fd);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
	struct lingering *s = poll->data;
	char buf[16384];
	(void)events;

	/* Bounded per wakeup; the timer bounds the whole. */
	for (int i = 0; status == 0 && i < 4; i++) {
		ssize_t n = read(s->fd, buf, sizeof buf);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			break; /* EOF or an error: the peer is done */
		if (i == 3)
			return;
	}
	finish(s);
}

static void on_timeout(uv_timer_t *timer)
{
	finish(timer->data);
}

void linger_add(struct linger_pool *l, int fd)
{
	if (fd < 0)
		return;
	/* Our FIN, in case it has not gone yet. */
	shutdown(fd, SHUT_WR);
	if (l->freeing || l->sockets.length >= l->max_sockets) {
		close(fd);
		return;
	}
	struct lingering *s = g_new0(struct lingering, 1);
	l->allocated++;
	s->fd = fd;
	s->owner = l;
	s->link.data = s;
	if (uv_poll_init(l->loop, &s->poll, fd) < 0) {
		close(fd);
		g_free(s);
		l->allocated--;
		return;
	}
	uv_timer_init(l->loop, &s->timer);
	s->poll.data = s->timer.data = s;
	s->open_handles = 2;
	g_queue_push_tail_link(&l->sockets, &s->link);
	metrics_set(lingering_sockets, l->sockets.length);
	uv_poll_start(&s->poll, UV_READABLE, on_readable);
	uv_timer_start(&s->timer, on_timeout, l->grace_ms, 0);
}

void linger_free(struct linger_pool *l)
{
	if (!l)
		return;
	l->freeing = true;
	while (!g_queue_is_empty(&l->sockets))
		finish(g_queue_peek_head(&l->sockets));
	if (!l->allocated)
		g_free(l);
}
