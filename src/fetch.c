#include "fetch.h"

#include "log.h"
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define PROTOCOL_NAME "rtcsignal-fetch"
#define MAX_URL 2048
#define READ_CHUNK 4096
/* "host:port/path", for logs */
#define TARGET_FMT "%s%.*s"
#define TARGET(f) (f)->host_header, (f)->path_log_len, (f)->path
#define HOST_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"

/* One per CA bundle.  Owned by its vhost from creation on: lws keeps a
 * pointer to the name until the (deferred) free, which calls finalize. */
struct client_vhost {
	char *name;
	unsigned n_certs; /* trust anchors lws loaded, counted at creation */
	struct lws_vhost *vh;
};

struct fetch_client {
	struct lws_context *ctx;
	uv_loop_t *loop;
	GHashTable *vhosts; /* CA file path -> struct client_vhost */
	GQueue active;      /* of struct fetch */
	unsigned n_created;
};

struct fetch {
	struct fetch_client *fc;
	GList link; /* in fc->active */
	fetch_done_fn done;
	void *data;
	struct lws_vhost *vh;
	struct lws *wsi;
	uv_getaddrinfo_t *gai; /* while resolving; its data is NULL once dropped */
	lws_sorted_usec_list_t timer;
	char *host;        /* as in the URL, without brackets */
	char *host_header; /* host[:port], also what the certificate must name */
	char *path;        /* with the query */
	int path_log_len;  /* without it: no query in logs */
	int port;
	bool tls;
	char addr[INET6_ADDRSTRLEN];
	size_t max_body;
	unsigned timeout_ms;
	GByteArray *body;
	gint64 content_length; /* -1: not announced */
	bool chunked;
	unsigned http_status;
	gint64 started;
	/* Inside lws_client_connect_via_info, which may report a failure
	 * before it returns: the outcome is kept for after. */
	bool connecting;
	int deferred_status;
	char why[256];
};

static void fetch_free(struct fetch *f)
{
	g_free(f->host);
	g_free(f->host_header);
	g_free(f->path);
	if (f->body)
		g_byte_array_unref(f->body);
	g_free(f);
}

/* Lets go of the connection or the lookup.  KILL: the wsi is not the one
 * whose callback we are in, so lws must be told to close it. */
