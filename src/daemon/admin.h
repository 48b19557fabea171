/* admin: the admin HTTP port (libmicrohttpd in its own thread, epoll,
 * fed by an accept thread of ours that enforces the connection limits
 * and a deadline per request): /health, /ready, /metrics, the /api/
 * of adminapi and the dashboard page (dashboard.c).  It reads the metrics atomics and asks the loop (through
 * loopcall) for anything else; it never touches loop state itself. */
#pragma once

#include "daemon/loopcall.h"
#include "util/metrics.h"

#include <stdbool.h>

struct admin;
struct admin_request;

/* A readiness condition beyond "serving": true when fine, else false with
 * a short reason.  Called on the admin thread: it must only read atomics. */
typedef bool (*admin_ready_fn)(void *data, const char **reason);
#define ADMIN_READY_CHECKS 4

struct admin_options {
	int listen_fd; /* a bound, listening socket; the admin takes it */
	unsigned max_connections;
	unsigned connections_per_address; /* of max_connections, from one address */
	unsigned connection_timeout; /* seconds */
	unsigned request_timeout;    /* seconds to send a whole request */
	unsigned requests_per_second; /* to the page and /api/, per address; 0: no limit */
	struct loopcall *loopcall;
	/* Run on the loop: the registered peers by role. */
	void (*roles)(void *data, struct metrics_roles *out);
	void *roles_data;
	/* Run on the loop: an authorized /api/ request, answered through
	 * admin_request_answer (now or later). */
	void (*api)(void *data, struct admin_request *req);
	void *api_data;
	/* what /ready waits for (the room store, the issuers' key sets) */
	struct {
		admin_ready_fn fn;
		void *data;
	} ready[ADMIN_READY_CHECKS];
	/* [cluster] redis is set: /ready and /health say when it is degraded */
	bool cluster;
};

int admin_start(const struct admin_options *o, struct admin **out);
/* The bearer tokens for /api/ and /metrics (NULL: /api/ disabled, /metrics
 * open).  From the loop, at start and on reload. */
void admin_set_tokens(struct admin *a, const char *api_token, const char *metrics_token);

const char *admin_request_method(const struct admin_request *r);
/* The path after "/api/", e.g. "rooms/3f2a". */
const char *admin_request_path(const struct admin_request *r);
const char *admin_request_body(const struct admin_request *r, size_t *len);
/* The bearer token when it was not the admin token but has a JWT's
 * shape: the loop decides ([admin] jwt_group).  NULL for the admin token. */
const char *admin_request_jwt(const struct admin_request *r);
/* The methods a 405 answer to R names (a static string), set before
 * answering it. */
void admin_request_set_allow(struct admin_request *r, const char *allow);
/* On the loop: STATUS and a JSON body (taken); the request completes. */
void admin_request_answer(struct admin_request *r, unsigned status, char *json);
/* Joins the admin thread and closes its socket. */
void admin_stop(struct admin *a);
