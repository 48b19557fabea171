/* store: the queue between the loop and the backend's thread.
 *
 * The loop thread copies each write into a job and appends it to `queue`
 * under `lock`; the worker takes jobs one at a time, runs them against the
 * backend without the lock, appends them to `done` and wakes the loop
 * with uv_async_send; on_async then calls the completions on the loop.
 * Only the worker touches the backend, except store_load, which holds
 * `backend_lock` to read it from the caller's thread. */
#include "store/store.h"

#include "util/condvar.h"
#include "util/log.h"
#include "util/metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

enum job_op { JOB_PUT_ROOM, JOB_DELETE_ROOM, JOB_PUT_KEY, JOB_REVOKE_KEY, JOB_PURGE, JOB_PUT_MEMBER,
	      JOB_DELETE_MEMBER, JOB_PUT_PUBKEY, JOB_LOAD };

struct job {
	enum job_op op;
	struct store_room *room;
	struct store_key *key;
	struct store_member *member; /* put_member, delete_member */
	struct store_pubkey *pubkey;
	char *id;     /* delete_room, revoke_key */
	int64_t when; /* revoke_key, purge_expired */
	store_done_fn done;
	store_loaded_fn loaded; /* JOB_LOAD, instead of done */
	struct store_snapshot snap;
	void *data;
	int status;
	GError *error;
};

struct store {
	uv_async_t async;
	const struct store_backend_ops *ops;
	void *be;
	GThread *thread;
	pthread_mutex_t backend_lock;

	/* pthread, not GMutex/GCond: see condvar.h. */
	pthread_mutex_t lock; /* guards what follows */
	pthread_cond_t wake;  /* for the worker: a job, or closing */
	pthread_cond_t idle;  /* for store_close: the queue emptied */
	GQueue queue; /* of struct job, waiting */
	GQueue done;  /* of struct job, completed */
	bool closing;
	unsigned limit;
	unsigned retry_ms;

	atomic_int health;
	atomic_uint pending;
};

static const struct store_backend_ops *const backends[] = { &store_sqlite_ops, &store_redis_ops };

static struct store_room *store_room_copy(const struct store_room *room)
{
	struct store_room *c = g_new(struct store_room, 1);
	*c = *room;
	c->id = g_strdup(room->id);
	c->name = g_strdup(room->name);
	c->created_by = g_strdup(room->created_by);
	return c;
}

void store_room_free(struct store_room *room)
{
	if (!room)
		return;
	g_free(room->id);
	g_free(room->name);
	g_free(room->created_by);
	g_free(room);
}

static struct store_key *store_key_copy(const struct store_key *key)
{
	struct store_key *c = g_new(struct store_key, 1);
	*c = *key;
	c->key_id = g_strdup(key->key_id);
	c->room_id = g_strdup(key->room_id);
	c->account = g_strdup(key->account);
	c->name = g_strdup(key->name);
	return c;
}

void store_key_free(struct store_key *key)
{
	if (!key)
		return;
	g_free(key->key_id);
	g_free(key->room_id);
	g_free(key->account);
	g_free(key->name);
	g_free(key);
}

void store_member_free(struct store_member *m)
{
	if (!m)
		return;
	g_free(m->room_id);
	g_free(m->account);
	g_free(m);
}

void store_pubkey_free(struct store_pubkey *k)
{
	if (!k)
		return;
	g_free(k->account);
	g_free(k->public_key);
	g_free(k->device_name);
	g_free(k->username);
	g_free(k);
}

/* A fresh id into *ID when it has none, and a fresh credential into
 * SECRET with its hash into HASH. */
static int mint(char **id, char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)],
		uint8_t hash[SECRET_HASH_LEN])
{
	char buf[SECRET_HEX_SIZE(SECRET_ID_BYTES)];
	int r;

	if ((r = secret_random_hex(secret, SECRET_TOKEN_BYTES)) < 0 ||
	    (r = secret_hash(secret, hash)) < 0)
		return r;
	if (!*id) {
		if ((r = secret_random_hex(buf, SECRET_ID_BYTES)) < 0)
			return r;
		*id = g_strdup(buf);
	}
	return 0;
}

int store_room_mint(struct store_room *room, char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)])
{
	return mint(&room->id, token, room->token_hash);
}

int store_key_mint(struct store_key *key, char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)])
{
	return mint(&key->key_id, secret, key->key_hash);
}