static void detach(struct fetch *f, bool kill)
{
	lws_sul_cancel(&f->timer);
	if (f->wsi) {
		lws_set_opaque_user_data(f->wsi, NULL);
		if (kill)
			lws_set_timeout(f->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		f->wsi = NULL;
	}
	if (f->gai) {
		f->gai->data = NULL;
		uv_cancel((uv_req_t *)f->gai); /* too late once it runs: on_resolved frees it */
		f->gai = NULL;
	}
	g_queue_unlink(&f->fc->active, &f->link);
}

static void finish(struct fetch *f, int status, bool kill, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Reports the outcome and frees F. */
static void finish(struct fetch *f, int status, bool kill, const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		g_vsnprintf(f->why, sizeof f->why, fmt, ap);
		va_end(ap);
	}
	if (f->connecting) {
		f->deferred_status = status;
		if (f->wsi)
			lws_set_opaque_user_data(f->wsi, NULL);
		f->wsi = NULL;
		return;
	}
	detach(f, kill);
	gint64 ms = (g_get_monotonic_time() - f->started) / 1000;
	if (status == 0) {
		log_debug("fetch " TARGET_FMT ": %u bytes in %" G_GINT64_FORMAT " ms", TARGET(f),
			  f->body->len, ms);
		f->done(0, f->http_status, (const char *)f->body->data, f->body->len, NULL, f->data);
	} else {
		log_notice("fetch " TARGET_FMT " failed after %" G_GINT64_FORMAT " ms: %s", TARGET(f),
			   ms, f->why);
		f->done(status, f->http_status, NULL, 0, f->why, f->data);
	}
	fetch_free(f);
}

static void on_timeout(lws_sorted_usec_list_t *sul)
{
	struct fetch *f = lws_container_of(sul, struct fetch, timer);
	finish(f, -ETIMEDOUT, true, "no complete response within %u ms", f->timeout_ms);
}

/* The reason, told better than lws 4.1.6 does: it says "server's cert
 * didn't look good, X509_V_ERR = 62: ..." for a certificate and "closed
 * before established" for a refused connection. */
static void connection_error(struct fetch *f, struct lws *wsi, const char *in, size_t len)
{
	SSL *ssl = f->tls ? lws_get_ssl(wsi) : NULL;
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	int fd = lws_get_socket_fd(wsi), err = 0;
	socklen_t err_len = sizeof err;
	int n = in ? (int)strnlen(in, len) : 0;

	while (n && (in[n - 1] == '\n' || in[n - 1] == '\r'))
		n--;
	if (fd >= 0)
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
	if (err)
		finish(f, -err, false, "cannot connect to %s port %d: %s", f->addr, f->port,
		       g_strerror(err));
	else if (in && (strcasestr(in, "timed out") || strcasestr(in, "timeout")))
		/* lws's own limit per step, the context's timeout_secs */
		finish(f, -ETIMEDOUT, false, "timed out: %.*s", n, in);
	else if (v != X509_V_OK)
		finish(f, -EPROTO, false, "TLS: certificate verification failed: %s",
		       X509_verify_cert_error_string(v));
	else if (ssl && !SSL_is_init_finished(ssl))
		finish(f, -EPROTO, false, "TLS handshake failed: %.*s", n, in ? in : "");
	else
		finish(f, -EIO, false, "connection failed: %.*s", n, in ? in : "unknown error");
}

static int on_established(struct fetch *f, struct lws *wsi)
{
	char v[64];

	f->http_status = lws_http_client_http_response(wsi);
	if (f->http_status >= 300 && f->http_status < 400) {
		char where[128] = "";
		lws_hdr_copy(wsi, where, sizeof where, WSI_TOKEN_HTTP_LOCATION);
		finish(f, -EREMOTEIO, false, "HTTP %u redirect to %s not followed", f->http_status,
		       where);
		return -1;
	}
	if (f->http_status != 200) {
		finish(f, -EREMOTEIO, false, "HTTP status %u", f->http_status);
		return -1;
	}
	if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
		char *end;
		errno = 0;
		guint64 n = g_ascii_strtoull(v, &end, 10);
		if (errno || end == v || *end) {
			finish(f, -EPROTO, false, "bad Content-Length");
			return -1;
		}
		if (n > f->max_body) {
			finish(f, -EFBIG, false, "body of %" G_GUINT64_FORMAT " bytes is over the limit of %zu",
			       n, f->max_body);
			return -1;
		}
		f->content_length = (gint64)n;
		g_byte_array_set_size(f->body, (guint)n);
		g_byte_array_set_size(f->body, 0);
	}
	f->chunked = lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
	return 0;
}

static int on_body(struct fetch *f, const void *in, size_t len)
{
	if (len > f->max_body - f->body->len) {
		finish(f, -EFBIG, false, "body is over the limit of %zu bytes", f->max_body);
		return -1;
	}
	g_byte_array_append(f->body, in, (guint)len);
	return 0;
}

/* A close before COMPLETED: the end of a body sent without length or
 * chunking (HTTP/1.0 style; a cut one fails as JSON), or a failure. */
