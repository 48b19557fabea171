/* httpc: one request per connection through curl's easy interface, with
 * the reply checked here against the admin port's rules. */
#include "ctl/httpc.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct xfer {
	const char *method;
	size_t max;    /* of head and body */
	size_t total;  /* bytes of head and body so far */
	bool in_head;
	int status;    /* ours, when a callback stopped the transfer */
	struct httpc_reply *out;
};

/* The value of NAME in HEAD (header lines after the status line), not
 * NUL-terminated: its length goes to LEN. */
static const char *find_header(const char *head, const char *name, size_t *len)
{
	size_t n = strlen(name);

	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		const char *eol = strstr(line, "\r\n");
		if (!eol)
			eol = line + strlen(line);
		if (g_ascii_strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*len = (size_t)(eol - v);
			while (*len && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
				(*len)--;
			return v;
		}
	}
	return NULL;
}

static bool status_line_ok(const char *l)
{
	return g_str_has_prefix(l, "HTTP/1.") && g_ascii_isdigit(l[7]) && l[8] == ' ' &&
	       g_ascii_isdigit(l[9]) && g_ascii_isdigit(l[10]) && g_ascii_isdigit(l[11]) &&
	       (l[12] == ' ' || l[12] == '\0');
}

/* The complete head: what curl would let pass but the admin port never
 * sends (chunking, a Content-Length that is not digits), and the size
 * cap counted ahead when the length is announced. */
static int check_head(struct xfer *x)
{
	struct httpc_reply *r = x->out;
	const char *v;
	size_t len;

	if (find_header(r->head->str, "transfer-encoding", &len))
		return -EPROTO;
	if (strcmp(x->method, "HEAD") == 0 || r->status / 100 == 1 || r->status == 204 ||
	    r->status == 304)
		return 0;
	if ((v = find_header(r->head->str, "content-length", &len))) {
		if (len == 0 || len > 15 || strspn(v, "0123456789") < len)
			return -EPROTO;
		if (x->total + (size_t)g_ascii_strtoull(v, NULL, 10) > x->max)
			return -EMSGSIZE;
	}
	return 0;
}

static size_t on_header(char *buf, size_t size, size_t n, void *data)
{
	struct xfer *x = data;
	struct httpc_reply *r = x->out;
	size_t len = n;

	if ((x->total += n) > x->max) {
		x->status = -EMSGSIZE;
		return 0;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (!x->in_head) { /* a status line: a new head (after a 1xx, the final one) */
		g_string_truncate(r->head, 0);
		g_string_append_len(r->head, buf, (gssize)len);
		if (!status_line_ok(r->head->str)) {
			x->status = -EPROTO;
			return 0;
		}
		r->status = atoi(r->head->str + 9);
		x->in_head = true;
	} else if (len) {
		g_string_append(r->head, "\r\n");
		g_string_append_len(r->head, buf, (gssize)len);
	} else {
		x->in_head = false;
		if ((x->status = check_head(x)) < 0)
			return 0;
	}
	return n;
}

static size_t on_body(char *buf, size_t size, size_t n, void *data)
{
	struct xfer *x = data;

	if ((x->total += n) > x->max) {
		x->status = -EMSGSIZE;
		return 0;
	}
	g_string_append_len(x->out->body, buf, (gssize)n);
	return n;
}

/* Every header line of TEXT ("Name: value\r\n"...) onto LIST. */
static struct curl_slist *add_lines(struct curl_slist *list, const char *text)
{
	g_auto(GStrv) lines = g_strsplit(text ? text : "", "\r\n", -1);
	struct curl_slist *l = list;

	for (char **p = lines; l && *p; p++)
		if (**p)
			l = curl_slist_append(l, *p);
	for (char **p = lines; *p; p++)
		explicit_bzero(*p, strlen(*p));
	return l;
}

static void free_headers(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data)); /* may carry a bearer token */
	curl_slist_free_all(list);
}

/* The request as the hand-written client sent it: Host (curl's, from
 * the URL), Connection: close, the caller's lines, Content-Length; none
 * of curl's Accept, Content-Type or Expect (an empty "Name:" removes
 * curl's own, and a caller's line of that name still goes out). */
