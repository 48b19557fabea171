#include "daemon/admin.h"

#include "daemon/dashboard.h"

#include "util/json.h"
#include "util/log.h"
#include "util/ratelimit.h"
#include "util/secret.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROLES_WAIT_MS 1000
#define API_BODY_MAX 65536
/* After accept() fails for want of descriptors, the next try comes this
 * much later: the listening socket stays readable, so trying at once
 * would spin. */
#define ACCEPT_PAUSE_MS 200
#define FD_LOG_INTERVAL_US (60 * G_USEC_PER_SEC)
/* How often the acceptor looks for requests past [admin] request_timeout. */
#define SWEEP_MS 500

struct admin {
	struct MHD_Daemon *mhd;
	struct admin_options o;
	/* The loop sets these; the admin thread reads them (pthread: seen by
	 * ThreadSanitizer). */
	pthread_mutex_t lock;
	bool has_api_token, has_metrics_token;
	uint8_t api_token[SECRET_HASH_LEN], metrics_token[SECRET_HASH_LEN];
	GQueue suspended; /* of struct admin_request, waiting for the loop */

	/* Our own accept thread (MHD's spins when accept() fails with
	 * EMFILE and no connection is open).  It checks the limits against
	 * the counts MHD's thread keeps as connections start and close. */
	int listen_fd;
	int stop_pipe[2];
	int reserve_fd; /* /dev/null, given up to accept one more when out of descriptors */
	int devnull_fd; /* /dev/null, dup2()ed over a degraded connection to take its slot back */
	GThread *acceptor;
	pthread_mutex_t count_lock;
	unsigned open;          /* connections MHD has started */
	GHashTable *per_address; /* address (string) -> count */
	GHashTable *receiving;   /* fd -> deadline (gint64 *, monotonic us) of a request coming in */
	gint64 slow_logged_us;   /* when cutting slow requests was last logged */
	unsigned slow_cut;       /* since */
	gint64 fd_logged_us;     /* when running out of descriptors was last logged */
	unsigned fd_failures;    /* since */

	/* [admin] requests_per_second: a bucket per client address, used
	 * by MHD's one thread only; buckets back to full are dropped. */
	struct ratelimit_policy rate;
	GHashTable *buckets; /* address (string) -> struct ratelimit */
};

/* One HTTP request; MHD keeps it as the connection's context. */
struct admin_request {
	struct admin *a;
	struct MHD_Connection *conn;
	GList link; /* in a->suspended */
	char *method, *path;
	char *jwt; /* a bearer for the loop to verify, or NULL: the admin token */
	GString *body;
	bool too_large, suspended;
	unsigned status; /* set with answer */
	char *answer;
	const char *allow; /* the methods a 405 answer names */
};

static void add_security_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "Content-Security-Policy", DASHBOARD_CSP);
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