static void on_closed(struct fetch *f)
{
	if (f->http_status == 200 && f->content_length < 0 && !f->chunked)
		finish(f, 0, false, NULL);
	else if (f->http_status)
		finish(f, -ECONNRESET, false, "connection closed after %u of %" G_GINT64_FORMAT " bytes",
		       f->body->len, f->content_length);
	else
		finish(f, -ECONNRESET, false, "connection closed before a response");
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	struct fetch *f = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS: {
		/* lws logs an unreadable CA file and goes on with an empty
		 * store: count what it loaded, so we can refuse instead. */
		struct client_vhost *cv = lws_vhost_user(lws_get_vhost(wsi));
		X509_STORE *store = SSL_CTX_get_cert_store(user);
		if (cv && store)
			cv->n_certs = (unsigned)sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
		return 0;
	}
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
		unsigned char **p = in, *end = *p + len;
		static const char ua[] = PACKAGE_NAME "/" PACKAGE_VERSION;
		static const char accept[] = "application/json";
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_USER_AGENT, (const unsigned char *)ua,
						 sizeof ua - 1, p, end) ||
		    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_ACCEPT,
						 (const unsigned char *)accept, sizeof accept - 1, p, end))
			return -1;
		return 0;
	}
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (f)
			connection_error(f, wsi, in, len);
		return 0;
	case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
		return f ? on_established(f, wsi) : -1;
	case LWS_CALLBACK_CLIENT_HTTP_REDIRECT:
		/* Not reached with LCCSCF_HTTP_NO_FOLLOW_REDIRECT; a belt. */
		if (f)
			finish(f, -EREMOTEIO, false, "redirect not followed");
		return 1;
	case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
		char buf[LWS_PRE + READ_CHUNK], *p = buf + LWS_PRE;
		int n = READ_CHUNK;
		if (!f)
			return -1;
		/* Calls back RECEIVE_CLIENT_HTTP_READ and maybe COMPLETED: F
		 * may be gone after it. */
		return lws_http_client_read(wsi, &p, &n) < 0 ? -1 : 0;
	}
	case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
		return f ? on_body(f, in, len) : -1;
	case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
		if (f)
			finish(f, 0, false, NULL);
		return -1; /* one request per connection */
	case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
		if (f)
			on_closed(f);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
	{ .name = PROTOCOL_NAME, .callback = callback },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void on_vhost_freed(struct lws_vhost *vh, void *arg)
{
	struct client_vhost *cv = arg;
	g_free(cv->name);
	g_free(cv);
}

static const char *system_ca_file(void)
{
	const char *env = getenv(X509_get_default_cert_file_env());
	return env && *env ? env : X509_get_default_cert_file();
}

/* The client vhost trusting exactly CA_FILE, or with CA_FILE NULL the one
 * without TLS: a client connection must name a vhost that has our
 * protocol, else lws binds it to the first protocol of the context's
 * first vhost (ws.c's).  OS CAs are turned off: with no CA file lws 4.1.6
 * would also trust a "../share" directory relative to the working
 * directory (LWS_OPENSSL_CLIENT_CERTS). */
static int client_vhost(struct fetch_client *fc, const char *ca_file, struct lws_vhost **out)
{
	const char *key = ca_file ? ca_file : "";
	struct client_vhost *cv = g_hash_table_lookup(fc->vhosts, key);
	struct lws_context_creation_info info;

	if (!cv) {
		cv = g_new0(struct client_vhost, 1);
		cv->name = g_strdup_printf("fetch-%u", fc->n_created++);
		memset(&info, 0, sizeof info);
		info.port = CONTEXT_PORT_NO_LISTEN;
		info.protocols = protocols;
		if (ca_file)
			info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
				       LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
		info.vhost_name = cv->name;
		info.client_ssl_ca_filepath = ca_file;
		info.alpn = "http/1.1";
		/* Not $http_proxy, which lws 4.1.6 would read here: we connect
		 * to the address we resolved.  Port 0 means no proxy. */
		info.http_proxy_address = ":0";
		info.user = cv;
		info.finalize = on_vhost_freed;
		info.finalize_arg = cv;
		cv->vh = lws_create_vhost(fc->ctx, &info);
		if (!cv->vh) {
			log_warning("fetch: cannot create a client vhost for %s", ca_file ? ca_file : "http");
			on_vhost_freed(NULL, cv);
			return -EIO;
		}
		g_hash_table_insert(fc->vhosts, g_strdup(key), cv);
		if (ca_file)
			log_debug("fetch: vhost %s trusts %u certificates from %s", cv->name, cv->n_certs,
				  ca_file);
	}
	if (ca_file && !cv->n_certs) {
		/* Dropped, so that the next try reads the file again. */
		log_warning("fetch: no CA certificate could be loaded from %s", ca_file);
		g_hash_table_remove(fc->vhosts, key);
		lws_vhost_destroy(cv->vh);
		return -EIO;
	}
	*out = cv->vh;
	return 0;
}

