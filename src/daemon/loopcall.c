#include "daemon/loopcall.h"

#include "util/condvar.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdbool.h>

/* pthread, not GMutex/GCond: see condvar.h. */
struct loopcall {
	uv_async_t async;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	GQueue pending;      /* of struct request, on the callers' stacks */
	bool closing;
};

struct request {
	GList link;
	loopcall_fn fn;
	void *data;
	bool started, done;
	bool posted; /* on the heap, nobody waits: freed once run */
};

static void on_async(uv_async_t *h)
{
	struct loopcall *lc = h->data;
	GList *l;

	pthread_mutex_lock(&lc->lock);
	while ((l = g_queue_pop_head_link(&lc->pending))) {
		struct request *r = l->data;
		bool posted = r->posted;
		r->started = true;
		pthread_mutex_unlock(&lc->lock);
		r->fn(r->data);
		if (posted)
			g_free(r);
		pthread_mutex_lock(&lc->lock);
		if (!posted)
			r->done = true;
	}
	pthread_cond_broadcast(&lc->cond);
	pthread_mutex_unlock(&lc->lock);
}

int loopcall_new(uv_loop_t *loop, struct loopcall **out)
{
	struct loopcall *lc = g_new0(struct loopcall, 1);
	int r = uv_async_init(loop, &lc->async, on_async);
	if (r < 0) {
		g_free(lc);
		return r;
	}
	lc->async.data = lc;
	condvar_init(&lc->cond);
	pthread_mutex_init(&lc->lock, NULL);
	g_queue_init(&lc->pending);
	*out = lc;
	return 0;
}

int loopcall_run(struct loopcall *lc, loopcall_fn fn, void *data, int timeout_ms)
{
	struct request r = { .fn = fn, .data = data };
	struct timespec deadline = condvar_deadline(g_get_monotonic_time() + (gint64)timeout_ms * 1000);
	bool late = false;
	int rc;

	r.link.data = &r;
	pthread_mutex_lock(&lc->lock);
	if (lc->closing) {
		pthread_mutex_unlock(&lc->lock);
		return -ESHUTDOWN;
	}
	g_queue_push_tail_link(&lc->pending, &r.link);
	uv_async_send(&lc->async);
	while (!r.done && !lc->closing && !late)
		late = pthread_cond_timedwait(&lc->cond, &lc->lock, &deadline) == ETIMEDOUT;
	/* Not started: take it back, so the loop never sees a dead request.
	 * Started: it is running now and finishes soon; wait for it (without
	 * a deadline, which has passed and would make the wait spin). */
	if (!r.started) {
		g_queue_unlink(&lc->pending, &r.link);
		rc = late ? -ETIMEDOUT : -ESHUTDOWN;
	} else {
		while (!r.done)
			pthread_cond_wait(&lc->cond, &lc->lock);
		rc = 0;
	}
	pthread_mutex_unlock(&lc->lock);
	return rc;
}

int loopcall_post(struct loopcall *lc, loopcall_fn fn, void *data)
{
	struct request *r = g_new0(struct request, 1);

	r->fn = fn;
	r->data = data;
	r->posted = true;
	r->link.data = r;
	pthread_mutex_lock(&lc->lock);
	if (lc->closing) {
		pthread_mutex_unlock(&lc->lock);
		g_free(r);
		return -ESHUTDOWN;
	}
	g_queue_push_tail_link(&lc->pending, &r->link);
	pthread_mutex_unlock(&lc->lock);
	uv_async_send(&lc->async);
	return 0;
}

void loopcall_close(struct loopcall *lc)
{
	GList *l;

	pthread_mutex_lock(&lc->lock);
	lc->closing = true;
	/* Posted requests nobody will run: drop them.  Their owners learn of
	 * it through their own shutdown. */
	for (l = lc->pending.head; l;) {
		GList *next = l->next;
		struct request *r = l->data;
		if (r->posted) {
			g_queue_unlink(&lc->pending, l);
			g_free(r);
		}
		l = next;
	}
	pthread_cond_broadcast(&lc->cond);
	pthread_mutex_unlock(&lc->lock);
	uv_close((uv_handle_t *)&lc->async, NULL);
}

void loopcall_free(struct loopcall *lc)
{
	if (!lc)
		return;
	pthread_mutex_destroy(&lc->lock);
	pthread_cond_destroy(&lc->cond);
	g_free(lc);
}
