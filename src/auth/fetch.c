/* fetch: a thin adapter from libcurl's multi socket interface to the
 * daemon's libuv loop, plus the rules of what may be fetched. */
#include "auth/fetch.h"

#include "util/log.h"
#include "util/netaddr.h"

#include <curl/curl.h>
#include <errno.h>
#include <glib.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_URL 2048
#define SCHEME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-"
#define HOST_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"

struct fetch_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;   /* curl's next timeout */
	GHashTable *cas;    /* CA file path -> GBytes, its PEM */
	GQueue active;      /* of struct fetch */
	GQueue socks;       /* of struct sock */
};

/* One per socket curl asks us to watch. */
struct sock {
	uv_poll_t poll;
	struct fetch_client *fc;
	GList link; /* in fc->socks */
	curl_socket_t fd;
};

struct fetch {
	struct fetch_client *fc;
	GList link; /* in fc->active */
	fetch_done_fn done;
	void *data;
	CURL *easy;
	CURLU *url;
	struct curl_slist *headers;
	GBytes *ca; /* curl reads it in place (CURL_BLOB_NOCOPY) */
	char *target; /* host[:port]/path, no query: for logs */
	bool host_is_ip;
	size_t max_body;
	unsigned timeout_ms;
	GByteArray *body;
	size_t header_bytes;
	bool headers_done;
	unsigned http_status;
	char location[128];
	/* Set when a callback of ours stopped the transfer: curl then says
	 * only "write error". */
	int status;
	char why[256];
	char errbuf[CURL_ERROR_SIZE];
	gint64 started;
};

static void check_done(struct fetch_client *fc);

static void fetch_free(struct fetch *f)
{
	if (f->easy) {
		curl_multi_remove_handle(f->fc->multi, f->easy);
		curl_easy_cleanup(f->easy);
	}
	curl_url_cleanup(f->url);
	curl_slist_free_all(f->headers);
	if (f->ca)
		g_bytes_unref(f->ca);
	if (f->body)
		g_byte_array_unref(f->body);
	g_free(f->target);
	g_free(f);
}

/* Returns 0: what a curl data callback returns to stop the transfer. */
static size_t fail(struct fetch *f, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static size_t fail(struct fetch *f, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	g_vsnprintf(f->why, sizeof f->why, fmt, ap);
	va_end(ap);
	f->status = status;
	return 0;
}

/* --- the loop side: curl's sockets and timer on libuv --- */

static void on_sock_closed(uv_handle_t *h)
{
	g_free(h->data);
}

static void sock_close(struct sock *s)
{
	g_queue_unlink(&s->fc->socks, &s->link);
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock *s = p->data;
	struct fetch_client *fc = s->fc;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else
		flags = (events & UV_READABLE ? CURL_CSELECT_IN : 0) |
			(events & UV_WRITABLE ? CURL_CSELECT_OUT : 0);
	/* S may be closed inside this call. */
	curl_multi_socket_action(fc->multi, s->fd, flags, &running);
	check_done(fc);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct fetch_client *fc = userp;
	struct sock *s = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(fc->multi, fd, NULL);
			sock_close(s);
		}
		return 0;
	}
	if (!s) {
		s = g_new0(struct sock, 1);
		if (uv_poll_init_socket(fc->loop, &s->poll, fd) < 0) {
			g_free(s);
			return -1;
		}
		s->poll.data = s;
		s->fc = fc;
		s->fd = fd;
		s->link.data = s;
		g_queue_push_tail_link(&fc->socks, &s->link);
		curl_multi_assign(fc->multi, fd, s);
	}
	int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
	return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