static struct curl_slist *request_headers(const struct httpc_request *req, size_t body_len)
{
	char cl[48];
	struct curl_slist *l = curl_slist_append(NULL, "Connection: close");
	const char *const tail[] = { cl, "Accept:", "Content-Type:", "Expect:" };

	l = add_lines(l, req->headers);
	g_snprintf(cl, sizeof cl, "Content-Length: %zu", body_len);
	for (size_t i = 0; l && i < G_N_ELEMENTS(tail); i++) {
		struct curl_slist *n = curl_slist_append(l, tail[i]);
		if (!n) {
			free_headers(l);
			return NULL;
		}
		l = n;
	}
	return l;
}

/* curl's outcome as this API has always told it. */
static int outcome(CURL *e, CURLcode rc, const struct xfer *x, struct httpc_reply *out)
{
	long os_errno = 0;

	if (x->status)
		return x->status;
	switch (rc) {
	case CURLE_OK:
		return out->head->len && !x->in_head ? 0 : -EPROTO;
	case CURLE_COULDNT_CONNECT:
		out->connected = false;
		curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
		return os_errno ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
		return -EINVAL;
	case CURLE_SEND_ERROR:
		curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
		return os_errno ? -(int)os_errno : -EIO;
	case CURLE_RECV_ERROR:
		curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
		return os_errno ? -(int)os_errno : -EPROTO;
	default:
		/* not HTTP (0.9), a bad status line or length, cut short,
		 * nothing at all */
		return -EPROTO;
	}
}

int httpc_request(const struct listen_addr *to, const struct httpc_request *req,
		  struct httpc_reply *out)
{
	size_t body_len = req->body ? strlen(req->body) : 0;
	struct xfer x = { .method = req->method,
			  .max = req->max_reply ? req->max_reply : HTTPC_MAX_REPLY,
			  .out = out };
	g_autofree char *url = NULL;
	struct curl_slist *headers = NULL;
	CURLcode rc = CURLE_OK;
	curl_off_t connect_us = 0;
	long sent = 0;
	CURL *e;
	int r;

	memset(out, 0, sizeof *out);
	out->head = g_string_new(NULL);
	out->body = g_string_new(NULL);
	if (!(e = curl_easy_init()) || !(headers = request_headers(req, body_len))) {
		r = -ENOMEM;
		goto out;
	}
	url = g_strdup_printf("http://%s%s", to->text, req->target);
#define SET(opt, val) \
	if (rc == CURLE_OK) \
		rc = curl_easy_setopt(e, opt, val)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PATH_AS_IS, 1L); /* the target as given, no "/../" squashing */
	SET(CURLOPT_PROTOCOLS_STR, "http");
	SET(CURLOPT_PROXY, ""); /* not $http_proxy: the admin port is local */
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_FORBID_REUSE, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms > 0 ? req->timeout_ms : HTTPC_TIMEOUT_MS));
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, &x);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, &x);
	if (strcmp(req->method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (strcmp(req->method, "GET") != 0 || body_len) {
		/* A body, even an empty one: curl then also reads an answer that
		 * comes before the whole body was taken (413). */
		SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		SET(CURLOPT_CUSTOMREQUEST, req->method);
	}
#undef SET
	if (rc != CURLE_OK) {
		r = rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
		goto out;
	}
	out->connected = true; /* until curl says it could not */
	rc = curl_easy_perform(e);
	r = outcome(e, rc, &x, out);
	if (r == -ETIMEDOUT) {
		/* Timed out in connect(), or after? */
		curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connect_us);
		curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &sent);
		out->connected = connect_us > 0 || sent > 0;
	}
out:
	free_headers(headers);
	curl_easy_cleanup(e);
	return r;
}

void httpc_reply_clear(struct httpc_reply *r)
{
	if (r->head)
		g_string_free(r->head, TRUE);
	if (r->body)
		g_string_free(r->body, TRUE);
	memset(r, 0, sizeof *r);
}

char *httpc_header(const struct httpc_reply *r, const char *name)
{
	size_t len;
	const char *v = r->head ? find_header(r->head->str, name, &len) : NULL;

	return v ? g_strndup(v, len) : NULL;
}