/* ALLOW: the Allow header of a 405.  Every 401 asks for a bearer token. */
static enum MHD_Result reply_with(struct MHD_Connection *c, unsigned status, const char *type,
				  GString *body, const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(body->len, body->str,
								 MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	add_security_headers(r);
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     GString *body)
{
	return reply_with(c, status, type, body, NULL);
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, GString *body)
{
	return reply(c, status, "application/json", body);
}

static void append_status(GString *s, const char *status)
{
	GDateTime *now = g_date_time_new_now_utc();
	g_autofree char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
	g_date_time_unref(now);
	g_string_append_printf(s, "{\"status\":\"%s\",\"timestamp\":\"%s\",\"version\":\"%s\"",
			       status, ts, PACKAGE_VERSION);
}

/* What serves on, but degraded: [cluster] "up", or "degraded" while
 * Redis is out of reach (the instance still serves its own peers); key
 * sets that could not be refreshed. */
static void append_conditions(const struct admin *a, GString *s)
{
	if (a->o.cluster)
		g_string_append_printf(s, ",\"cluster\":\"%s\"", metrics_get(cluster_up) ? "up" : "degraded");
	/* Still ready (tokens signed with cached keys are checked), but why
	 * a new key would not be. */
	if (metrics_get(jwks_stale) > 0)
		g_string_append_printf(s, ",\"key_sets\":\"%" PRIdFAST64 " could not be refreshed: their cached "
				       "keys are in use (rtcsignald_jwks_fetches_total, journal)\"",
				       metrics_get(jwks_stale));
}

static enum MHD_Result on_health(struct admin *a, struct MHD_Connection *c)
{
	g_autoptr(GString) s = g_string_new(NULL);
	enum metrics_health h = metrics_health(g_get_monotonic_time() / 1000);
	static const char *const names[] = { "healthy", "unhealthy", "draining" };

	append_status(s, names[h]);
	append_conditions(a, s);
	g_string_append_c(s, '}');
	return reply_json(c, h == HEALTH_OK ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, s);
}

static enum MHD_Result on_ready(struct admin *a, struct MHD_Connection *c)
{
	g_autoptr(GString) s = g_string_new(NULL);
	const char *reason = NULL;

	if (metrics_get(draining))
		reason = "draining";
	else if (!metrics_get(ready))
		reason = "starting";
	else if (metrics_health(g_get_monotonic_time() / 1000) != HEALTH_OK)
		reason = "event loop stalled";
	for (unsigned i = 0; !reason && i < ADMIN_READY_CHECKS && a->o.ready[i].fn; i++)
		if (!a->o.ready[i].fn(a->o.ready[i].data, &reason) && !reason)
			reason = "backend unavailable";
	append_status(s, reason ? "not ready" : "ready");
	if (reason) {
		g_string_append(s, ",\"reason\":");
		json_append_string(s, reason, strlen(reason));
	}
	append_conditions(a, s);
	g_string_append_c(s, '}');
	return reply_json(c, reason ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, s);
}

struct roles_call {
	struct admin *a;
	struct metrics_roles roles;
};

static void roles_on_loop(void *data)
{
	struct roles_call *rc = data;
	rc->a->o.roles(rc->a->o.roles_data, &rc->roles);
}

static bool wants_json(struct MHD_Connection *c)
{
	const char *format = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
	const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);

	if (format)
		return strcmp(format, "json") == 0;
	return accept && strstr(accept, "application/json");
}

static enum MHD_Result on_metrics(struct admin *a, struct MHD_Connection *c)
{
	g_autoptr(GString) s = g_string_sized_new(16384);
	struct roles_call rc = { .a = a };
	/* Roles live in the loop's registry; without an answer (a stalled
	 * loop) the family is rendered empty rather than not at all. */
	bool have_roles = a->o.roles &&
			  loopcall_run(a->o.loopcall, roles_on_loop, &rc, ROLES_WAIT_MS) == 0;
	enum MHD_Result ret;

	if (wants_json(c)) {
		metrics_render_json(s, have_roles ? &rc.roles : NULL);
		ret = reply_json(c, MHD_HTTP_OK, s);
	} else {
		metrics_render_prometheus(s, have_roles ? &rc.roles : NULL);
		ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", s);
	}
	metrics_roles_clear(&rc.roles);
	return ret;
}

/* Constant time, whatever the length of what was sent. */
static bool bearer_ok(struct admin *a, struct MHD_Connection *c, bool api)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	uint8_t got[SECRET_HASH_LEN];
	bool ok;

	if (!h || g_ascii_strncasecmp(h, "Bearer ", 7) != 0 || secret_hash(h + 7, got) < 0)
		return false;
	pthread_mutex_lock(&a->lock);
	ok = secret_hash_equal(got, api ? a->api_token : a->metrics_token);
	pthread_mutex_unlock(&a->lock);
	return ok;
}

/* A bearer with a JWT's shape (three parts, of a size a JWT may have),
 * or NULL. */
#define BEARER_JWT_MAX 16384
static char *bearer_jwt(struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *t = h && g_ascii_strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
	const char *dot = t ? strchr(t, '.') : NULL;

	if (!dot || !strchr(dot + 1, '.') || strchr(strchr(dot + 1, '.') + 1, '.') ||
	    strlen(t) > BEARER_JWT_MAX)
		return NULL;
	return g_strdup(t);
}

