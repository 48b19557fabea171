#include "crowd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void on_open(struct wsconn *c);
static void on_message(struct wsconn *c, const char *text, size_t len);
static void on_closed(struct wsconn *c, const char *why, int code);

static const struct wsconn_ops member_ops = {
	.open = on_open,
	.message = on_message,
	.closed = on_closed,
};

struct crowd *crowd_new(struct wsloop *loop, const struct crowd_spec *spec,
			const struct crowd_ops *ops, void *user, json_object *counts)
{
	struct crowd *cr = g_new0(struct crowd, 1);

	cr->spec = *spec;
	cr->ops = ops;
	cr->user = user;
	cr->loop = loop;
	cr->counts = counts;
	cr->members = g_new0(struct member, MAX(spec->count, 1));
	for (unsigned i = 0; i < spec->count; i++) {
		cr->members[i].crowd = cr;
		cr->members[i].idx = spec->first + i;
	}
	cr->scratch = g_string_sized_new(1024);
	return cr;
}

void crowd_free(struct crowd *cr)
{
	if (!cr)
		return;
	crowd_abort_all(cr);
	g_free(cr->members);
	g_string_free(cr->scratch, TRUE);
	g_free(cr);
}

const char *crowd_peer_id(const struct crowd *cr, unsigned idx, char *buf, size_t len)
{
	snprintf(buf, len, "%s%u", cr->spec.id_prefix, idx);
	return buf;
}

static void client_error(struct crowd *cr, const char *why, int code)
{
	char key[40];

	if (code) {
		snprintf(key, sizeof key, "%s_%d", why, code);
		why = key;
	}
	counts_add(cr->counts, "client_errors", why, 1);
}

/* A member that will never become ready. */
static void member_failed(struct crowd *cr, struct member *m)
{
	cr->failed++;
	cr->active--;
	crowd_pump(cr);
}

static void member_ready(struct crowd *cr, struct member *m)
{
	m->ready = true;
	cr->ready++;
	cr->t_last = wsloop_now();
	if (!cr->spec.active_until_closed)
		cr->active--;
	if (cr->ops->ready)
		cr->ops->ready(cr, m);
	crowd_pump(cr);
}

void crowd_pump(struct crowd *cr)
{
	while (cr->started < cr->spec.count && cr->active < cr->spec.max_active) {
		struct member *m = &cr->members[cr->started++];
		m->t_open = wsloop_now();
		if (!cr->t_first)
			cr->t_first = m->t_open;
		cr->active++;
		m->conn = target_open(cr->loop, cr->spec.target, m->idx, &member_ops, m);
		if (!m->conn) {
			client_error(cr, errno == EMFILE || errno == ENFILE ? "no_fd" : "socket", 0);
			cr->failed++;
			cr->active--;
		}
	}
}

bool crowd_settled(const struct crowd *cr)
{
	return cr->ready + cr->failed >= cr->spec.count;
}

void crowd_send(struct crowd *cr, struct member *m, const char *type, const char *text, size_t len)
{
	if (!m->conn)
		return;
	wsconn_send_text(m->conn, text, len);
	counts_add(cr->counts, "sent", type, 1);
}

void crowd_give_up(struct crowd *cr, int64_t started_before, const char *why)
{
	char key[40];

	if (cr->ready + cr->failed >= cr->started)
		return;
	for (unsigned i = 0; i < cr->started; i++) {
		struct member *m = &cr->members[i];
		if (m->ready || !m->conn || m->t_open >= started_before)
			continue;
		snprintf(key, sizeof key, "%s_%s", why, wsconn_state(m->conn));
		counts_add(cr->counts, "client_errors", key, 1);
		wsconn_abort(m->conn);
		m->conn = NULL;
		member_failed(cr, m);
	}
}

void crowd_expire(struct crowd *cr)
{
	crowd_give_up(cr, wsloop_now() - CROWD_SETUP_TIMEOUT_NS, "setup_timeout");
}

void crowd_deadline(struct crowd *cr)
{
	cr->spec.count = cr->started;
	crowd_give_up(cr, INT64_MAX, "deadline");
}

void crowd_abort_all(struct crowd *cr)
{
	for (unsigned i = 0; i < cr->started; i++) {
		struct member *m = &cr->members[i];
		if (m->conn) {
			wsconn_abort(m->conn);
			m->conn = NULL;
		}
	}
}

static void on_open(struct wsconn *c)
{
	struct member *m = wsconn_user(c);
	struct crowd *cr = m->crowd;
	char id[160], room[160];

	if (!cr->spec.do_register) {
		member_ready(cr, m);
		return;
	}
	crowd_peer_id(cr, m->idx, id, sizeof id);
	if (cr->spec.room_size)
		snprintf(room, sizeof room, "%s%u", cr->spec.room_prefix, m->idx / cr->spec.room_size);
	else
		g_strlcpy(room, cr->spec.room_prefix, sizeof room);
	enum meta_kind kind = cr->spec.kind_of ? cr->spec.kind_of(m->idx) : cr->spec.kind;
	workload_register(cr->scratch, id, room, kind, m->idx);
	crowd_send(cr, m, "register", cr->scratch->str, cr->scratch->len);
}

static void on_message(struct wsconn *c, const char *text, size_t len)
{
	struct member *m = wsconn_user(c);
	struct crowd *cr = m->crowd;
	const char *type = counts_received(cr->counts, text, len);

	if (m->ready) {
		if (cr->ops->message)
			cr->ops->message(cr, m, type, text, len);
		return;
	}
	if (strcmp(type, "registered_auth") == 0) {
		member_ready(cr, m);
	} else if (strcmp(type, "error") == 0) {
		/* Registration refused: counted under "errors" by code. */
		wsconn_abort(c);
		m->conn = NULL;
		member_failed(cr, m);
	}
}

static void on_closed(struct wsconn *c, const char *why, int code)
{
	struct member *m = wsconn_user(c);
	struct crowd *cr = m->crowd;

	m->conn = NULL;
	if (why)
		client_error(cr, why, code);
	if (!m->ready) {
		member_failed(cr, m);
		return;
	}
	cr->closed++;
	if (cr->spec.active_until_closed)
		cr->active--;
	if (cr->ops->closed)
		cr->ops->closed(cr, m, why, code);
	crowd_pump(cr);
}