static void on_timer(uv_timer_t *t)
{
	struct fetch_client *fc = t->data;
	int running;

	curl_multi_socket_action(fc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(fc);
}

/* Never acts from here: curl may be inside curl_multi_add_handle. */
static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
	struct fetch_client *fc = userp;

	if (timeout_ms < 0)
		uv_timer_stop(&fc->timer);
	else
		uv_timer_start(&fc->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

/* --- one transfer --- */

static size_t on_header(char *buf, size_t size, size_t n, void *data)
{
	struct fetch *f = data;
	long code = 0;
	curl_off_t length = -1;

	if (f->headers_done) /* trailers of a chunked body */
		return n;
	f->header_bytes += n;
	if (f->header_bytes > FETCH_MAX_HEADER)
		return fail(f, -EIO, "response header over %u bytes", FETCH_MAX_HEADER);
	if (n > 9 && !g_ascii_strncasecmp(buf, "location:", 9)) {
		const char *v = buf + 9, *end = buf + n;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && g_ascii_isspace(end[-1]))
			end--;
		g_snprintf(f->location, sizeof f->location, "%.*s", (int)(end - v), v);
		return n;
	}
	if (!(n == 2 && buf[0] == '\r') && !(n == 1 && buf[0] == '\n'))
		return n;
	/* The end of a head: decide before any of the body comes. */
	curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 100 && code < 200) /* 100 Continue: the real head follows */
		return n;
	f->headers_done = true;
	f->http_status = (unsigned)code;
	if (code >= 300 && code < 400)
		return fail(f, -EREMOTEIO, "HTTP %ld redirect to %s not followed", code, f->location);
	if (code != 200)
		return fail(f, -EREMOTEIO, "HTTP status %ld", code);
	curl_easy_getinfo(f->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
	if (length > 0 && (curl_off_t)f->max_body < length)
		return fail(f, -EFBIG, "body of %" CURL_FORMAT_CURL_OFF_T " bytes is over the limit of %zu",
			    length, f->max_body);
	if (length > 0) {
		g_byte_array_set_size(f->body, (guint)length);
		g_byte_array_set_size(f->body, 0);
	}
	return n;
}

static size_t on_body(char *buf, size_t size, size_t n, void *data)
{
	struct fetch *f = data;

	if (n > f->max_body - f->body->len)
		return fail(f, -EFBIG, "body is over the limit of %zu bytes", f->max_body);
	g_byte_array_append(f->body, (const guint8 *)buf, (guint)n);
	return n;
}

/* Turns curl's outcome into ours: an errno and a reason. */
static void outcome(struct fetch *f, CURLcode rc)
{
	long os_errno = 0, verify = X509_V_OK;
	curl_off_t length = -1;
	const char *msg = *f->errbuf ? f->errbuf : curl_easy_strerror(rc);

	if (f->status)
		return; /* ours, from a callback */
	switch (rc) {
	case CURLE_OK:
		if (f->http_status != 200)
			fail(f, -EREMOTEIO, "HTTP status %u", f->http_status);
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		fail(f, -EHOSTUNREACH, "cannot resolve: %s", msg);
		break;
	case CURLE_COULDNT_CONNECT:
		/* connect()'s errno; 0 when no socket could be made */
		curl_easy_getinfo(f->easy, CURLINFO_OS_ERRNO, &os_errno);
		if (os_errno)
			fail(f, -(int)os_errno, "%s (%s)", msg, g_strerror((int)os_errno));
		else
			fail(f, -EIO, "%s", msg);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		fail(f, -ETIMEDOUT, "no complete response within %u ms", f->timeout_ms);
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
		/* OpenSSL's verdict on the chain; curl 7.88 leaves its
		 * placeholder (1, "unspecified") when its own check of the name
		 * failed after a good chain. */
		curl_easy_getinfo(f->easy, CURLINFO_SSL_VERIFYRESULT, &verify);
		if (verify != X509_V_OK && verify != X509_V_ERR_UNSPECIFIED)
			fail(f, -EPROTO, "TLS: certificate verification failed: %s",
			     X509_verify_cert_error_string(verify));
		else
			fail(f, -EPROTO, "TLS: certificate verification failed: %s mismatch (%s)",
			     f->host_is_ip ? "IP address" : "hostname", msg);
		break;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		fail(f, -EPROTO, "TLS handshake failed: %s", msg);
		break;
	case CURLE_PARTIAL_FILE:
		curl_easy_getinfo(f->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
		fail(f, -ECONNRESET, "connection closed after %u of %" CURL_FORMAT_CURL_OFF_T " bytes",
		     f->body->len, length);
		break;
	case CURLE_GOT_NOTHING:
		fail(f, -ECONNRESET, "connection closed before a response");
		break;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		fail(f, -ECONNRESET, "connection failed: %s", msg);
		break;
	case CURLE_OUT_OF_MEMORY:
		fail(f, -ENOMEM, "out of memory");
		break;
	default:
		fail(f, -EIO, "%s", msg);
		break;
	}
}

/* Reports what curl finished and frees it. */
static void check_done(struct fetch_client *fc)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(fc->multi, &left))) {
		struct fetch *f = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
		outcome(f, m->data.result);
		g_queue_unlink(&fc->active, &f->link);
		gint64 ms = (g_get_monotonic_time() - f->started) / 1000;
		if (f->status == 0) {
			log_debug("fetch %s: %u bytes in %" G_GINT64_FORMAT " ms", f->target, f->body->len,
				  ms);
			f->done(0, f->http_status, (const char *)f->body->data, f->body->len, NULL, f->data);
		} else {
			log_notice("fetch %s failed after %" G_GINT64_FORMAT " ms: %s", f->target, ms, f->why);
			f->done(f->status, f->http_status, NULL, 0, f->why, f->data);
		}
		fetch_free(f);
	}
}