static enum MHD_Result unauthorized(struct MHD_Connection *c)
{
	g_autoptr(GString) s = g_string_new("{\"error\":\"unauthorized\"}");
	return reply_json(c, MHD_HTTP_UNAUTHORIZED, s);
}

static bool metrics_open(struct admin *a)
{
	pthread_mutex_lock(&a->lock);
	bool open = !a->has_metrics_token;
	pthread_mutex_unlock(&a->lock);
	return open;
}

static enum MHD_Result on_metrics_guarded(struct admin *a, struct MHD_Connection *c)
{
	if (!metrics_open(a) && !bearer_ok(a, c, false))
		return unauthorized(c);
	return on_metrics(a, c);
}

static void api_on_loop(void *data)
{
	struct admin_request *req = data;
	req->a->o.api(req->a->o.api_data, req);
}

/* /api/...: authorized, body complete; the loop answers. */
static enum MHD_Result api(struct admin *a, struct admin_request *req)
{
	g_autoptr(GString) s = g_string_new(NULL);
	bool enabled;

	if (req->answer) { /* resumed: the loop has answered */
		g_string_assign(s, req->answer);
		return reply_with(req->conn, req->status, "application/json", s, req->allow);
	}
	pthread_mutex_lock(&a->lock);
	enabled = a->has_api_token;
	pthread_mutex_unlock(&a->lock);
	/* A JWT goes to the loop, where the issuers' keys are, whether the
	 * admin token is configured or not ([admin] jwt_group). */
	req->jwt = bearer_jwt(req->conn);
	if (!req->jwt && !enabled) {
		g_string_assign(s, "{\"error\":\"admin API disabled: no [admin] token configured\"}");
		return reply_json(req->conn, MHD_HTTP_FORBIDDEN, s);
	}
	if (enabled && bearer_ok(a, req->conn, true))
		g_clear_pointer(&req->jwt, g_free);
	else if (!req->jwt)
		return unauthorized(req->conn);
	if (req->too_large) {
		g_string_assign(s, "{\"error\":\"body too large\"}");
		return reply_json(req->conn, MHD_HTTP_CONTENT_TOO_LARGE, s);
	}
	pthread_mutex_lock(&a->lock);
	MHD_suspend_connection(req->conn);
	req->suspended = true;
	g_queue_push_tail_link(&a->suspended, &req->link);
	pthread_mutex_unlock(&a->lock);
	if (loopcall_post(a->o.loopcall, api_on_loop, req) < 0)
		admin_request_answer(req, MHD_HTTP_SERVICE_UNAVAILABLE,
				     g_strdup("{\"error\":\"shutting down\"}"));
	return MHD_YES;
}

/* Called with a->lock held.  Only the first answer counts: at shutdown
 * the loop thread and the admin thread may both answer one request. */
static void answer_locked(struct admin *a, struct admin_request *req, unsigned status, char *json)
{
	if (!req->suspended) {
		g_free(json);
		return;
	}
	req->status = status;
	req->answer = json;
	req->suspended = false;
	g_queue_unlink(&a->suspended, &req->link);
	MHD_resume_connection(req->conn);
}

void admin_request_answer(struct admin_request *req, unsigned status, char *json)
{
	struct admin *a = req->a;

	pthread_mutex_lock(&a->lock);
	answer_locked(a, req, status, json);
	pthread_mutex_unlock(&a->lock);
}

void admin_request_set_allow(struct admin_request *r, const char *allow)
{
	pthread_mutex_lock(&r->a->lock); /* read by the admin thread, as the answer */
	r->allow = allow;
	pthread_mutex_unlock(&r->a->lock);
}

const char *admin_request_method(const struct admin_request *r)
{
	return r->method;
}

const char *admin_request_path(const struct admin_request *r)
{
	return r->path + strlen("/api/");
}

const char *admin_request_jwt(const struct admin_request *r)
{
	return r->jwt;
}

const char *admin_request_body(const struct admin_request *r, size_t *len)
{
	*len = r->body->len;
	return r->body->str;
}