int fetch_client_new(uv_loop_t *loop, struct lws_context *ctx, struct fetch_client **out)
{
	struct fetch_client *fc = g_new0(struct fetch_client, 1);
	fc->ctx = ctx;
	fc->loop = loop;
	fc->vhosts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_queue_init(&fc->active);
	*out = fc;
	return 0;
}

void fetch_client_free(struct fetch_client *fc)
{
	GHashTableIter it;
	struct client_vhost *cv;

	if (!fc)
		return;
	while (fc->active.head)
		fetch_cancel(fc->active.head->data);
	g_hash_table_iter_init(&it, fc->vhosts);
	while (g_hash_table_iter_next(&it, NULL, (void **)&cv))
		lws_vhost_destroy(cv->vh);
	g_hash_table_unref(fc->vhosts);
	g_free(fc);
}

struct target {
	bool tls;
	char *host, *host_header, *path;
	int port;
};

static void target_clear(struct target *t)
{
	g_free(t->host);
	g_free(t->host_header);
	g_free(t->path);
}

static bool is_literal(const char *host)
{
	struct netaddr a;
	return netaddr_parse(host, strlen(host), &a) == 0;
}

static bool is_loopback_literal(const char *host)
{
	struct netaddr a;
	return netaddr_parse(host, strlen(host), &a) == 0 && netaddr_is_loopback_addr(&a);
}

static int parse_url(const char *url, struct target *t, const char **why)
{
	g_autoptr(GUri) u = NULL;
	const char *scheme, *host, *path, *query;

	memset(t, 0, sizeof *t);
	if (!url || strnlen(url, MAX_URL + 1) > MAX_URL) {
		*why = "no URL, or longer than 2048 bytes";
		return -EINVAL;
	}
	/* The path goes into the request line as it is. */
	for (const char *c = url; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			*why = "the URL has a space or a control character";
			return -EINVAL;
		}
	}
	u = g_uri_parse(url, G_URI_FLAGS_ENCODED, NULL);
	if (!u) {
		*why = "not a valid URL";
		return -EINVAL;
	}
	scheme = g_uri_get_scheme(u);
	host = g_uri_get_host(u);
	path = g_uri_get_path(u);
	query = g_uri_get_query(u);
	if (!host || !*host || strlen(host) > 253 ||
	    (!is_literal(host) && strspn(host, HOST_CHARS) != strlen(host))) {
		*why = "the URL has no usable host";
		return -EINVAL;
	}
	if (g_uri_get_userinfo(u)) {
		*why = "credentials in the URL are not supported";
		return -EINVAL;
	}
	if (!g_ascii_strcasecmp(scheme, "https")) {
		t->tls = true;
	} else if (!g_ascii_strcasecmp(scheme, "http")) {
		if (!is_loopback_literal(host)) {
			*why = "http:// is only allowed to 127.0.0.0/8 and ::1; use https://";
			return -EINVAL;
		}
	} else {
		*why = "the URL must start with https://";
		return -EINVAL;
	}
	t->port = g_uri_get_port(u);
	if (t->port <= 0)
		t->port = t->tls ? 443 : 80;
	t->host = g_strdup(host);
	const char *lb = strchr(host, ':') ? "[" : "", *rb = *lb ? "]" : "";
	if (t->port == (t->tls ? 443 : 80))
		t->host_header = g_strdup_printf("%s%s%s", lb, host, rb);
	else
		t->host_header = g_strdup_printf("%s%s%s:%d", lb, host, rb, t->port);
	t->path = g_strdup_printf("%s%s%s", *path ? path : "/", query ? "?" : "", query ? query : "");
	return 0;
}

int fetch_url_check(const char *url, const char **why)
{
	struct target t;
	int r = parse_url(url, &t, why);
	target_clear(&t);
	return r;
}