int fetch_client_new(uv_loop_t *loop, struct fetch_client **out)
{
	struct fetch_client *fc = g_new0(struct fetch_client, 1);

	fc->multi = curl_multi_init();
	if (!fc->multi) {
		g_free(fc);
		return -ENOMEM;
	}
	fc->loop = loop;
	fc->cas = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
	g_queue_init(&fc->active);
	g_queue_init(&fc->socks);
	uv_timer_init(loop, &fc->timer);
	fc->timer.data = fc;
	curl_multi_setopt(fc->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(fc->multi, CURLMOPT_SOCKETDATA, fc);
	curl_multi_setopt(fc->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
	curl_multi_setopt(fc->multi, CURLMOPT_TIMERDATA, fc);
	*out = fc;
	return 0;
}

static void on_client_closed(uv_handle_t *h)
{
	g_free(h->data);
}

void fetch_client_free(struct fetch_client *fc)
{
	if (!fc)
		return;
	while (fc->active.head)
		fetch_cancel(fc->active.head->data);
	curl_multi_cleanup(fc->multi);
	/* curl said REMOVE for each socket it closed; any left is ours. */
	while (fc->socks.head)
		sock_close(fc->socks.head->data);
	g_hash_table_unref(fc->cas);
	uv_close((uv_handle_t *)&fc->timer, on_client_closed);
}

/* --- what may be fetched --- */

static char *url_part(CURLU *u, CURLUPart what)
{
	char *v = NULL;
	return curl_url_get(u, what, &v, 0) == CURLUE_OK ? v : NULL;
}

/* HOST as curl has it (an IPv6 address in brackets) as an address. */
static bool host_address(const char *host, struct netaddr *a)
{
	size_t len = strlen(host);

	if (len > 2 && host[0] == '[' && host[len - 1] == ']')
		return netaddr_parse(host + 1, len - 2, a) == 0;
	return netaddr_parse(host, len, a) == 0;
}

/* Parsed by curl, so the rules apply to the URL curl will use (curl's
 * normal form: "http://2130706433/" is 127.0.0.1 to both).  On success
 * *OUT is the handle to give curl. */
static int parse_url(const char *url, CURLU **out, bool *tls, bool *is_ip, const char **why)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *options = NULL;
	char *zone = NULL;
	struct netaddr a;
	int r = -EINVAL;

	if (!url || strnlen(url, MAX_URL + 1) > MAX_URL) {
		*why = "no URL, or longer than 2048 bytes";
		goto out;
	}
	/* curl reads "https:///x" and "https:/x" as host x: the authority
	 * must be where RFC 3986 has it, right after "scheme://". */
	const char *sep = strstr(url, "://");
	if (!sep || strspn(url, SCHEME_CHARS) != (size_t)(sep - url) || sep[3] == '/') {
		*why = "not a valid URL";
		goto out;
	}
	if (!(u = curl_url())) {
		*why = "out of memory";
		r = -ENOMEM;
		goto out;
	}
	/* Without CURLU_ALLOW_SPACE curl refuses spaces and control
	 * characters: the path goes into the request line as it is. */
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
		*why = "not a valid URL";
		goto out;
	}
	scheme = url_part(u, CURLUPART_SCHEME);
	host = url_part(u, CURLUPART_HOST);
	user = url_part(u, CURLUPART_USER);
	password = url_part(u, CURLUPART_PASSWORD);
	options = url_part(u, CURLUPART_OPTIONS);
	zone = url_part(u, CURLUPART_ZONEID);
	*is_ip = host && host_address(host, &a);
	if (!host || !*host || strlen(host) > 253 ||
	    (!*is_ip && strspn(host, HOST_CHARS) != strlen(host))) {
		*why = "the URL has no usable host";
		goto out;
	}
	if (user || password || options) {
		*why = "credentials in the URL are not supported";
		goto out;
	}
	if (scheme && !strcmp(scheme, "https")) {
		*tls = true;
	} else if (scheme && !strcmp(scheme, "http")) {
		*tls = false;
		if (!*is_ip || zone || !netaddr_is_loopback_addr(&a)) {
			*why = "http:// is only allowed to 127.0.0.0/8 and ::1; use https://";
			goto out;
		}
	} else {
		*why = "the URL must start with https://";
		goto out;
	}
	r = 0;
	*out = g_steal_pointer(&u);
out:
	curl_url_cleanup(u);
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_free(options);
	curl_free(zone);
	return r;
}

