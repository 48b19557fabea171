#include "daemon/routerio.h"

#include "cluster/cluster.h"
#include "util/log.h"
#include "util/metrics.h"

#include <errno.h>

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

/* What every daemon carries out; with [cluster] redis, the cluster's
 * services besides. */
#define ROUTERIO_SERVICES                                                                      \
	.monotonic_ns = monotonic_ns, .real_us = real_us, .log = log_line,                     \
	.auth_required = required, .verify_jwt = verify_jwt, .await_keys = await_keys,        \
	.cancel_wait = cancel_wait, .create_room = create_room

const struct router_services routerio_services = { ROUTERIO_SERVICES };

/* --- [cluster] --- */

static int c_announce(void *ctx, const struct peer *p, unsigned max_peers, bool admin, uint64_t *epoch)
{
	struct routerio *io = ctx;
	*epoch = 0;
	if (!io->cluster) /* stopped: the last sessions close */
		return 0;
	*epoch = cluster_new_epoch(io->cluster);
	g_autofree char *tag = registry_principal_tag(p->principal);
	const struct cluster_peer cp = {
		.room = p->room->id, .peer = p->id, .role = p->role, .meta = p->meta->public_json,
		.principal = tag, .connected_at = p->connected_at / 1000, /* ms */
		.epoch = *epoch, .max_peers = max_peers, .admin = admin,
	};
	/* Recorded even while Redis is down: announced once it is back. */
	int rc = cluster_announce(io->cluster, &cp);
	if (rc < 0)
		log_warning("cluster: peer %s of room %s cannot be announced", p->id, p->room->id);
	return rc == 0; /* claimed now: on_claimed answers */
}

static void c_update(void *ctx, const struct peer *p)
{
	struct routerio *io = ctx;
	if (!io->cluster) /* stopped: the last sessions close */
		return;
	cluster_update(io->cluster, p->room->id, p->id, p->epoch, p->meta->public_json);
}

static void c_withdraw(void *ctx, const struct peer *p, enum protocol_gone why)
{
	struct routerio *io = ctx;
	if (!io->cluster) /* stopped: the last sessions close */
		return;
	cluster_withdraw(io->cluster, p->room->id, p->id, p->epoch, protocol_gone_name(why));
}

static int c_watch(void *ctx, const char *room)
{
	struct routerio *io = ctx;
	if (!io->cluster) /* stopped: the last sessions close */
		return -ENOTCONN;
	return cluster_watch(io->cluster, room);
}

static void c_unwatch(void *ctx, const char *room)
{
	struct routerio *io = ctx;
	if (!io->cluster) /* stopped: the last sessions close */
		return;
	cluster_unwatch(io->cluster, room);
}

static int c_forward(void *ctx, const struct peer *to, const struct peer *from, enum msg_type type,
		     struct msgbuf *m)
{
	struct routerio *io = ctx;
	if (!io->cluster) /* stopped: the last sessions close */
		return -ENOTCONN;
	char tag[16]; /* the type comes back with a failure: the sender is told as here */
	snprintf(tag, sizeof tag, "%d", (int)type);
	return cluster_forward(io->cluster, to->instance, to->id, to->epoch, from->id, tag, msgbuf_text(m),
			       m->len);
}

const struct router_services routerio_cluster_services = {
	ROUTERIO_SERVICES,
	.cluster_announce = c_announce,
	.cluster_update = c_update,
	.cluster_withdraw = c_withdraw,
	.cluster_watch = c_watch,
	.cluster_unwatch = c_unwatch,
	.cluster_forward = c_forward,
};

/* cluster.c logs backend lost / restored itself; /ready wants the first. */
static void on_state(void *user, bool up)
{
	(void)user;
	if (up)
		metrics_set(cluster_seen_up, true);
}

static void on_view_ready(void *user, const char *room, int status)
{
	struct routerio *io = user;
	(void)status;
	router_cluster_view_ready(io->router, room);
}

static void on_upsert(void *user, const struct cluster_peer *p)
{
	struct routerio *io = user;
	const struct router_remote_peer rp = { .room = p->room, .peer = p->peer, .instance = p->instance,
		.role = p->role, .meta = p->meta, .principal = p->principal, .connected_at = p->connected_at, .epoch = p->epoch };
	router_cluster_peer_upsert(io->router, &rp);
}

static void on_remove(void *user, const char *room, const char *peer, const char *instance,
		      const char *why)
{
	struct routerio *io = user;
	router_cluster_peer_remove(io->router, room, peer, instance, protocol_gone_parse(why));
}

static void on_replaced(void *user, const char *room, const char *peer, uint64_t epoch,
			const char *by_instance)
{
	struct routerio *io = user;
	(void)by_instance;
	router_cluster_replaced(io->router, room, peer, epoch);
}

static void on_claimed(void *user, const char *room, const char *peer, uint64_t epoch,
		       enum cluster_claim res, const char *admin)
{
	struct routerio *io = user;
	router_cluster_claimed(io->router, room, peer, epoch,
			       res == CLUSTER_CLAIM_TAKEN  ? ROUTER_CLAIM_TAKEN
			       : res == CLUSTER_CLAIM_FULL ? ROUTER_CLAIM_FULL
							   : ROUTER_CLAIMED,
			       admin);
}

static enum cluster_reason on_deliver(void *user, const char *to_peer, uint64_t epoch,
				      const char *from_instance, const char *from_peer, const char *bytes,
				      size_t len)
{
	struct routerio *io = user;
	(void)from_instance;
	(void)from_peer;
	switch (router_cluster_deliver(io->router, to_peer, epoch, bytes, len)) {
	case 0:
		return CLUSTER_OK;
	case -ENOBUFS:
		return CLUSTER_QUEUE_FULL;
	case -EPIPE:
		return CLUSTER_CLOSING;
	default:
		return CLUSTER_GONE;
	}
}

static void on_delivery_failed(void *user, const char *from_peer, const char *to_peer, const char *tag,
			       enum cluster_reason why)
{
	struct routerio *io = user;
	static const char *const text[CLUSTER_REASON__COUNT] = {
		[CLUSTER_GONE] = "it is no longer connected",
		[CLUSTER_QUEUE_FULL] = "its queue is full",
		[CLUSTER_CLOSING] = "its connection is closing",
		[CLUSTER_UNREACHABLE] = "its instance cannot be reached (cluster degraded)",
		[CLUSTER_TOO_LARGE] = "too large to cross to its instance",
		[CLUSTER_BUSY] = "too many messages on their way to other instances",
	};
	long type = tag ? strtol(tag, NULL, 10) : 0;
	router_cluster_delivery_failed(io->router, from_peer, to_peer,
				       type > MSG_UNKNOWN && type < MSG__COUNT ? (enum msg_type)type : MSG_PEER_MESSAGE,
				       why > 0 && why < CLUSTER_REASON__COUNT ? text[why] : "unknown");
}

const struct cluster_ops routerio_cluster_ops = {
	.state = on_state,
	.view_ready = on_view_ready,
	.peer_upsert = on_upsert,
	.peer_remove = on_remove,
	.replaced = on_replaced,
	.claimed = on_claimed,
	.deliver = on_deliver,
	.delivery_failed = on_delivery_failed,
};
