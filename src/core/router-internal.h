/* router-internal: what router.c shares with registration.c, the two
 * halves of the router module; no other module includes it. */
#pragma once

#include "util/log.h"
#include "core/router.h"

#include <json-c/json.h>

struct router {
	const struct config *cfg;
	struct registry *reg;
	struct router_env env;
	struct turn *turn;
	const struct router_ops *ops; /* the transport */
	void *ctx;
	const struct router_services *svc;
	void *svc_ctx;
	json_tokener *tok;
	GString *scratch;
	uint64_t received_ns; /* when the message being handled arrived */
	const char *text;     /* and its text */
	size_t len;
	bool replaying;       /* a register whose issuer's keys were awaited */
	/* Errors v2.0 sessions were not told: logged once a second at most. */
	struct log_rate untold_log;
	unsigned ignored_logged; /* bits of enum ignored: said once per process */
	/* [cluster] */
	GHashTable *view_waits;   /* room id -> GPtrArray of router_parked */
	GHashTable *watched;      /* room ids asked for (cluster_watch) */
	/* "room\npeer" -> struct router_remote_peer (a copy): another
	 * instance's session of an id our register is still claiming,
	 * applied once that register ends without the id. */
	GHashTable *held_upserts;
	bool view_waited;         /* the register being replayed waited for its view */
	const char *holding_room; /* a register is under way here: keep its view */
	bool no_withdraw;         /* router_leave of a session another instance took */
	const struct router_claim *claim; /* the claim answer being replayed */
};

/* A claim's answer, to the register that waited for it. */
struct router_claim {
	enum router_claim_result res;
	const char *admin;
};

/* Whether the router works with other instances (router_services). */
static inline bool router_clustered(const struct router *r)
{
	return r->svc->cluster_watch != NULL;
}

/* A register whose token names a key its issuer is being asked for. */
struct router_parked {
	struct router *r;
	struct client *c;
	void *wait; /* router_services.await_keys */
	char *view_room; /* or waiting for this room's cluster view */
	char *text;
	size_t len;
};

/* Send M to C and drop our reference (ops.send, ops.answer). */
int router_send_owned(struct router *r, struct client *c, struct msgbuf *m);
int router_answer_owned(struct router *r, struct client *c, struct msgbuf *m);
/* An error to C about its message M, when C is told that error. */
void router_error_to(struct router *r, struct client *c, const struct msg *m, enum err_code code,
		     const char *field, const char *field_value, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
/* A line for the operator, through the services, from where it is said. */
void router_log_at(struct router *r, int prio, enum log_event ev, const struct log_fields *f,
		   const char *file, int line, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));
#define router_log(r, prio, ev, f, ...) \
	router_log_at(r, prio, ev, f, __FILE__, __LINE__, __func__, __VA_ARGS__)
void router_log_peer(struct router *r, int prio, enum log_event ev, const struct client *c,
		     const char *room, const char *peer, const char *role, const char *code,
		     const char *what);
/* C's registration ends (leave), or it lets go of one (release): WHY
 * for the log, GONE for its room's watchers. */
void router_leave(struct router *r, struct client *c, const char *why, enum protocol_gone gone);
void router_release(struct router *r, struct client *c, const char *why, enum protocol_gone gone);
/* True (and C told RATE_LIMITED) while a large answer to C is queued. */
bool router_answer_busy(struct router *r, struct client *c, const struct msg *m);
/* [cluster]: ROOM_ID's view is let go once no peer of ours and no
 * register needs it (its remote peers go with it). */
void router_maybe_unwatch(struct router *r, const char *room_id);
/* Keeps ROOM_ID's view: as cluster_watch. */
int router_watch(struct router *r, const char *room_id);
/* A register waits for ROOM_ID's view: true, or false when it cannot. */
bool router_park_for_view(struct router *r, struct client *c, const char *room_id);
/* C's session was taken over by another instance: told, ended, closed. */
void router_replaced_elsewhere(struct router *r, struct client *c);

/* The services' clocks: wall clock seconds, monotonic milliseconds. */
gint64 router_now_seconds(struct router *r);
uint64_t router_now_ms(struct router *r);
