#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_TIMEOUT_MS 5000

int http_request(int port, const char *method, const char *path, const char *headers,
		 const char *body, struct http_reply *out)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	g_autoptr(GString) raw = g_string_new(NULL);
	gint64 deadline = g_get_monotonic_time() + HTTP_TIMEOUT_MS * 1000;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(out, 0, sizeof *out);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
		close(fd);
		return -1;
	}
	g_autofree char *req = g_strdup_printf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
					       "%sContent-Length: %zu\r\n\r\n%s",
					       method, path, port, headers ? headers : "",
					       body ? strlen(body) : 0, body ? body : "");
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	for (;;) {
		char buf[16384];
		struct pollfd p = { .fd = fd, .events = POLLIN };
		gint64 left = (deadline - g_get_monotonic_time()) / 1000;
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			break;
		g_string_append_len(raw, buf, n);
	}
	close(fd);
	const char *end = strstr(raw->str, "\r\n\r\n");
	if (!g_str_has_prefix(raw->str, "HTTP/1.") || !end)
		return -1;
	out->status = atoi(raw->str + 9);
	g_autofree char *head = g_strndup(raw->str, (gsize)(end - raw->str));
	out->headers = g_string_new(NULL);
	g_string_append(out->headers, head);
	g_string_ascii_down(out->headers);
	out->body = g_string_new(end + 4);
	return 0;
}

void http_reply_clear(struct http_reply *r)
{
	if (r->headers)
		g_string_free(r->headers, TRUE);
	if (r->body)
		g_string_free(r->body, TRUE);
	memset(r, 0, sizeof *r);
}

char *http_header(const struct http_reply *r, const char *name)
{
	g_autofree char *needle = g_strdup_printf("\r\n%s:", name);
	const char *at = r->headers ? strstr(r->headers->str, needle) : NULL;
	if (!at)
		return NULL;
	at += strlen(needle);
	const char *eol = strstr(at, "\r\n");
	g_autofree char *v = eol ? g_strndup(at, (gsize)(eol - at)) : g_strdup(at);
	return g_strdup(g_strstrip(v));
}