/* --- a deadline for receiving each request ---
 *
 * MHD's connection_timeout counts idleness, so a client sending a byte
 * every few seconds keeps a connection for as long as it likes.  Each
 * request must instead be in within request_timeout of the connection's
 * start or of the previous answer; the acceptor shuts down the socket of
 * one that is not, and MHD then closes it.  Entries live from MHD's
 * STARTED to its CLOSED notification, while the descriptor is MHD's
 * and open, so a shutdown() never hits a reused descriptor. */

static int connection_fd(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

/* DEADLINE 0: the request is in, the clock stops. */
static void set_deadline(struct admin *a, struct MHD_Connection *c, gint64 deadline)
{
	int fd = connection_fd(c);
	gint64 *d;

	pthread_mutex_lock(&a->count_lock);
	if ((d = g_hash_table_lookup(a->receiving, GINT_TO_POINTER(fd))))
		*d = deadline;
	pthread_mutex_unlock(&a->count_lock);
}

static gint64 next_deadline(struct admin *a)
{
	return g_get_monotonic_time() + (gint64)a->o.request_timeout * G_USEC_PER_SEC;
}

/* The acceptor: cut what is past its deadline. */
static void sweep(struct admin *a)
{
	gint64 now = g_get_monotonic_time();
	GHashTableIter it;
	gpointer k, v;
	unsigned cut = 0;

	pthread_mutex_lock(&a->count_lock);
	g_hash_table_iter_init(&it, a->receiving);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		gint64 *d = v;
		if (*d && *d <= now) {
			shutdown(GPOINTER_TO_INT(k), SHUT_RDWR);
			*d = 0;
			cut++;
		}
	}
	pthread_mutex_unlock(&a->count_lock);
	if (!cut)
		return;
	metrics_add(admin_refused[ADMIN_REFUSED_SLOW_REQUEST], cut);
	a->slow_cut += cut;
	if (!a->slow_logged_us || now - a->slow_logged_us >= FD_LOG_INTERVAL_US) {
		log_notice("admin: closed %u connections that did not send a whole request within %u s "
			   "([admin] request_timeout)", a->slow_cut, a->o.request_timeout);
		a->slow_logged_us = now;
		a->slow_cut = 0;
	}
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct admin *a = cls;
	struct admin_request *req = *con_cls;

	(void)toe;
	/* Answered: the next request on this connection has its own time. */
	set_deadline(a, c, next_deadline(a));
	if (!req)
		return;
	g_free(req->method);
	g_free(req->path);
	g_free(req->jwt);
	g_string_free(req->body, TRUE);
	g_free(req->answer);
	g_free(req);
	*con_cls = NULL;
}

static const struct {
	const char *path;
	enum MHD_Result (*fn)(struct admin *a, struct MHD_Connection *c);
} routes[] = {
	{ "/health", on_health },
	{ "/ready", on_ready },
	{ "/metrics", on_metrics_guarded },
};

struct framing {
	const char *length; /* the first Content-Length */
	bool conflict, transfer_encoding;
};

static enum MHD_Result scan_framing(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	struct framing *f = cls;

	(void)kind;
	if (g_ascii_strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		f->transfer_encoding = true;
	} else if (g_ascii_strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		/* Digits only: "2, 40" is two lengths in one field. */
		if (!value || !*value || value[strspn(value, "0123456789")] != '\0' ||
		    (f->length && strcmp(f->length, value) != 0))
			f->conflict = true;
		f->length = value;
	}
	return MHD_YES;
}

/* A body whose end two readers could place differently is refused, so
 * no proxy in front can be made to see one request where we see two
 * (RFC 9112 6.3): differing Content-Lengths, or Transfer-Encoding with a
 * Content-Length. */
static bool ambiguous_framing(struct MHD_Connection *c)
{
	struct framing f = { 0 };

	MHD_get_connection_values(c, MHD_HEADER_KIND, scan_framing, &f);
	return f.conflict || (f.transfer_encoding && f.length);
}

/* The page is not cached (a new version starts there); its script and
 * style may be, briefly. */
static enum MHD_Result on_asset(struct MHD_Connection *c, const struct dashboard_asset *asset,
				const char *type, bool page)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(asset->len, (void *)asset->data,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, page ? "no-store" : "max-age=300");
	add_security_headers(r);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ADDR without the port, as a table key (plain strings, each owned by
 * the table alone: nothing refcounted is shared between threads). */
