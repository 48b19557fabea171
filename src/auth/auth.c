#include "auth/auth.h"

#include "auth/fetch.h"
#include "util/log.h"
#include "util/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

/* After a failed fetch the next try comes this soon, doubling with each
 * failure up to jwks_refresh or RETRY_MAX_S: an identity provider that is
 * down is neither hammered nor forgotten. */
#define RETRY_FIRST_S 5
#define RETRY_MAX_S 300

/* A key set fetched from a URL, shared by the issuers that name it. */
struct keysource {
	struct auth *a;
	char *url, *ca_file;
	int url_log_len; /* without the query, which may hold a secret */
	unsigned refresh_s, refresh_min_s;
	struct jwks *keys; /* the last good set, or NULL */
	struct fetch *inflight;
	/* When an unknown kid last caused a fetch that brought no new key;
	 * the next waits jwks_refresh_min.  0: none. */
	gint64 kid_fetch_us;
	unsigned failures; /* in a row */
	uv_timer_t timer;  /* the next refresh or retry */
	bool has_timer;
	GQueue waiters; /* of struct auth_wait */
};

struct auth_wait {
	struct keysource *ks;
	auth_keys_fn fn;
	void *data;
	GList link;
};

struct issuer {
	struct jwt_issuer *jwt;
	struct keysource *ks; /* NULL: keys from a file */
	const struct config_issuer *ci; /* during auth_configure only */
};

struct auth {
	GPtrArray *issuers;     /* of struct issuer */
	GPtrArray *jwt_issuers; /* the same, as jwt_verify wants them */
	GPtrArray *sources;     /* of struct keysource */
	uv_loop_t *loop;        /* NULL: not fetching */
	struct fetch_client *fc;
	atomic_uint issuers_without_keys; /* read by /ready from the admin thread */
	bool required; /* see auth_required */
};

static void issuer_free(gpointer p)
{
	struct issuer *is = p;
	jwt_issuer_free(is->jwt);
	g_free(is);
}

static void free_source(struct keysource *ks)
{
	GList *l;

	while ((l = g_queue_pop_head_link(&ks->waiters)))
		g_free(l->data);
	jwks_unref(ks->keys);
	g_free(ks->url);
	g_free(ks->ca_file);
	g_free(ks);
}

static void on_timer_closed(uv_handle_t *h)
{
	free_source(h->data);
}

/* Ends KS's fetching; its timer closes through the loop. */
static void stop_source(struct keysource *ks, bool then_free)
{
	if (ks->inflight)
		fetch_cancel(g_steal_pointer(&ks->inflight));
	if (ks->has_timer) {
		ks->has_timer = false;
		uv_close((uv_handle_t *)&ks->timer, then_free ? on_timer_closed : NULL);
	} else if (then_free) {
		free_source(ks);
	}
}

struct auth *auth_new(void)
{
	struct auth *a = g_new0(struct auth, 1);
	a->issuers = g_ptr_array_new_with_free_func(issuer_free);
	a->jwt_issuers = g_ptr_array_new();
	a->sources = g_ptr_array_new();
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	for (guint i = 0; i < a->sources->len; i++) {
		struct keysource *ks = g_ptr_array_index(a->sources, i);
		if (ks->inflight)
			fetch_cancel(ks->inflight);
		free_source(ks); /* timers were closed by auth_stop_fetching */
	}
	g_ptr_array_unref(a->sources);
	g_ptr_array_unref(a->jwt_issuers);
	g_ptr_array_unref(a->issuers);
	g_free(a);
}

static void count_missing_keys(struct auth *a)
{
	unsigned n = 0;
	for (guint i = 0; i < a->issuers->len; i++)
		if (!((struct issuer *)g_ptr_array_index(a->issuers, i))->jwt->jwks)
			n++;
	atomic_store(&a->issuers_without_keys, n);
}

/* For /ready, /health and the metrics: key sets served from the cache
 * because their last refresh failed. */
