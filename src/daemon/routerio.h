/* routerio: the router's services carried out (router_services): the
 * clocks, the log, JWT checks and key set waits through auth, room
 * creation through the room service.  The composition root (daemon.c)
 * hands the router these; the fuzz harnesses use them too, and
 * tests/test-router.c fakes them instead. */
#pragma once

#include "auth/auth.h"
#include "store/roomsvc.h"
#include "core/router.h"

struct cluster;

struct routerio {
	struct auth *auth;
	struct roomsvc *roomsvc;
	struct cluster *cluster; /* [cluster]: routerio_cluster_services */
	struct router *router;   /* where the cluster's callbacks go */
};

/* Their context is a struct routerio, which outlives the router. */
extern const struct router_services routerio_services;
/* The same with [cluster] redis set (io->cluster). */
extern const struct router_services routerio_cluster_services;

/* The cluster's callbacks (struct cluster_ops), USER the routerio. */
struct cluster_ops;
extern const struct cluster_ops routerio_cluster_ops;