int fetch_url_check(const char *url, const char **why)
{
	CURLU *u = NULL;
	bool tls, is_ip;
	int r = parse_url(url, &u, &tls, &is_ip, why);

	curl_url_cleanup(u);
	return r;
}

static const char *system_ca_file(void)
{
	const char *env = getenv(X509_get_default_cert_file_env());
	return env && *env ? env : X509_get_default_cert_file();
}

/* The PEM of CA_FILE, read once per client and refused when it holds no
 * certificate: curl would only find out when connecting. */
static int load_ca(struct fetch_client *fc, const char *ca_file, GBytes **out)
{
	GBytes *pem = g_hash_table_lookup(fc->cas, ca_file);
	g_autoptr(GError) err = NULL;
	STACK_OF(X509_INFO) *infos = NULL;
	unsigned n_certs = 0;
	char *text;
	gsize len;
	BIO *bio;

	if (!pem) {
		if (!g_file_get_contents(ca_file, &text, &len, &err)) {
			log_warning("fetch: cannot read the CA file: %s", err->message);
			return -EIO;
		}
		pem = g_bytes_new_take(text, len);
		if ((bio = BIO_new_mem_buf(text, (int)MIN(len, (gsize)G_MAXINT))))
			infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
		for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++)
			n_certs += sk_X509_INFO_value(infos, i)->x509 != NULL;
		sk_X509_INFO_pop_free(infos, X509_INFO_free);
		BIO_free(bio);
		if (!n_certs) {
			/* Not kept: the next try reads the file again. */
			log_warning("fetch: no CA certificate could be loaded from %s", ca_file);
			g_bytes_unref(pem);
			return -EIO;
		}
		log_debug("fetch: trusting %u certificates from %s", n_certs, ca_file);
		g_hash_table_insert(fc->cas, g_strdup(ca_file), pem);
	}
	*out = g_bytes_ref(pem);
	return 0;
}

