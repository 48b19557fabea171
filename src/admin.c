#include "admin.h"

#include "log.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#define ROLES_WAIT_MS 1000

struct admin {
	struct MHD_Daemon *mhd;
	struct admin_options o;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     GString *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(body->len, body->str,
								 MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
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

static enum MHD_Result on_health(struct admin *a, struct MHD_Connection *c)
{
	g_autoptr(GString) s = g_string_new(NULL);
	enum metrics_health h = metrics_health(g_get_monotonic_time() / 1000);
	static const char *const names[] = { "healthy", "unhealthy", "draining" };

	(void)a;
	append_status(s, names[h]);
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
	rc->a->o.roles(rc->a->o.data, &rc->roles);
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

static const struct {
	const char *path;
	enum MHD_Result (*fn)(struct admin *a, struct MHD_Connection *c);
} routes[] = {
	{ "/health", on_health },
	{ "/ready", on_ready },
	{ "/metrics", on_metrics },
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;
	g_autoptr(GString) s = g_string_new(NULL);

	(void)version;
	(void)upload_data;
	(void)con_cls;
	for (size_t i = 0; i < G_N_ELEMENTS(routes); i++) {
		if (strcmp(url, routes[i].path) != 0)
			continue;
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
			if (*upload_data_size) { /* ignore a body; answer once it is in */
				*upload_data_size = 0;
				return MHD_YES;
			}
			g_string_assign(s, "{\"error\":\"method not allowed\"}");
			return reply_json(c, MHD_HTTP_METHOD_NOT_ALLOWED, s);
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

int admin_start(const struct admin_options *o, struct admin **out)
{
	struct admin *a = g_new0(struct admin, 1);

	a->o = *o;
	/* epoll, never select(): select fails past descriptor 1024, and the
	 * WebSocket side holds tens of thousands.  MHD_USE_ITC: without it MHD
	 * wakes its thread on stop by shutdown() of the listening socket,
	 * which under socket activation is systemd's, and the next process
	 * would get a socket that no longer listens. */
	a->mhd = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
				  0, NULL, NULL,
				  on_request, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				  MHD_OPTION_LISTEN_SOCKET, o->listen_fd,
				  MHD_OPTION_CONNECTION_LIMIT, o->max_connections,
				  MHD_OPTION_CONNECTION_TIMEOUT, o->connection_timeout, MHD_OPTION_END);
	if (!a->mhd) {
		g_free(a);
		return -EIO;
	}
	*out = a;
	return 0;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	MHD_stop_daemon(a->mhd); /* closes the listening socket too */
	g_free(a);
}
