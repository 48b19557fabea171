/* admin: the admin HTTP port (libmicrohttpd in its own thread, epoll):
 * /health, /ready, /metrics.  It reads the metrics atomics and asks the
 * loop (through loopcall) for anything else; it never touches loop state
 * itself. */
#pragma once

#include "loopcall.h"
#include "metrics.h"

#include <stdbool.h>

struct admin;

/* A readiness condition beyond "serving": true when fine, else false with
 * a short reason.  Called on the admin thread: it must only read atomics. */
typedef bool (*admin_ready_fn)(void *data, const char **reason);
#define ADMIN_READY_CHECKS 4

struct admin_options {
	int listen_fd; /* a bound, listening socket; the admin takes it */
	unsigned max_connections;
	unsigned connection_timeout; /* seconds */
	struct loopcall *loopcall;
	/* Run on the loop: the registered peers by role. */
	void (*roles)(void *data, struct metrics_roles *out);
	void *data;
	/* backends /ready waits for (room store, Redis) */
	struct {
		admin_ready_fn fn;
		void *data;
	} ready[ADMIN_READY_CHECKS];
};

int admin_start(const struct admin_options *o, struct admin **out);
/* Joins the admin thread and closes its socket. */
void admin_stop(struct admin *a);
