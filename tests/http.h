/* A blocking HTTP/1.1 client for the tests (one request per connection). */
#pragma once

#include <glib.h>

struct http_reply {
	int status;
	GString *headers; /* raw, lower-cased names */
	GString *body;
};

/* METHOD PATH on 127.0.0.1:PORT with extra header lines (each ending in
 * \r\n, may be NULL) and BODY (may be NULL).  0, or -1 with the test
 * failing soft (status 0) when nothing valid came back in 5 s. */
int http_request(int port, const char *method, const char *path, const char *headers,
		 const char *body, struct http_reply *out);
void http_reply_clear(struct http_reply *r);
/* A header's value (name lower-case), or NULL; g_free. */
char *http_header(const struct http_reply *r, const char *name);