#define ADDRESS_KEY_SIZE INET6_ADDRSTRLEN

static void address_key(const struct sockaddr *sa, char key[ADDRESS_KEY_SIZE])
{
	strcpy(key, "local"); /* a unix socket: one local client */
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, key, ADDRESS_KEY_SIZE);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, key, ADDRESS_KEY_SIZE);
}

/* Buckets kept before idle ones are dropped. */
#define RATE_BUCKETS_SWEEP 1024

/* The page and the API, per client address: true when C may go on. */
static bool rate_ok(struct admin *a, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	gint64 now = g_get_monotonic_time();
	char key[ADDRESS_KEY_SIZE];
	struct ratelimit *b;

	if (!a->buckets)
		return true;
	address_key(ci ? ci->client_addr : NULL, key);
	if (!(b = g_hash_table_lookup(a->buckets, key))) {
		if (g_hash_table_size(a->buckets) >= RATE_BUCKETS_SWEEP) {
			GHashTableIter it;
			gpointer v;
			g_hash_table_iter_init(&it, a->buckets);
			while (g_hash_table_iter_next(&it, NULL, &v))
				if (ratelimit_is_idle(v, &a->rate, now))
					g_hash_table_iter_remove(&it);
		}
		b = g_new(struct ratelimit, 1);
		ratelimit_init(b, &a->rate, now);
		g_hash_table_insert(a->buckets, g_strdup(key), b);
	}
	if (ratelimit_take(b, &a->rate, now) == RATELIMIT_ALLOW)
		return true;
	metrics_inc(admin_refused[ADMIN_REFUSED_RATE_LIMITED]);
	return false;
}

static enum MHD_Result too_many(struct MHD_Connection *c)
{
	static const char body[] = "{\"error\":\"too many requests from this address: [admin] "
				   "requests_per_second\"}";
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	add_security_headers(r);
	ret = MHD_queue_response(c, MHD_HTTP_TOO_MANY_REQUESTS, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;
	g_autoptr(GString) s = g_string_new(NULL);

	(void)version;
	/* In whole: a route's only call, or /api/'s last (body complete). */
	if (!*upload_data_size && (*con_cls || !g_str_has_prefix(url, "/api/")))
		set_deadline(a, c, 0);
	/* Every request's first call (for /api/ the only one without a
	 * context; the other routes answer in their first call). */
	if (!*con_cls && ambiguous_framing(c)) {
		metrics_inc(admin_refused[ADMIN_REFUSED_FRAMING]);
		g_string_assign(s, "{\"error\":\"ambiguous message framing: conflicting Content-Length "
				   "or Transfer-Encoding headers\"}");
		return reply_json(c, MHD_HTTP_BAD_REQUEST, s);
	}
	const char *type = NULL;
	bool page = false;
	const struct dashboard_asset *asset = dashboard_find(url, &type, &page);
	/* The page and the API, once per request (its first call); not the
	 * probes and scrapes, which must keep working under a flood. */
	if (!*con_cls && !*upload_data_size && (asset || g_str_has_prefix(url, "/api/")) &&
	    !rate_ok(a, c))
		return too_many(c);
	if (asset) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
			if (*upload_data_size) {
				*upload_data_size = 0;
				return MHD_YES;
			}
			g_string_assign(s, "{\"error\":\"method not allowed\"}");
			return reply_with(c, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json", s, "GET, HEAD");
		}
		return on_asset(c, asset, type, page);
	}
	if (g_str_has_prefix(url, "/api/")) {
		struct admin_request *req = *con_cls;
		if (!req) { /* the first call: headers only */
			req = g_new0(struct admin_request, 1);
			req->a = a;
			req->conn = c;
			req->link.data = req;
			req->method = g_strdup(method);
			req->path = g_strdup(url);
			req->body = g_string_new(NULL);
			*con_cls = req;
			return MHD_YES;
		}
		if (*upload_data_size) {
			if (req->body->len + *upload_data_size > API_BODY_MAX)
				req->too_large = true;
			else
				g_string_append_len(req->body, upload_data, (gssize)*upload_data_size);
			*upload_data_size = 0;
			return MHD_YES;
		}
		return api(a, req);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(routes); i++) {
		if (strcmp(url, routes[i].path) != 0)
			continue;
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
			if (*upload_data_size) { /* ignore a body; answer once it is in */
				*upload_data_size = 0;
				return MHD_YES;
			}
			g_string_assign(s, "{\"error\":\"method not allowed\"}");
			return reply_with(c, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json", s,
					  "GET, HEAD");
		}
		return routes[i].fn(a, c);
	}
	g_string_assign(s, "{\"error\":\"not found\"}");
	return reply_json(c, MHD_HTTP_NOT_FOUND, s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof line, fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_warning("admin: %s", line);
}

