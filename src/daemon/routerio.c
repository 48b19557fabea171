#include "daemon/routerio.h"

#include "util/log.h"
#include "util/metrics.h"

static uint64_t monotonic_ns(void *ctx)
{
	(void)ctx;
	return metrics_now_ns();
}

static gint64 real_us(void *ctx)
{
	(void)ctx;
	return g_get_real_time();
}

static void __attribute__((format(printf, 8, 0)))
log_line(void *ctx, int prio, enum log_event ev, const struct log_fields *f, const char *file,
	 int line, const char *func, const char *fmt, va_list ap)
{
	(void)ctx;
	/* Formatted only when it is written: debug lines cost nothing else. */
	if (!log_enabled(prio))
		return;
	g_autofree char *text = g_strdup_vprintf(fmt, ap);
	log_full(prio, ev, f, file, line, func, "%s", text);
}

static bool required(void *ctx)
{
	struct routerio *io = ctx;
	return auth_required(io->auth);
}

static int verify_jwt(void *ctx, const char *token, gint64 now, struct jwt_claims *claims,
		      enum jwt_error *why, const char **issuer)
{
	struct routerio *io = ctx;
	return auth_verify(io->auth, token, now, claims, why, issuer);
}

static void keys_ready(void *data)
{
	router_keys_ready(data);
}

static int await_keys(void *ctx, const char *issuer, struct router_parked *p, void **wait)
{
	struct routerio *io = ctx;
	struct auth_wait *w = NULL;
	int r = auth_await_keys(io->auth, issuer, keys_ready, p, &w);

	*wait = w;
	return r;
}

static void cancel_wait(void *ctx, void *wait)
{
	(void)ctx;
	auth_wait_cancel(wait);
}

static int create_room(void *ctx, const struct roomsvc_request *req, struct router_pending *p,
		       const char **why)
{
	struct routerio *io = ctx;
	return roomsvc_create(io->roomsvc, req, g_get_real_time() / G_USEC_PER_SEC, router_room_created,
			      p, why);
}

const struct router_services routerio_services = {
	.monotonic_ns = monotonic_ns,
	.real_us = real_us,
	.log = log_line,
	.auth_required = required,
	.verify_jwt = verify_jwt,
	.await_keys = await_keys,
	.cancel_wait = cancel_wait,
	.create_room = create_room,
};