static void count_stale(struct auth *a)
{
	unsigned n = 0;
	for (guint i = 0; i < a->sources->len; i++)
		if (((struct keysource *)g_ptr_array_index(a->sources, i))->failures)
			n++;
	metrics_set(jwks_stale, n);
}

static void start_fetch(struct keysource *ks);

static void on_timer(uv_timer_t *t)
{
	start_fetch(t->data);
}

static void schedule(struct keysource *ks, unsigned secs)
{
	if (ks->has_timer)
		uv_timer_start(&ks->timer, on_timer, (uint64_t)secs * 1000, 0);
}

static unsigned retry_secs(const struct keysource *ks)
{
	unsigned cap = MIN(ks->refresh_s, RETRY_MAX_S), s = RETRY_FIRST_S;
	for (unsigned i = 1; i < ks->failures && s < cap; i++)
		s *= 2;
	return MIN(s, cap);
}

static void notify_waiters(struct keysource *ks)
{
	GList *l;

	while ((l = g_queue_pop_head_link(&ks->waiters))) {
		struct auth_wait *w = l->data;
		auth_keys_fn fn = w->fn;
		void *data = w->data;
		g_free(w);
		fn(data);
	}
}

static void fetch_failed(struct keysource *ks, const char *why)
{
	ks->failures++;
	metrics_inc(jwks_fetches[0]);
	count_stale(ks->a);
	unsigned retry = retry_secs(ks);
	log_warning("key set %.*s: %s; %s, next try in %u s", ks->url_log_len, ks->url, why,
		    ks->keys ? "keeping the previous one" : "no keys yet", retry);
	schedule(ks, retry);
}

static bool same_keys(const struct jwks *a, const struct jwks *b)
{
	if (!a || a->n_keys != b->n_keys)
		return false;
	for (size_t i = 0; i < a->n_keys; i++)
		if (g_strcmp0(a->keys[i].kid, b->keys[i].kid) != 0 || strcmp(a->keys[i].pem, b->keys[i].pem) != 0)
			return false;
	return true;
}

static void on_fetched(int status, unsigned http_status, const char *body, size_t len,
		       const char *why, void *data)
{
	struct keysource *ks = data;
	struct auth *a = ks->a;
	g_autoptr(GError) err = NULL;
	struct jwks *keys = NULL;
	(void)http_status;

	ks->inflight = NULL;
	if (status == 0 && jwks_parse(body, len, &keys, &err) < 0) {
		status = -EINVAL;
		why = err->message;
	}
	if (status < 0) {
		fetch_failed(ks, why);
	} else {
		bool recovered = ks->failures > 0;
		ks->failures = 0;
		metrics_inc(jwks_fetches[1]);
		count_stale(a);
		/* Keys changed (no attacker can do that): the next unknown kid
		 * may look again at once, it may be the next rotation. */
		if (!same_keys(ks->keys, keys))
			ks->kid_fetch_us = 0;
		jwks_unref(ks->keys);
		ks->keys = keys;
		for (guint i = 0; i < a->issuers->len; i++) {
			struct issuer *is = g_ptr_array_index(a->issuers, i);
			if (is->ks == ks)
				jwt_issuer_set_jwks(is->jwt, keys);
		}
		count_missing_keys(a);
		/* Logged once /ready says so: whoever reads the line may ask. */
		log_info("key set %.*s: %zu keys%s", ks->url_log_len, ks->url, keys->n_keys,
			 recovered ? " (the identity provider answers again)" : "");
		schedule(ks, ks->refresh_s);
	}
	notify_waiters(ks);
}

static void start_fetch(struct keysource *ks)
{
	const struct fetch_request req = { .url = ks->url, .ca_file = ks->ca_file };

	if (!ks->a->fc || ks->inflight)
		return;
	int r = fetch_start(ks->a->fc, &req, on_fetched, ks, &ks->inflight);
	if (r == -EBUSY) {
		/* Other key sets are being fetched (FETCH_MAX_IN_FLIGHT): not
		 * a failure of this one, its turn comes in a second. */
		ks->inflight = NULL;
		schedule(ks, 1);
	} else if (r < 0) {
		ks->inflight = NULL;
		fetch_failed(ks, g_strerror(-r));
	}
}

