/* fetch: an HTTPS GET on the daemon's event loop, for JWKS documents.
 *
 * libwebsockets' own client on the daemon's lws context (so on its libuv
 * loop); the name is resolved with uv_getaddrinfo, since lws 4.1.6 as
 * Debian builds it resolves with a blocking getaddrinfo().  Each CA bundle
 * gets a client vhost of its own, owned here: lws keeps one SSL_CTX, so
 * one trust store, per vhost.  The server certificate and its host name
 * are always verified; redirects are not followed; body size and total
 * time are bounded.  Bodies are never logged. */
#pragma once

#include <stddef.h>
#include <uv.h>

#define FETCH_DEFAULT_MAX_BODY (1024 * 1024)
#define FETCH_DEFAULT_TIMEOUT_MS 10000
#define FETCH_MAX_IN_FLIGHT 4

struct lws_context;
struct fetch_client;
struct fetch;

struct fetch_request {
	/* https://HOST[:PORT][/PATH][?QUERY]; http:// only to a literal
	 * 127.0.0.0/8 or ::1 address (tests). */
	const char *url;
	/* PEM bundle trusted instead of the system's; NULL: the system's
	 * ($SSL_CERT_FILE, else OpenSSL's default file). */
	const char *ca_file;
	/* From start to the last byte; 0: default.  lws also bounds each
	 * step (connect, TLS, headers) by the context's timeout_secs. */
	unsigned timeout_ms;
	size_t max_body;     /* 0: default */
};

/* Called exactly once per started fetch, on the loop, unless it was
 * cancelled first: STATUS 0 with the body on HTTP 200, else a negative
 * errno and WHY, a short reason (BODY NULL).  HTTP_STATUS is the
 * response's status once one arrived, else 0.  BODY and WHY are valid
 * during the call only.
 *   -EHOSTUNREACH  the name did not resolve
 *   -ECONNREFUSED  refused (or connect()'s own errno: -ENETUNREACH...)
 *   -EIO           another failure: headers over lws's space, no socket
 *   -EPROTO        TLS failed: untrusted certificate, host name mismatch...
 *   -ETIMEDOUT     not complete within timeout_ms
 *   -EREMOTEIO     an HTTP status other than 200 (a 3xx is not followed)
 *   -EFBIG         the body is larger than max_body
 *   -ECONNRESET    closed before the whole response arrived */
typedef void (*fetch_done_fn)(int status, unsigned http_status, const char *body, size_t len,
			      const char *why, void *data);

/* CTX is the daemon's lws context, running on LOOP and created with
 * LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT (ws_server_context()). */
int fetch_client_new(uv_loop_t *loop, struct lws_context *ctx, struct fetch_client **out);
/* Cancels every fetch in flight (no callbacks) and destroys the client's
 * vhosts.  Before the context is destroyed, and not from a DONE.  CA
 * files are read once per client: a new client reads them again. */
void fetch_client_free(struct fetch_client *fc);

/* 0 when URL may be fetched; else -EINVAL with *WHY. */
int fetch_url_check(const char *url, const char **why);

/* Starts a GET; DONE is never called from inside this function.  Fails
 * with -EINVAL (URL), -EBUSY (FETCH_MAX_IN_FLIGHT reached) or -EIO (the CA
 * file has no certificate, or lws refused the vhost).  OUT may be NULL;
 * the handle is valid until DONE runs or fetch_cancel. */
int fetch_start(struct fetch_client *fc, const struct fetch_request *req, fetch_done_fn done,
		void *data, struct fetch **out);
/* Stops F at once; its DONE is not called. */
void fetch_cancel(struct fetch *f);