/* "host[:port]/path" of U, without the query. */
static char *log_target(CURLU *u)
{
	char *host = url_part(u, CURLUPART_HOST), *port = url_part(u, CURLUPART_PORT);
	char *path = url_part(u, CURLUPART_PATH);
	char *t = g_strdup_printf("%s%s%s%s", host ? host : "", port ? ":" : "", port ? port : "",
				  path ? path : "/");
	curl_free(host);
	curl_free(port);
	curl_free(path);
	return t;
}

static int setup_easy(struct fetch *f, bool tls)
{
	static const char ua[] = PACKAGE_NAME "/" PACKAGE_VERSION;
	CURL *e = f->easy;
	CURLcode rc = CURLE_OK;

	f->headers = curl_slist_append(NULL, "Accept: application/json");
	if (!f->headers)
		return -ENOMEM;
#define SET(opt, val) \
	if (rc == CURLE_OK) \
		rc = curl_easy_setopt(e, opt, val)
	SET(CURLOPT_CURLU, f->url);
	SET(CURLOPT_PRIVATE, f);
	SET(CURLOPT_ERRORBUFFER, f->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	/* Not $http_proxy or $https_proxy: straight to the server. */
	SET(CURLOPT_PROXY, "");
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_FORBID_REUSE, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)f->timeout_ms);
	SET(CURLOPT_USERAGENT, ua);
	SET(CURLOPT_HTTPHEADER, f->headers);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, f);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, f);
	if (tls) {
		struct curl_blob blob = { .flags = CURL_BLOB_NOCOPY };
		blob.data = (void *)g_bytes_get_data(f->ca, &blob.len);
		SET(CURLOPT_SSL_VERIFYPEER, 1L);
		SET(CURLOPT_SSL_VERIFYHOST, 2L);
		SET(CURLOPT_CAINFO_BLOB, &blob);
		/* Exactly that bundle: not also curl's built-in CA directory. */
		SET(CURLOPT_CAPATH, NULL);
	}
#undef SET
	return rc == CURLE_OK ? 0 : -ENOMEM;
}

int fetch_start(struct fetch_client *fc, const struct fetch_request *req, fetch_done_fn done,
		void *data, struct fetch **out)
{
	const char *why;
	bool tls = false, is_ip = false;
	CURLU *u = NULL;
	GBytes *ca = NULL;
	int r;

	if ((r = parse_url(req->url, &u, &tls, &is_ip, &why)) < 0) {
		log_notice("fetch: refusing URL: %s", why);
		return r;
	}
	if (fc->active.length >= FETCH_MAX_IN_FLIGHT) {
		curl_url_cleanup(u);
		return -EBUSY;
	}
	if (tls && (r = load_ca(fc, req->ca_file && *req->ca_file ? req->ca_file : system_ca_file(),
				&ca)) < 0) {
		curl_url_cleanup(u);
		return r;
	}
	struct fetch *f = g_new0(struct fetch, 1);
	f->fc = fc;
	f->done = done;
	f->data = data;
	f->url = u;
	f->ca = ca;
	f->host_is_ip = is_ip;
	f->target = log_target(u);
	f->max_body = req->max_body ? req->max_body : FETCH_DEFAULT_MAX_BODY;
	f->timeout_ms = req->timeout_ms ? req->timeout_ms : FETCH_DEFAULT_TIMEOUT_MS;
	f->body = g_byte_array_new();
	f->started = g_get_monotonic_time();
	f->link.data = f;
	f->easy = curl_easy_init();
	if (!f->easy || (r = setup_easy(f, tls)) < 0 ||
	    curl_multi_add_handle(fc->multi, f->easy) != CURLM_OK) {
		/* Not added, or curl_multi_remove_handle in fetch_free is a no-op. */
		fetch_free(f);
		return -ENOMEM;
	}
	/* curl starts from the timer it has just asked for, on the loop. */
	g_queue_push_tail_link(&fc->active, &f->link);
	log_debug("fetch %s: started", f->target);
	if (out)
		*out = f;
	return 0;
}

void fetch_cancel(struct fetch *f)
{
	if (!f)
		return;
	log_debug("fetch %s: cancelled", f->target);
	g_queue_unlink(&f->fc->active, &f->link);
	fetch_free(f);
}