static void connect_now(struct fetch *f)
{
	struct lws_client_connect_info i;

	memset(&i, 0, sizeof i);
	i.context = f->fc->ctx;
	i.vhost = f->vh;
	i.address = f->addr;
	i.port = f->port;
	i.path = f->path;
	i.host = f->host_header; /* also the name the certificate is checked against */
	i.method = "GET";
	i.protocol = PROTOCOL_NAME;
	i.local_protocol_name = PROTOCOL_NAME;
	i.ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT | (f->tls ? LCCSCF_USE_SSL : 0);
	i.alpn = "http/1.1";
	i.opaque_user_data = f;
	i.pwsi = &f->wsi;

	f->connecting = true;
	struct lws *wsi = lws_client_connect_via_info(&i);
	f->connecting = false;
	if (f->deferred_status) {
		f->wsi = NULL; /* lws is closing it */
		finish(f, f->deferred_status, false, NULL);
	} else if (!wsi) {
		f->wsi = NULL;
		finish(f, -EIO, false, "lws could not start the connection");
	}
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct fetch *f = req->data;

	if (f) {
		f->gai = NULL;
		if (status < 0) {
			finish(f, -EHOSTUNREACH, true, "cannot resolve %s: %s", f->host,
			       uv_strerror(status));
		} else {
			/* The first address only: no fallback to the next. */
			if (res->ai_family == AF_INET6)
				uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, f->addr, sizeof f->addr);
			else
				uv_ip4_name((struct sockaddr_in *)res->ai_addr, f->addr, sizeof f->addr);
			log_debug("fetch " TARGET_FMT ": connecting to %s", TARGET(f), f->addr);
			connect_now(f);
		}
	}
	uv_freeaddrinfo(res);
	g_free(req);
}

int fetch_start(struct fetch_client *fc, const struct fetch_request *req, fetch_done_fn done,
		void *data, struct fetch **out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct lws_vhost *vh = NULL;
	const char *why;
	struct target t;
	int r;

	if ((r = parse_url(req->url, &t, &why)) < 0) {
		log_notice("fetch: refusing URL: %s", why);
		return r;
	}
	if (fc->active.length >= FETCH_MAX_IN_FLIGHT) {
		target_clear(&t);
		return -EBUSY;
	}
	const char *ca = !t.tls ? NULL : req->ca_file && *req->ca_file ? req->ca_file : system_ca_file();
	if ((r = client_vhost(fc, ca, &vh)) < 0) {
		target_clear(&t);
		return r;
	}
	struct fetch *f = g_new0(struct fetch, 1);
	f->fc = fc;
	f->done = done;
	f->data = data;
	f->vh = vh;
	f->tls = t.tls;
	f->host = t.host;
	f->host_header = t.host_header;
	f->path = t.path;
	f->path_log_len = (int)strcspn(t.path, "?");
	f->port = t.port;
	f->max_body = req->max_body ? req->max_body : FETCH_DEFAULT_MAX_BODY;
	f->timeout_ms = req->timeout_ms ? req->timeout_ms : FETCH_DEFAULT_TIMEOUT_MS;
	f->body = g_byte_array_new();
	f->content_length = -1;
	f->started = g_get_monotonic_time();
	f->link.data = f;

	/* Always through the resolver, also for a literal address: the
	 * connection then starts from the loop, never inside this call. */
	f->gai = g_new0(uv_getaddrinfo_t, 1);
	f->gai->data = f;
	/* AI_ADDRCONFIG would refuse ::1 on a host with no global IPv6. */
	hints.ai_flags = is_literal(f->host) ? AI_NUMERICHOST : AI_ADDRCONFIG;
	r = uv_getaddrinfo(fc->loop, f->gai, on_resolved, f->host, NULL, &hints);
	if (r < 0) {
		g_free(f->gai);
		fetch_free(f);
		return -EIO;
	}
	g_queue_push_tail_link(&fc->active, &f->link);
	lws_sul_schedule(fc->ctx, 0, &f->timer, on_timeout, (lws_usec_t)f->timeout_ms * 1000);
	log_debug("fetch " TARGET_FMT ": started", TARGET(f));
	if (out)
		*out = f;
	return 0;
}

void fetch_cancel(struct fetch *f)
{
	if (!f)
		return;
	log_debug("fetch " TARGET_FMT ": cancelled", TARGET(f));
	detach(f, true);
	fetch_free(f);
}