static void job_free(struct job *job)
{
	store_room_free(job->room);
	store_key_free(job->key);
	store_member_free(job->member);
	store_pubkey_free(job->pubkey);
	g_free(job->id);
	g_clear_pointer(&job->snap.rooms, g_ptr_array_unref);
	g_clear_pointer(&job->snap.keys, g_ptr_array_unref);
	g_clear_pointer(&job->snap.members, g_ptr_array_unref);
	g_clear_pointer(&job->snap.pubkeys, g_ptr_array_unref);
	g_clear_error(&job->error);
	g_free(job);
}

/* Errors that say the backend is unwell, as opposed to a write that
 * named something missing or was malformed. */
static bool backend_failure(int r)
{
	return r < 0 && r != -ENOENT && r != -EEXIST && r != -EINVAL;
}

static int run_once(struct store *st, struct job *job)
{
	int r = -EINVAL;

	g_clear_error(&job->error);
	pthread_mutex_lock(&st->backend_lock);
	switch (job->op) {
	case JOB_PUT_ROOM:
		r = st->ops->put_room(st->be, job->room, &job->error);
		break;
	case JOB_DELETE_ROOM:
		r = st->ops->delete_room(st->be, job->id, &job->error);
		break;
	case JOB_PUT_KEY:
		r = st->ops->put_key(st->be, job->key, &job->error);
		break;
	case JOB_REVOKE_KEY:
		r = st->ops->revoke_key(st->be, job->id, job->when, &job->error);
		break;
	case JOB_PURGE:
		r = st->ops->purge_expired(st->be, job->when, &job->error);
		break;
	case JOB_PUT_MEMBER:
		r = st->ops->put_member(st->be, job->member, &job->error);
		break;
	case JOB_DELETE_MEMBER:
		r = st->ops->delete_member(st->be, job->member->room_id, job->member->account, &job->error);
		break;
	case JOB_PUT_PUBKEY:
		r = st->ops->put_pubkey(st->be, job->pubkey, &job->error);
		break;
	case JOB_LOAD:
		g_ptr_array_set_size(job->snap.rooms, 0);
		g_ptr_array_set_size(job->snap.keys, 0);
		g_ptr_array_set_size(job->snap.members, 0);
		g_ptr_array_set_size(job->snap.pubkeys, 0);
		if ((r = st->ops->load(st->be, job->snap.rooms, job->snap.keys, &job->error)) == 0 &&
		    (r = st->ops->load_members(st->be, job->snap.members, &job->error)) == 0)
			r = st->ops->load_pubkeys(st->be, job->snap.pubkeys, &job->error);
		break;
	}
	pthread_mutex_unlock(&st->backend_lock);
	return r;
}

#define RETRY_PAUSE_FIRST_MS 25
#define RETRY_PAUSE_MAX_MS 500

/* A database locked by someone else (an operator's sqlite3 shell, a
 * backup) is usually released within seconds: try again, pausing a bit
 * longer each time, until the retry window has passed.  Without this a
 * revocation would fail on a lock the next second would not have. */
static void run_job(struct store *st, struct job *job)
{
	pthread_mutex_lock(&st->lock);
	gint64 window = (gint64)st->retry_ms * 1000;
	pthread_mutex_unlock(&st->lock);
	gint64 start = g_get_monotonic_time();
	unsigned pause = RETRY_PAUSE_FIRST_MS, tries = 1;
	int r;

	while ((r = run_once(st, job)) == -EBUSY) {
		gint64 left = start + window - g_get_monotonic_time();
		if (left <= 0)
			break;
		if (tries == 1)
			log_warning("room store: %s; retrying for up to %u ms",
				    job->error ? job->error->message : "database busy",
				    (unsigned)(window / 1000));
		metrics_inc(store_retries);
		g_usleep(MIN((gint64)pause * 1000, left));
		pause = MIN(pause * 2, RETRY_PAUSE_MAX_MS);
		tries++;
	}
	if (r == -EBUSY && tries > 1)
		log_err("room store: still locked after %u tries in %u ms: %s", tries,
			(unsigned)((g_get_monotonic_time() - start) / 1000),
			job->error ? job->error->message : "database busy");
	else if (tries > 1)
		log_notice("room store: written after %u tries", tries);
	job->status = r;
	if (r >= 0)
		atomic_store(&st->health, 0);
	else if (backend_failure(r)) {
		atomic_store(&st->health, r);
		metrics_inc(store_errors[st->ops == &store_redis_ops]);
	}
}