static void count_locked(struct admin *a, const char *key, int delta)
{
	unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(a->per_address, key));

	a->open += (unsigned)delta;
	if (delta > 0 || n > 1)
		g_hash_table_replace(a->per_address, g_strdup(key), GUINT_TO_POINTER(n + (unsigned)delta));
	else
		g_hash_table_remove(a->per_address, key);
}

/* MHD's thread: a connection the acceptor counted has closed. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct admin *a = cls;

	(void)socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		gint64 *d = g_new(gint64, 1);
		*d = next_deadline(a);
		pthread_mutex_lock(&a->count_lock);
		g_hash_table_replace(a->receiving, GINT_TO_POINTER(connection_fd(c)), d);
		pthread_mutex_unlock(&a->count_lock);
		return;
	}
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char key[ADDRESS_KEY_SIZE];
	address_key(ci ? ci->client_addr : NULL, key);
	pthread_mutex_lock(&a->count_lock);
	g_hash_table_remove(a->receiving, GINT_TO_POINTER(connection_fd(c)));
	count_locked(a, key, -1);
	pthread_mutex_unlock(&a->count_lock);
}

/* Within the limits: one address may hold connections_per_address of
 * max_connections, so one client (a slowloris sending a byte now and
 * then) cannot take the port from the health checks.  Counted here, as
 * the connection is admitted, so a burst cannot slip past; uncounted when
 * MHD reports it closed (or refuses it at once).  MHD's own limit is the
 * same number and so never reached first: its count trails ours. */
static bool admit_connection(struct admin *a, const char *key)
{
	enum metrics_admin_refusal why = ADMIN_REFUSED__COUNT;

	pthread_mutex_lock(&a->count_lock);
	if (a->open >= a->o.max_connections)
		why = ADMIN_REFUSED_LIMIT;
	else if (GPOINTER_TO_UINT(g_hash_table_lookup(a->per_address, key)) >= a->o.connections_per_address)
		why = ADMIN_REFUSED_PER_ADDRESS;
	else
		count_locked(a, key, 1);
	pthread_mutex_unlock(&a->count_lock);
	if (why == ADMIN_REFUSED__COUNT)
		return true;
	metrics_inc(admin_refused[why]);
	return false;
}

