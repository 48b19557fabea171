/* fetch: an HTTPS GET on the daemon's event loop, for JWKS documents.
 *
 * libcurl's multi interface driven by the daemon's libuv loop (uv_poll_t
 * per socket, one uv_timer_t); curl parses the URL (CURLU), resolves
 * (its resolver reports through a socket, so the loop never blocks) and
 * speaks HTTP/1.1 and TLS.  The server certificate and its host name are
 * always verified, against one CA bundle read once per client; redirects
 * are not followed; header size, body size and total time are bounded.
 * Bodies are never logged.  curl_global_init() is the caller's, once per
 * process (main). */
#pragma once

#include <stddef.h>
#include <uv.h>

#define FETCH_DEFAULT_MAX_BODY (1024 * 1024)
#define FETCH_DEFAULT_TIMEOUT_MS 10000
#define FETCH_MAX_IN_FLIGHT 4
/* Status line and header lines together (the lws client's limit). */
#define FETCH_MAX_HEADER 16384

struct fetch_client;
struct fetch;

struct fetch_request {
	/* https://HOST[:PORT][/PATH][?QUERY]; http:// only to a literal
	 * 127.0.0.0/8 or ::1 address (tests). */
	const char *url;
	/* PEM bundle trusted instead of the system's; NULL: the system's
	 * ($SSL_CERT_FILE, else OpenSSL's default file). */
	const char *ca_file;
	/* From start to the last byte; 0: default. */
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
 *   -EIO           another failure: headers over FETCH_MAX_HEADER, no socket
 *   -EPROTO        TLS failed: untrusted certificate, host name mismatch...
 *   -ETIMEDOUT     not complete within timeout_ms
 *   -EREMOTEIO     an HTTP status other than 200 (a 3xx is not followed)
 *   -EFBIG         the body is larger than max_body
 *   -ECONNRESET    closed before the whole response arrived */
typedef void (*fetch_done_fn)(int status, unsigned http_status, const char *body, size_t len,
			      const char *why, void *data);

/* Fetches run on LOOP.  -ENOMEM when curl cannot make its multi handle. */
int fetch_client_new(uv_loop_t *loop, struct fetch_client **out);
/* Cancels every fetch in flight (no callbacks) and closes the client's
 * handles: the loop must run once more to finish closing them.  Not from
 * a DONE.  CA files are read once per client: a new client reads them
 * again. */
void fetch_client_free(struct fetch_client *fc);

/* 0 when URL may be fetched; else -EINVAL with *WHY. */
int fetch_url_check(const char *url, const char **why);

/* Starts a GET; DONE is never called from inside this function.  Fails
 * with -EINVAL (URL), -EBUSY (FETCH_MAX_IN_FLIGHT reached), -EIO (the CA
 * file has no certificate) or -ENOMEM (curl refused).  OUT may be NULL;
 * the handle is valid until DONE runs or fetch_cancel. */
int fetch_start(struct fetch_client *fc, const struct fetch_request *req, fetch_done_fn done,
		void *data, struct fetch **out);
/* Stops F at once; its DONE is not called. */
void fetch_cancel(struct fetch *f);
