/* httpc: a small blocking HTTP/1.1 client for the loopback admin port,
 * shared by rtcsignalctl and the tests, on curl's easy interface.  One
 * request per connection (Connection: close), numeric IPv4/IPv6
 * addresses, no TLS, no proxy.  curl_global_init() is the caller's, once
 * per process (else curl makes it implicitly, and never undoes it). */
#pragma once

#include "util/config.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTPC_TIMEOUT_MS 5000
#define HTTPC_MAX_REPLY (4u << 20)

struct httpc_request {
	const char *method;
	const char *target;  /* path and query, e.g. "/metrics?format=json" */
	const char *headers; /* extra header lines, each ending in "\r\n"; may be NULL */
	const char *body;    /* sent with its Content-Length; may be NULL */
	int timeout_ms;      /* for the whole exchange; 0: HTTPC_TIMEOUT_MS */
	size_t max_reply;    /* bytes of head and body; 0: HTTPC_MAX_REPLY */
};

struct httpc_reply {
	int status;
	GString *head; /* status line and header lines, without the blank line */
	GString *body;
	bool connected; /* also set on failure: false means connect() failed */
};

/* Sends REQ to TO and reads the reply, framed by Content-Length or by the
 * server closing.  Returns 0 with OUT filled (release with
 * httpc_reply_clear, also after a failure), or a negative errno: connect()'s
 * (OUT->connected false), -ETIMEDOUT, -EMSGSIZE past max_reply, -EPROTO
 * when the answer is not a whole HTTP/1.x reply (or is chunked). */
int httpc_request(const struct listen_addr *to, const struct httpc_request *req,
		  struct httpc_reply *out);
void httpc_reply_clear(struct httpc_reply *r);
/* The value of header NAME (any case), stripped, or NULL; g_free it. */
char *httpc_header(const struct httpc_reply *r, const char *name);