/* Only the acceptor thread touches reserve_fd. */
static void reserve(struct admin *a)
{
	if (a->reserve_fd < 0)
		a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

#define DEGRADED_READ_MS 500

/* Out of descriptors, a connection accepted with the reserve is answered
 * here, not by MHD: /health as usual, anything else 503.  MHD would close
 * the socket and free its slot for whoever asks first (the WebSocket side
 * is asking all the time); dup2() of /dev/null over it closes the socket
 * and keeps the slot as the next reserve.  The request gets
 * DEGRADED_READ_MS to arrive. */
static void serve_degraded(struct admin *a, int fd)
{
	g_autoptr(GString) body = g_string_new(NULL), out = g_string_new(NULL);
	gint64 deadline = g_get_monotonic_time() + DEGRADED_READ_MS * 1000;
	char buf[1024];
	size_t len = 0;
	unsigned status = MHD_HTTP_SERVICE_UNAVAILABLE;
	static const char *const names[] = { "healthy", "unhealthy", "draining" };

	while (len < sizeof buf - 1 && !g_strstr_len(buf, (gssize)len, "\r\n\r\n")) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)((deadline - g_get_monotonic_time()) / 1000);
		ssize_t n;
		if (left <= 0 || poll(&p, 1, left) <= 0 || (n = read(fd, buf + len, sizeof buf - 1 - len)) <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	bool head = g_str_has_prefix(buf, "HEAD /health ");
	if (head || g_str_has_prefix(buf, "GET /health ")) {
		enum metrics_health h = metrics_health(g_get_monotonic_time() / 1000);
		append_status(body, names[h]);
		g_string_append_c(body, '}');
		status = h == HEALTH_OK ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	} else {
		g_string_assign(body, "{\"error\":\"out of file descriptors: only /health is served\"}");
	}
	g_string_printf(out, "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
			"Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
			status == MHD_HTTP_OK ? "OK" : "Service Unavailable", body->len, head ? "" : body->str);
	/* A few hundred bytes into an empty socket buffer: one send. */
	if (send(fd, out->str, out->len, MSG_NOSIGNAL) < 0)
		log_debug("admin: degraded answer: %s", g_strerror(errno));
	if (a->devnull_fd >= 0 && dup2(a->devnull_fd, fd) >= 0)
		a->reserve_fd = fd;
	else
		close(fd);
}

/* accept(); when the process is out of descriptors, once more with the
 * one held in reserve, and that connection is served degraded.  *SERVED:
 * so it was. */
static int accept_one(struct admin *a, struct sockaddr_storage *ss, socklen_t *len, bool *served)
{
	int fd;

	*served = false;
	*len = sizeof *ss;
	fd = accept4(a->listen_fd, (struct sockaddr *)ss, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE) && a->reserve_fd >= 0) {
		int err = errno;
		close(a->reserve_fd);
		a->reserve_fd = -1;
		*len = sizeof *ss;
		fd = accept4(a->listen_fd, (struct sockaddr *)ss, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			serve_degraded(a, fd);
			*served = true;
			errno = err; /* counted and logged as out of descriptors */
			return -1;
		}
	}
	return fd;
}

/* One connection from the listening socket to MHD; false when accept()
 * should pause. */
static bool accept_and_add(struct admin *a)
{
	struct sockaddr_storage ss;
	socklen_t len;
	bool served;
	int fd = accept_one(a, &ss, &len, &served), one = 1;

	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return true;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			gint64 now = g_get_monotonic_time();
			metrics_inc(admin_refused[ADMIN_REFUSED_DESCRIPTORS]);
			a->fd_failures++;
			/* Coalesced: under pressure this fails at every try. */
			if (!a->fd_logged_us || now - a->fd_logged_us >= FD_LOG_INTERVAL_US) {
				log_warning("admin: accept failed: %s (%u times); /health is answered from a "
					    "reserved descriptor, the rest gets 503 (is the open file limit below "
					    "max_sessions?)", g_strerror(errno), a->fd_failures);
				a->fd_logged_us = now;
				a->fd_failures = 0;
			}
			return served; /* the reserve is back: the next may come at once */
		}
		log_warning("admin: accept failed: %s", g_strerror(errno));
		return false;
	}
	reserve(a); /* for the next time */
	char key[ADDRESS_KEY_SIZE];
	address_key((const struct sockaddr *)&ss, key);
	if (!admit_connection(a, key)) {
		close(fd);
		return true;
	}
	if (ss.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* On failure MHD has closed the socket and logged why. */
	if (MHD_add_connection(a->mhd, fd, (const struct sockaddr *)&ss, len) != MHD_YES) {
		pthread_mutex_lock(&a->count_lock);
		count_locked(a, key, -1);
		pthread_mutex_unlock(&a->count_lock);
	}
	return true;
}

static gpointer acceptor_main(gpointer data)
{
	struct admin *a = data;
	bool paused = false;
	gint64 next_sweep = 0;

	for (;;) {
		struct pollfd p[2] = { { .fd = a->stop_pipe[0], .events = POLLIN },
				       { .fd = a->listen_fd, .events = POLLIN } };
		/* Paused: not the listening socket, for ACCEPT_PAUSE_MS; then try. */
		int n = poll(p, paused ? 1 : 2, paused ? ACCEPT_PAUSE_MS : SWEEP_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || p[0].revents)
			break;
		if (g_get_monotonic_time() >= next_sweep) {
			sweep(a);
			next_sweep = g_get_monotonic_time() + SWEEP_MS * 1000;
		}
		if ((paused && n == 0) || (!paused && p[1].revents))
			paused = !accept_and_add(a);
	}
	return NULL;
}

