/* routerio: the router's services carried out (router_services): the
 * clocks, the log, JWT checks and key set waits through auth, room
 * creation through the room service.  The composition root (daemon.c)
 * hands the router these; the fuzz harnesses use them too, and
 * tests/test-router.c fakes them instead. */
#pragma once

#include "auth/auth.h"
#include "store/roomsvc.h"
#include "core/router.h"

struct routerio {
	struct auth *auth;
	struct roomsvc *roomsvc;
};

/* Their context is a struct routerio, which outlives the router. */
extern const struct router_services routerio_services;
