/* crowd: a numbered set of peers that one process opens (and optionally
 * registers) on a wsloop, at most MAX_ACTIVE connections in progress at a
 * time, so the server's listen backlog (somaxconn 4096) never overflows.
 * Peer I is "<id_prefix>I" in room "<room_prefix>(I / room_size)", or in
 * room "<room_prefix>" when room_size is 0. */
#pragma once

#include "report.h"
#include "workload.h"
#include "wsconn.h"

struct crowd;

struct member {
	struct crowd *crowd;
	struct wsconn *conn; /* NULL once closed */
	unsigned idx;        /* global peer number */
	bool ready;
	int64_t t_open;      /* when its connect started */
	uint64_t seq;        /* free for the scenario */
	unsigned inflight;   /* free for the scenario */
	int64_t t_sent;      /* free for the scenario */
};

struct crowd_ops {
	/* Registered (or upgraded, without registration). */
	void (*ready)(struct crowd *cr, struct member *m);
	/* A message after ready; TYPE as counts_received() returns it. */
	void (*message)(struct crowd *cr, struct member *m, const char *type, const char *text,
			size_t len);
	/* A ready member's connection ended (WHY NULL: a close we started). */
	void (*closed)(struct crowd *cr, struct member *m, const char *why, int code);
};

struct crowd_spec {
	const struct target *target;
	unsigned first, count; /* peer numbers [first, first + count) */
	bool do_register;
	enum meta_kind kind;
	/* Overrides KIND per peer when set (e.g. pairs of client and worker). */
	enum meta_kind (*kind_of)(unsigned idx);
	const char *id_prefix, *room_prefix;
	unsigned room_size;
	unsigned max_active;
	/* A member stays "active" (counted against max_active) until it is
	 * ready, or with this set, until its connection ends (churn). */
	bool active_until_closed;
};

struct crowd {
	struct crowd_spec spec;
	const struct crowd_ops *ops;
	void *user;
	struct wsloop *loop;
	json_object *counts; /* not owned */
	struct member *members;
	unsigned started, active, ready, failed, closed;
	int64_t t_first, t_last; /* first connect started, last member ready */
	GString *scratch;
};

struct crowd *crowd_new(struct wsloop *loop, const struct crowd_spec *spec,
			const struct crowd_ops *ops, void *user, json_object *counts);
void crowd_free(struct crowd *cr);
/* Starts connections while fewer than max_active are in progress. */
void crowd_pump(struct crowd *cr);
/* Every member is ready or failed. */
bool crowd_settled(const struct crowd *cr);
/* Sends TEXT to member M, counting it under "sent" as TYPE. */
void crowd_send(struct crowd *cr, struct member *m, const char *type, const char *text, size_t len);
/* Gives up on the members not ready whose connect started before
 * STARTED_BEFORE (monotonic ns): each is closed, counted as failed and as
 * client error "<WHY>_<state>" (state: connect, upgrade, open). */
void crowd_give_up(struct crowd *cr, int64_t started_before, const char *why);
/* Gives up on members not ready CROWD_SETUP_TIMEOUT_NS after their
 * connect started ("setup_timeout"), so that a stalled connection is a
 * failure instead of a wait until the deadline. */
#define CROWD_SETUP_TIMEOUT_NS (30 * (int64_t)1000000000)
void crowd_expire(struct crowd *cr);
/* At the deadline: starts no more members and gives up on those not
 * ready ("deadline"). */
void crowd_deadline(struct crowd *cr);
/* Closes every open connection at once (no closing handshake). */
void crowd_abort_all(struct crowd *cr);
/* The peer id of member number IDX ("<id_prefix>IDX") into BUF. */
const char *crowd_peer_id(const struct crowd *cr, unsigned idx, char *buf, size_t len);