static void admin_free(struct admin *a)
{
	if (a->reserve_fd >= 0)
		close(a->reserve_fd);
	if (a->devnull_fd >= 0)
		close(a->devnull_fd);
	for (int i = 0; i < 2; i++)
		if (a->stop_pipe[i] >= 0)
			close(a->stop_pipe[i]);
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	g_hash_table_unref(a->per_address);
	g_hash_table_unref(a->receiving);
	if (a->buckets)
		g_hash_table_unref(a->buckets);
	pthread_mutex_destroy(&a->count_lock);
	pthread_mutex_destroy(&a->lock);
	g_free(a);
}

int admin_start(const struct admin_options *o, struct admin **out)
{
	struct admin *a = g_new0(struct admin, 1);

	a->o = *o;
	a->listen_fd = o->listen_fd;
	a->reserve_fd = a->devnull_fd = -1;
	a->stop_pipe[0] = a->stop_pipe[1] = -1;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->count_lock, NULL);
	a->per_address = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	a->receiving = g_hash_table_new_full(NULL, NULL, NULL, g_free);
	if (o->requests_per_second &&
	    ratelimit_policy_per_second(&a->rate, o->requests_per_second, 2 * o->requests_per_second) == 0)
		a->buckets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_queue_init(&a->suspended);
	fcntl(a->listen_fd, F_SETFL, fcntl(a->listen_fd, F_GETFL) | O_NONBLOCK);
	if (pipe2(a->stop_pipe, O_CLOEXEC) < 0)
		goto fail;
	a->devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	reserve(a);
	/* epoll, never select(): select fails past descriptor 1024, and the
	 * WebSocket side holds tens of thousands.  MHD gets the connections
	 * from our acceptor (MHD_add_connection, which wants MHD_USE_ITC to
	 * wake its thread), so MHD never touches the listening socket, which
	 * under socket activation is systemd's. */
	a->mhd = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
					  MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET,
				  0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				  MHD_OPTION_NOTIFY_COMPLETED, request_done, a,
				  MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
				  MHD_OPTION_CONNECTION_LIMIT, o->max_connections,
				  MHD_OPTION_CONNECTION_TIMEOUT, o->connection_timeout, MHD_OPTION_END);
	if (!a->mhd)
		goto fail;
	a->acceptor = g_thread_try_new("admin-accept", acceptor_main, a, NULL);
	if (!a->acceptor) {
		MHD_stop_daemon(a->mhd);
		goto fail;
	}
	*out = a;
	return 0;
fail:
	a->listen_fd = -1; /* the caller closes it */
	admin_free(a);
	return -EIO;
}

static void set_token(const char *token, bool *has, uint8_t hash[SECRET_HASH_LEN])
{
	*has = token && *token && secret_hash(token, hash) == 0;
	if (!*has)
		memset(hash, 0, SECRET_HASH_LEN);
}

void admin_set_tokens(struct admin *a, const char *api_token, const char *metrics_token)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	set_token(api_token, &a->has_api_token, a->api_token);
	set_token(metrics_token, &a->has_metrics_token, a->metrics_token);
	pthread_mutex_unlock(&a->lock);
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	/* No new connections, then nothing left waiting for the loop (which
	 * has ended: nothing will answer what still waits for it). */
	if (write(a->stop_pipe[1], "", 1) < 0)
		log_warning("admin: cannot stop the acceptor: %s", g_strerror(errno));
	g_thread_join(a->acceptor);
	pthread_mutex_lock(&a->lock);
	while (!g_queue_is_empty(&a->suspended))
		answer_locked(a, g_queue_peek_head(&a->suspended), MHD_HTTP_SERVICE_UNAVAILABLE,
			      g_strdup("{\"error\":\"shutting down\"}"));
	pthread_mutex_unlock(&a->lock);
	MHD_stop_daemon(a->mhd);
	admin_free(a); /* closes the listening socket too */
}