static void begin_source(struct auth *a, struct keysource *ks)
{
	uv_timer_init(a->loop, &ks->timer);
	ks->timer.data = ks;
	ks->has_timer = true;
	start_fetch(ks);
}

static struct keysource *find_source(struct auth *a, const struct config_issuer *ci)
{
	for (guint i = 0; i < a->sources->len; i++) {
		struct keysource *ks = g_ptr_array_index(a->sources, i);
		if (strcmp(ks->url, ci->jwks_url) == 0 && g_strcmp0(ks->ca_file, ci->jwks_ca_file) == 0)
			return ks;
	}
	struct keysource *ks = g_new0(struct keysource, 1);
	ks->a = a;
	ks->url = g_strdup(ci->jwks_url);
	ks->url_log_len = (int)strcspn(ks->url, "?");
	ks->ca_file = g_strdup(ci->jwks_ca_file);
	g_ptr_array_add(a->sources, ks);
	if (a->loop)
		begin_source(a, ks);
	return ks;
}

static int read_jwks_file(const struct config_issuer *ci, struct jwks **out, GError **err)
{
	g_autofree char *text = NULL;
	gsize len;
	g_autoptr(GError) local = NULL;

	if (!g_file_get_contents(ci->jwks_file, &text, &len, &local) ||
	    jwks_parse(text, len, out, &local) < 0) {
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "[issuer %s] jwks_file %s: %s", ci->name, ci->jwks_file, local->message);
		return -EINVAL;
	}
	return 0;
}

int auth_configure(struct auth *a, const struct config *cfg, GError **err)
{
	g_autoptr(GPtrArray) next = g_ptr_array_new_with_free_func(issuer_free);

	/* Everything that can fail first, so a failure changes nothing. */
	for (guint i = 0; i < cfg->issuers->len; i++) {
		const struct config_issuer *ci = g_ptr_array_index(cfg->issuers, i);
		struct issuer *is = g_new0(struct issuer, 1);
		struct jwks *keys = NULL;

		g_ptr_array_add(next, is);
		is->ci = ci;
		is->jwt = jwt_issuer_new(ci->name, ci->issuer, ci->audience);
		is->jwt->token_use = g_strdup(ci->token_use);
		if (ci->algorithms)
			jwt_algorithms_parse(ci->algorithms, &is->jwt->algorithms);
		if (ci->jwks_file) {
			if (read_jwks_file(ci, &keys, err) < 0)
				return -EINVAL;
			jwt_issuer_set_jwks(is->jwt, keys);
			jwks_unref(keys);
		}
	}

	/* URL issuers share a source per (URL, CA file); a source kept from
	 * the running configuration keeps its keys and its schedule. */
	g_autoptr(GPtrArray) old_sources = g_ptr_array_copy(a->sources, NULL, NULL);
	g_autoptr(GHashTable) timed = g_hash_table_new(NULL, NULL); /* sources given periods */
	for (guint i = 0; i < next->len; i++) {
		struct issuer *is = g_ptr_array_index(next, i);
		if (!is->ci->jwks_url)
			continue;
		is->ks = find_source(a, is->ci);
		/* Issuers sharing a source: the most frequent refresh wins. */
		bool first = g_hash_table_add(timed, is->ks);
		is->ks->refresh_s = first ? is->ci->jwks_refresh : MIN(is->ks->refresh_s, is->ci->jwks_refresh);
		is->ks->refresh_min_s = first ? is->ci->jwks_refresh_min
					      : MIN(is->ks->refresh_min_s, is->ci->jwks_refresh_min);
		jwt_issuer_set_jwks(is->jwt, is->ks->keys);
	}
	for (guint i = 0; i < next->len; i++)
		((struct issuer *)g_ptr_array_index(next, i))->ci = NULL;
	g_ptr_array_unref(a->issuers);
	a->issuers = g_steal_pointer(&next);
	g_ptr_array_set_size(a->jwt_issuers, 0);
	for (guint i = 0; i < a->issuers->len; i++)
		g_ptr_array_add(a->jwt_issuers, ((struct issuer *)g_ptr_array_index(a->issuers, i))->jwt);
	count_missing_keys(a);
	a->required = cfg->require_auth || a->issuers->len > 0;

	/* Sources no issuer names any more go; their waiters learn now. */
	for (guint i = 0; i < old_sources->len; i++) {
		struct keysource *ks = g_ptr_array_index(old_sources, i);
		bool used = false;
		for (guint j = 0; !used && j < a->issuers->len; j++)
			used = ((struct issuer *)g_ptr_array_index(a->issuers, j))->ks == ks;
		if (used)
			continue;
		g_ptr_array_remove_fast(a->sources, ks);
		notify_waiters(ks);
		stop_source(ks, true);
	}
	count_stale(a);
	return 0;
}

