/* httpc: one request per connection, every wait bounded by one deadline. */
#include "httpc.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Waits for EVENTS on FD until DEADLINE (monotonic us): 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short events, gint64 deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		gint64 left = deadline - g_get_monotonic_time();
		if (left <= 0)
			return -ETIMEDOUT;
		int n = poll(&p, 1, (int)((left + 999) / 1000));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int connect_to(int fd, const struct listen_addr *to, gint64 deadline)
{
	int error = 0;
	socklen_t len = sizeof error;
	int r;

	if (connect(fd, (const struct sockaddr *)&to->ss, to->len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	if ((r = wait_fd(fd, POLLOUT, deadline)) < 0)
		return r;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		return -errno;
	return -error;
}

static int send_all(int fd, const char *data, size_t len, gint64 deadline)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			int r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0)
				return r;
			continue;
		}
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

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

/* From the head: the status, and how many body bytes to expect (-1: until
 * the server closes). */
static int parse_head(const char *method, const char *head, int *status, gint64 *body_len)
{
	const char *v;
	size_t len;

	if (!g_str_has_prefix(head, "HTTP/1.") || !g_ascii_isdigit(head[7]) || head[8] != ' ' ||
	    !g_ascii_isdigit(head[9]) || !g_ascii_isdigit(head[10]) || !g_ascii_isdigit(head[11]) ||
	    (head[12] != ' ' && head[12] != '\r' && head[12] != '\0'))
		return -EPROTO;
	*status = atoi(head + 9);
	if (find_header(head, "transfer-encoding", &len))
		return -EPROTO; /* chunked: not sent by the admin port's buffered replies */
	if (strcmp(method, "HEAD") == 0 || *status / 100 == 1 || *status == 204 || *status == 304) {
		*body_len = 0;
	} else if ((v = find_header(head, "content-length", &len))) {
		if (len == 0 || len > 15 || strspn(v, "0123456789") < len)
			return -EPROTO;
		*body_len = g_ascii_strtoll(v, NULL, 10);
	} else {
		*body_len = -1;
	}
	return 0;
}

static int read_reply(int fd, const char *method, size_t max, gint64 deadline,
		      struct httpc_reply *out)
{
	g_autoptr(GString) raw = g_string_new(NULL);
	gint64 body_len = -1;
	size_t head_len = 0; /* with the blank line; 0 until it is in */
	char buf[16384];
	int r;

	for (;;) {
		if (head_len && body_len >= 0 && raw->len >= head_len + (size_t)body_len)
			break;
		if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
			return r;
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		if (raw->len + (size_t)n > max)
			return -EMSGSIZE;
		g_string_append_len(raw, buf, n);
		if (!head_len) {
			const char *end = strstr(raw->str, "\r\n\r\n");
			if (!end)
				continue;
			head_len = (size_t)(end - raw->str) + 4;
			out->head = g_string_new_len(raw->str, (gssize)head_len - 4);
			if ((r = parse_head(method, out->head->str, &out->status, &body_len)) < 0)
				return r;
			if (body_len >= 0 && head_len + (size_t)body_len > max)
				return -EMSGSIZE;
		}
	}
	if (!head_len || (body_len >= 0 && raw->len < head_len + (size_t)body_len))
		return -EPROTO; /* closed early */
	out->body = g_string_new_len(raw->str + head_len,
				     body_len >= 0 ? body_len : (gssize)(raw->len - head_len));
	return 0;
}

int httpc_request(const struct listen_addr *to, const struct httpc_request *req,
		  struct httpc_reply *out)
{
	gint64 deadline = g_get_monotonic_time() +
			  (gint64)(req->timeout_ms > 0 ? req->timeout_ms : HTTPC_TIMEOUT_MS) * 1000;
	size_t body_len = req->body ? strlen(req->body) : 0;
	g_autoptr(GString) msg = g_string_new(NULL);
	int fd, r;

	memset(out, 0, sizeof *out);
	fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if ((r = connect_to(fd, to, deadline)) < 0)
		goto out;
	out->connected = true;
	g_string_printf(msg, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s"
			     "Content-Length: %zu\r\n\r\n",
			req->method, req->target, to->text, req->headers ? req->headers : "", body_len);
	g_string_append_len(msg, req->body ? req->body : "", (gssize)body_len);
	/* A server may answer and close before taking the whole body (413):
	 * its answer still counts. */
	if ((r = send_all(fd, msg->str, msg->len, deadline)) < 0 && r != -EPIPE && r != -ECONNRESET)
		goto out;
	r = read_reply(fd, req->method, req->max_reply ? req->max_reply : HTTPC_MAX_REPLY, deadline,
		       out);
out:
	close(fd);
	explicit_bzero(msg->str, msg->len); /* the headers may carry a bearer token */
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