static gpointer worker(gpointer data)
{
	struct store *st = data;
	struct job *job;

	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (!st->queue.length && !st->closing)
			pthread_cond_wait(&st->wake, &st->lock);
		if (!(job = g_queue_pop_head(&st->queue)))
			break; /* closing, and nothing left */
		pthread_mutex_unlock(&st->lock);

		run_job(st, job);

		pthread_mutex_lock(&st->lock);
		g_queue_push_tail(&st->done, job);
		if (!st->queue.length)
			pthread_cond_broadcast(&st->idle);
		/* Coalesced by libuv: one on_async for many jobs. */
		uv_async_send(&st->async);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/* Calls the completions of the jobs in LIST, on the loop thread, without
 * the lock: a completion may queue the next write.  A job is pending
 * until its completion has run, so that whoever waits for none pending
 * (a shutdown, a test) knows every completion has been called. */
static void complete(struct store *st, GQueue *list)
{
	struct job *job;

	while ((job = g_queue_pop_head(list))) {
		if (job->loaded)
			job->loaded(job->status, job->error, job->status < 0 ? NULL : &job->snap,
				    job->data);
		else if (job->done)
			job->done(job->status, job->error, job->data);
		job_free(job);
		atomic_fetch_sub(&st->pending, 1);
	}
}

static void on_async(uv_async_t *async)
{
	struct store *st = async->data;
	GQueue list = G_QUEUE_INIT;

	pthread_mutex_lock(&st->lock);
	list = st->done;
	g_queue_init(&st->done);
	pthread_mutex_unlock(&st->lock);
	complete(st, &list);
}

static const struct store_backend_ops *find_backend(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(backends); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

static void store_free(struct store *st)
{
	pthread_mutex_destroy(&st->backend_lock);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->wake);
	pthread_cond_destroy(&st->idle);
	g_free(st);
}

/* Stops the worker once the queue is empty and waits for it. */
static void stop_worker(struct store *st)
{
	pthread_mutex_lock(&st->lock);
	st->closing = true;
	pthread_cond_signal(&st->wake);
	pthread_mutex_unlock(&st->lock);
	g_thread_join(st->thread);
	st->thread = NULL;
}

int store_open(uv_loop_t *loop, const char *backend, const char *state_dir, struct store **out,
	       GError **err)
{
	const struct store_params p = { .state_dir = state_dir };
	return store_open_with(loop, backend, &p, out, err);
}

int store_open_with(uv_loop_t *loop, const char *backend, const struct store_params *p,
		    struct store **out, GError **err)
{
	const struct store_backend_ops *ops = find_backend(backend);
	g_autoptr(GError) local = NULL;
	struct store *st;
	int r;

	if (!ops) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL,
			    "unknown room store \"%s\" (known: sqlite, redis)", backend);
		return -EINVAL;
	}
	st = g_new0(struct store, 1);
	st->ops = ops;
	st->limit = STORE_QUEUE_DEFAULT;
	st->retry_ms = STORE_RETRY_DEFAULT_MS;
	pthread_mutex_init(&st->backend_lock, NULL);
	pthread_mutex_init(&st->lock, NULL);
	condvar_init(&st->wake);
	condvar_init(&st->idle);
	g_queue_init(&st->queue);
	g_queue_init(&st->done);

	if ((r = ops->open(p, &st->be, err)) < 0)
		goto fail;
	/* The worker sends to the async handle only after a job, and jobs
	 * come after the handle is set up below. */
	st->thread = g_thread_try_new("store", worker, st, &local);
	if (!st->thread) {
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED,
			    "room store: cannot start its thread: %s", local->message);
		r = -EAGAIN;
		goto fail_backend;
	}
	if ((r = uv_async_init(loop, &st->async, on_async)) < 0) {
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(-r),
			    "room store: uv_async_init: %s", uv_strerror(r));
		stop_worker(st);
		goto fail_backend;
	}
	st->async.data = st;
	*out = st;
	return 0;

fail_backend:
	ops->close(st->be);
fail:
	store_free(st);
	return r;
}

void store_set_queue_limit(struct store *st, unsigned max)
{
	pthread_mutex_lock(&st->lock);
	st->limit = max ? max : 1;
	pthread_mutex_unlock(&st->lock);
}