void auth_start_fetching(struct auth *a, uv_loop_t *loop, struct fetch_client *fc)
{
	a->loop = loop;
	a->fc = fc;
	for (guint i = 0; i < a->sources->len; i++)
		begin_source(a, g_ptr_array_index(a->sources, i));
}

void auth_stop_fetching(struct auth *a)
{
	for (guint i = 0; i < a->sources->len; i++)
		stop_source(g_ptr_array_index(a->sources, i), false);
	a->loop = NULL;
	a->fc = NULL;
}

unsigned auth_n_issuers(const struct auth *a)
{
	return a->issuers->len;
}

bool auth_required(const struct auth *a)
{
	return a->required;
}

static struct issuer *find_issuer(struct auth *a, const struct jwt_issuer *jwt, const char *name)
{
	for (guint i = 0; i < a->issuers->len; i++) {
		struct issuer *is = g_ptr_array_index(a->issuers, i);
		if (is->jwt == jwt || (name && strcmp(is->jwt->name, name) == 0))
			return is;
	}
	return NULL;
}

int auth_verify(struct auth *a, const char *token, gint64 now, struct jwt_claims *claims,
		enum jwt_error *why, const char **name)
{
	const struct jwt_issuer *matched = NULL;
	int r = jwt_verify(token, (struct jwt_issuer *const *)a->jwt_issuers->pdata,
			   a->jwt_issuers->len, now, claims, why, &matched);
	*name = matched ? matched->name : NULL;

	/* A kid we do not know may be a key the issuer just rotated in. */
	struct issuer *is = r < 0 && *why == JWT_UNKNOWN_KID && matched ? find_issuer(a, matched, NULL)
									 : NULL;
	gint64 mono = g_get_monotonic_time();
	if (is && is->ks && !is->ks->inflight &&
	    (!is->ks->kid_fetch_us ||
	     mono - is->ks->kid_fetch_us >= (gint64)is->ks->refresh_min_s * G_USEC_PER_SEC)) {
		is->ks->kid_fetch_us = mono;
		log_info("[issuer %s] a token names an unknown key: fetching %.*s again", is->jwt->name,
			 is->ks->url_log_len, is->ks->url);
		start_fetch(is->ks);
	}
	return r;
}

int auth_await_keys(struct auth *a, const char *name, auth_keys_fn fn, void *data,
		    struct auth_wait **out)
{
	struct issuer *is = name ? find_issuer(a, NULL, name) : NULL;

	if (!is || !is->ks || !is->ks->inflight)
		return -EAGAIN;
	struct auth_wait *w = g_new0(struct auth_wait, 1);
	w->ks = is->ks;
	w->fn = fn;
	w->data = data;
	w->link.data = w;
	g_queue_push_tail_link(&is->ks->waiters, &w->link);
	*out = w;
	return 0;
}

void auth_wait_cancel(struct auth_wait *w)
{
	if (!w)
		return;
	g_queue_unlink(&w->ks->waiters, &w->link);
	g_free(w);
}