void store_set_retry_timeout(struct store *st, unsigned ms)
{
	pthread_mutex_lock(&st->lock);
	st->retry_ms = ms;
	pthread_mutex_unlock(&st->lock);
}

int store_load(struct store *st, GPtrArray **rooms, GPtrArray **keys, GError **err)
{
	g_autoptr(GPtrArray) r_list = g_ptr_array_new_with_free_func((GDestroyNotify)store_room_free);
	g_autoptr(GPtrArray) k_list = g_ptr_array_new_with_free_func((GDestroyNotify)store_key_free);
	int r;

	pthread_mutex_lock(&st->backend_lock);
	r = st->ops->load(st->be, r_list, k_list, err);
	pthread_mutex_unlock(&st->backend_lock);
	atomic_store(&st->health, r < 0 && backend_failure(r) ? r : 0);
	if (r < 0)
		return r;
	*rooms = g_steal_pointer(&r_list);
	*keys = g_steal_pointer(&k_list);
	return 0;
}

int store_load_members(struct store *st, GPtrArray **members, GError **err)
{
	g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func((GDestroyNotify)store_member_free);
	int r;

	pthread_mutex_lock(&st->backend_lock);
	r = st->ops->load_members(st->be, list, err);
	pthread_mutex_unlock(&st->backend_lock);
	if (r < 0)
		return r;
	*members = g_steal_pointer(&list);
	return 0;
}

/* Takes JOB (freeing it when it cannot be queued). */
static int submit(struct store *st, struct job *job, store_done_fn done, void *data)
{
	int r = 0;
	unsigned limit;

	job->done = done;
	job->data = data;
	pthread_mutex_lock(&st->lock);
	limit = st->limit;
	if (st->closing)
		r = -ESHUTDOWN;
	else if (st->queue.length >= st->limit)
		r = -EAGAIN; /* fail fast: the caller decides, memory does not grow */
	else {
		g_queue_push_tail(&st->queue, job);
		atomic_fetch_add(&st->pending, 1);
		pthread_cond_signal(&st->wake);
	}
	pthread_mutex_unlock(&st->lock);
	if (r == -EAGAIN) {
		/* Said here, once for every caller: none may drop a write unheard. */
		metrics_inc(store_queue_full);
		log_err("room store: %u writes already queued: refusing another (the database is slow "
			"or locked)", limit);
	}
	if (r < 0)
		job_free(job);
	return r;
}

static struct job *job_new(enum job_op op)
{
	struct job *job = g_new0(struct job, 1);
	job->op = op;
	return job;
}

int store_put_room(struct store *st, const struct store_room *room, store_done_fn done,
		   void *data)
{
	struct job *job;

	if (!room->id || !*room->id || !room->created_by)
		return -EINVAL;
	job = job_new(JOB_PUT_ROOM);
	job->room = store_room_copy(room);
	return submit(st, job, done, data);
}

int store_delete_room(struct store *st, const char *room_id, store_done_fn done, void *data)
{
	struct job *job;

	if (!room_id || !*room_id)
		return -EINVAL;
	job = job_new(JOB_DELETE_ROOM);
	job->id = g_strdup(room_id);
	return submit(st, job, done, data);
}

int store_put_key(struct store *st, const struct store_key *key, store_done_fn done, void *data)
{
	struct job *job;

	/* Exactly one of a room and an account. */
	if (!key->key_id || !*key->key_id || !key->room_id == !key->account ||
	    (key->room_id && !*key->room_id) || (key->account && !*key->account))
		return -EINVAL;
	job = job_new(JOB_PUT_KEY);
	job->key = store_key_copy(key);
	return submit(st, job, done, data);
}

static struct job *member_job(enum job_op op, const char *room_id, const char *account,
			      int64_t added_at)
{
	struct job *job = job_new(op);
	job->member = g_new0(struct store_member, 1);
	job->member->room_id = g_strdup(room_id);
	job->member->account = g_strdup(account);
	job->member->added_at = added_at;
	return job;
}

int store_put_member(struct store *st, const struct store_member *m, store_done_fn done, void *data)
{
	if (!m->room_id || !*m->room_id || !m->account || !*m->account)
		return -EINVAL;
	return submit(st, member_job(JOB_PUT_MEMBER, m->room_id, m->account, m->added_at), done, data);
}

int store_delete_member(struct store *st, const char *room_id, const char *account,
			store_done_fn done, void *data)
{
	if (!room_id || !*room_id || !account || !*account)
		return -EINVAL;
	return submit(st, member_job(JOB_DELETE_MEMBER, room_id, account, 0), done, data);
}

int store_revoke_key(struct store *st, const char *key_id, int64_t when, store_done_fn done,
		     void *data)
{
	struct job *job;

	if (!key_id || !*key_id || when <= 0)
		return -EINVAL;
	job = job_new(JOB_REVOKE_KEY);
	job->id = g_strdup(key_id);
	job->when = when;
	return submit(st, job, done, data);
}

int store_purge_expired(struct store *st, int64_t now, store_done_fn done, void *data)
{
	struct job *job = job_new(JOB_PURGE);
	job->when = now;
	return submit(st, job, done, data);
}

int store_put_pubkey(struct store *st, const struct store_pubkey *k, store_done_fn done, void *data)
{
	struct job *job;

	if (!k->account || !*k->account || !k->public_key || !*k->public_key)
		return -EINVAL;
	job = job_new(JOB_PUT_PUBKEY);
	job->pubkey = g_new0(struct store_pubkey, 1);
	*job->pubkey = *k;
	job->pubkey->account = g_strdup(k->account);
	job->pubkey->public_key = g_strdup(k->public_key);
	job->pubkey->device_name = g_strdup(k->device_name);
	job->pubkey->username = g_strdup(k->username);
	return submit(st, job, done, data);
}

int store_load_pubkeys(struct store *st, GPtrArray **out, GError **err)
{
	g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func((GDestroyNotify)store_pubkey_free);
	int r;

	pthread_mutex_lock(&st->backend_lock);
	r = st->ops->load_pubkeys(st->be, list, err);
	pthread_mutex_unlock(&st->backend_lock);
	if (r < 0)
		return r;
	*out = g_steal_pointer(&list);
	return 0;
}

int store_reload(struct store *st, store_loaded_fn done, void *data)
{
	struct job *job = job_new(JOB_LOAD);

	job->loaded = done;
	job->snap.rooms = g_ptr_array_new_with_free_func((GDestroyNotify)store_room_free);
	job->snap.keys = g_ptr_array_new_with_free_func((GDestroyNotify)store_key_free);
	job->snap.members = g_ptr_array_new_with_free_func((GDestroyNotify)store_member_free);
	job->snap.pubkeys = g_ptr_array_new_with_free_func((GDestroyNotify)store_pubkey_free);
	return submit(st, job, NULL, data);
}

int store_ping(struct store *st)
{
	return atomic_load(&st->health);
}

unsigned store_pending(struct store *st)
{
	return atomic_load(&st->pending);
}

static void on_closed(uv_handle_t *h)
{
	store_free(h->data);
}

int store_close(struct store *st, unsigned timeout_ms)
{
	struct timespec deadline = condvar_deadline(g_get_monotonic_time() + (gint64)timeout_ms * 1000);
	GQueue list = G_QUEUE_INIT, cancelled = G_QUEUE_INIT;
	struct job *job;

	if (!st)
		return 0;
	pthread_mutex_lock(&st->lock);
	st->closing = true;
	pthread_cond_signal(&st->wake);
	while (st->queue.length && pthread_cond_timedwait(&st->idle, &st->lock, &deadline) != ETIMEDOUT)
		;
	/* Out of time: what has not started will not be written.  The job
	 * in progress finishes (bounded by the backend's busy timeout). */
	while ((job = g_queue_pop_head(&st->queue))) {
		job->status = -ECANCELED;
		g_set_error(&job->error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
			    "room store: not written, gave up after %u ms at shutdown", timeout_ms);
		g_queue_push_tail(&cancelled, job);
	}
	pthread_mutex_unlock(&st->lock);

	stop_worker(st);
	st->ops->close(st->be);
	st->be = NULL;

	/* The worker is gone: no more async sends, the done list is ours.
	 * Completions keep the order of submission: the cancelled jobs were
	 * queued after every job done. */
	list = st->done;
	g_queue_init(&st->done);
	complete(st, &list);
	int r = cancelled.length ? -ETIMEDOUT : 0;
	complete(st, &cancelled);
	uv_close((uv_handle_t *)&st->async, on_closed);
	return r;
}