char *auth_principal(const char *issuer_name, const struct jwt_claims *claims)
{
	return g_strdup_printf("jwt:%s:%s", issuer_name, claims->sub);
}

char *auth_principal_issuer(const char *principal)
{
	if (!principal || !g_str_has_prefix(principal, "jwt:"))
		return NULL;
	const char *name = principal + 4, *end = strchr(name, ':');
	return end ? g_strndup(name, (gsize)(end - name)) : NULL;
}

bool auth_keys_loaded(const struct auth *a)
{
	return atomic_load(&((struct auth *)a)->issuers_without_keys) == 0;
}

bool auth_principal_issuer_configured(const struct config *cfg, const char *principal)
{
	g_autofree char *name = auth_principal_issuer(principal);

	for (guint i = 0; name && i < cfg->issuers->len; i++)
		if (strcmp(((const struct config_issuer *)g_ptr_array_index(cfg->issuers, i))->name, name) == 0)
			return true;
	return false;
}

/* Fills in a Cognito shorthand and checks what an issuer needs. */
static int check_issuer(struct config_issuer *is, const char *where, GError **err)
{
	const char *why = NULL;
	unsigned algs;

	if (is->cognito_region || is->cognito_user_pool_id || is->cognito_app_client_id) {
		struct jwt_issuer_spec spec = { 0 };
		if (jwt_issuer_cognito(is->cognito_region, is->cognito_user_pool_id,
				       is->cognito_app_client_id, &spec, &why) < 0)
			return config_invalid(err, "%s: [issuer %s] cognito_*: %s", where, is->name, why);
#define FILL(f) if (!is->f) is->f = g_steal_pointer(&spec.f)
		FILL(issuer);
		FILL(audience);
		FILL(token_use);
		if (!is->jwks_file)
			FILL(jwks_url);
#undef FILL
		jwt_issuer_spec_clear(&spec);
	}
	if (!*is->name)
		return config_invalid(err, "%s: [issuer ] needs a name: [issuer NAME]", where);
	if (!is->issuer || !is->audience)
		return config_invalid(err, "%s: [issuer %s] needs issuer and audience (or the cognito_* keys)",
				      where, is->name);
	if (!is->jwks_url == !is->jwks_file)
		return config_invalid(err, "%s: [issuer %s] needs exactly one of jwks_url and jwks_file",
				      where, is->name);
	if (is->jwks_url && fetch_url_check(is->jwks_url, &why) < 0)
		return config_invalid(err, "%s: [issuer %s] jwks_url: %s", where, is->name, why);
	if (is->algorithms && (jwt_algorithms_parse(is->algorithms, &algs) < 0 || !algs))
		return config_invalid(err, "%s: [issuer %s] algorithms: \"%s\" is not a list of RS256, ES256",
				      where, is->name, is->algorithms);
	return 0;
}

static int check_issuers(struct config *cfg, GError **err)
{
	const char *where = cfg->path ? cfg->path : "built-in defaults";
	int r;

	for (guint i = 0; i < cfg->issuers->len; i++) {
		struct config_issuer *is = g_ptr_array_index(cfg->issuers, i);
		if ((r = check_issuer(is, where, err)) < 0)
			return r;
		for (guint j = 0; j < i; j++) {
			const struct config_issuer *o = g_ptr_array_index(cfg->issuers, j);
			if (strcmp(o->issuer, is->issuer) == 0)
				return config_invalid(err, "%s: [issuer %s] and [issuer %s] name the same issuer %s",
						      where, o->name, is->name, is->issuer);
		}
	}
	return 0;
}

int auth_load_config(const char *path, const struct config_overrides *ov, struct config **out,
		     GError **err)
{
	struct config *cfg = NULL;
	int r;

	if ((r = config_load(path, ov, &cfg, err)) < 0)
		return r;
	if ((r = check_issuers(cfg, err)) < 0) {
		config_free(cfg);
		return r;
	}
	*out = cfg;
	return 0;
}
