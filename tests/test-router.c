/* Unit tests: the router as a pure core (src/core/router.c, registration.c).
 * No socket, no loop, no clock, no store: fake clients record what the
 * router sends and closes, fake services record its log lines and its
 * requests (key set waits, room creations), and the tests complete those
 * requests themselves.  Each case is what a client would observe, as
 * chrony's ntp_sources tests are; the last one (suites run in the order
 * they are added) checks that the cases together saw every error code
 * the protocol has. */
#include "util/addrlimit.h"
#include "util/config.h"
#include "util/metrics.h"
#include "util/netaddr.h"
#include "core/protocol.h"
#include "core/registry.h"
#include "store/rooms.h"
#include "core/router.h"

#include <errno.h>
#include <glib.h>
#include <json-c/json.h>
#include <string.h>

/* A connection as the transport would hold it. */
struct fake {
	struct client c; /* first: the router's view */
	GQueue sent;     /* of char *, oldest first */
	int close_code;  /* 0: open */
	char *close_reason;
	bool full; /* its queue is over the bound: sends fail -ENOBUFS */
};

struct world {
	struct config *cfg;
	struct registry *reg;
	struct rooms *rooms;
	struct addrlimit *al;
	struct router *r;
	/* the services' state */
	uint64_t mono_ns;
	gint64 real_us;
	bool auth_required;
	bool fetching;      /* an issuer's key set is being fetched */
	bool keys_rotated;  /* "kid:" tokens verify */
	struct router_parked *parked;
	unsigned waits_cancelled;
	GPtrArray *log;     /* of char *: the lines the router asked for */
	/* the last create_room request */
	struct router_pending *pending;
	char *create_by;
	int create_rc;
	unsigned creates;
	/* [cluster] fakes (world_new_clustered) */
	int watch_rc;           /* what cluster_watch answers */
	unsigned announced, updated, unwatched;
	int claims_answered;
	enum msg_type forward_type; /* the last forward's */   /* fake_announce's answer */
	unsigned claim_max;    /* what the last claim asked */
	bool claim_admin;
	GPtrArray *withdrawn;   /* of char *: peer ids */
	GPtrArray *forwarded;   /* of char *: "INSTANCE EPOCH FROM FRAME" */
	int forward_rc;
};

/* Error codes some case saw (the last case checks all were). */
static bool seen[ERR__COUNT];

/* --- the fake transport --- */

static int fake_send(void *ctx, struct client *c, struct msgbuf *m)
{
	struct fake *f = (struct fake *)c;
	(void)ctx;
	if (f->close_code)
		return -EPIPE;
	if (f->full)
		return -ENOBUFS;
	g_queue_push_tail(&f->sent, g_strndup(msgbuf_text(m), m->len));
	return 0;
}

static void fake_close(void *ctx, struct client *c, int code, const char *reason)
{
	struct fake *f = (struct fake *)c;
	(void)ctx;
	if (f->close_code)
		return;
	c->closing = true;
	f->close_code = code;
	f->close_reason = g_strdup(reason);
}

/* Events: refused over the bound, as the transport does, unless forced. */
static int fake_event(void *ctx, struct client *c, struct msgbuf *m, bool force)
{
	struct fake *f = (struct fake *)c;
	(void)ctx;
	if (f->close_code)
		return -EPIPE;
	if (f->full && !force)
		return -ENOBUFS;
	g_queue_push_tail(&f->sent, g_strndup(msgbuf_text(m), m->len));
	return 0;
}

static const struct router_ops transport = { .send = fake_send, .event = fake_event, .close = fake_close };

/* --- the fake services --- */

static uint64_t fake_mono(void *ctx)
{
	return ((struct world *)ctx)->mono_ns;
}

static gint64 fake_real(void *ctx)
{
	return ((struct world *)ctx)->real_us;
}

static void __attribute__((format(printf, 8, 0)))
fake_log(void *ctx, int prio, enum log_event ev, const struct log_fields *f, const char *file,
	 int line, const char *func, const char *fmt, va_list ap)
{
	struct world *w = ctx;
	(void)prio, (void)ev, (void)f, (void)line, (void)func;
	/* The journal's CODE_FILE: the router's own file, not the service's. */
	g_assert_true(g_str_has_suffix(file, "router.c") || g_str_has_suffix(file, "registration.c"));
	g_ptr_array_add(w->log, g_strdup_vprintf(fmt, ap));
}

static bool fake_required(void *ctx)
{
	return ((struct world *)ctx)->auth_required;
}

/* "good:SUB" verifies as issuer "test"; "kid:SUB" names a key not yet
 * known (until the key set rotated in); anything else is a bad signature. */
static int fake_verify(void *ctx, const char *token, gint64 now, struct jwt_claims *claims,
		       enum jwt_error *why, const char **issuer)
{
	struct world *w = ctx;
	(void)now;
	*issuer = "test";
	if (g_str_has_prefix(token, "good:") || (w->keys_rotated && g_str_has_prefix(token, "kid:"))) {
		claims->sub = g_strdup(strchr(token, ':') + 1);
		return 0;
	}
	*why = g_str_has_prefix(token, "kid:") ? JWT_UNKNOWN_KID : JWT_BAD_SIGNATURE;
	return -EACCES;
}

static int fake_await(void *ctx, const char *issuer, struct router_parked *p, void **wait)
{
	struct world *w = ctx;
	g_assert_cmpstr(issuer, ==, "test");
	if (!w->fetching)
		return -EAGAIN;
	w->parked = p;
	*wait = p;
	return 0;
}

static void fake_cancel(void *ctx, void *wait)
{
	struct world *w = ctx;
	if (wait) {
		w->waits_cancelled++;
		w->parked = NULL;
	}
}

static int fake_create(void *ctx, const struct roomsvc_request *req, struct router_pending *p,
		       const char **why)
{
	struct world *w = ctx;
	w->creates++;
	g_free(w->create_by);
	w->create_by = g_strdup(req->created_by);
	if (w->create_rc < 0) {
		*why = w->create_rc == -EDQUOT ? "Room quota reached" : "expires_in too large";
		return w->create_rc;
	}
	w->pending = p;
	return 0;
}

static const struct router_services services = {
	.monotonic_ns = fake_mono,
	.real_us = fake_real,
	.log = fake_log,
	.auth_required = fake_required,
	.verify_jwt = fake_verify,
	.await_keys = fake_await,
	.cancel_wait = fake_cancel,
	.create_room = fake_create,
};

/* [cluster]: recorded, answered as the test says */
static int fake_announce(void *ctx, const struct peer *p, unsigned max_peers, bool admin,
			 uint64_t *epoch)
{
	struct world *w = ctx;
	(void)p;
	w->claim_max = max_peers;
	w->claim_admin = admin;
	*epoch = 1000 + ++w->announced;
	return w->claims_answered; /* 1: the test answers with router_cluster_claimed */
}

static void fake_update(void *ctx, const struct peer *p)
{
	(void)p;
	((struct world *)ctx)->updated++;
}

static void fake_withdraw(void *ctx, const struct peer *p, enum protocol_gone why)
{
	(void)why;
	g_ptr_array_add(((struct world *)ctx)->withdrawn, g_strdup(p->id));
}

static int fake_watch(void *ctx, const char *room)
{
	(void)room;
	return ((struct world *)ctx)->watch_rc;
}

static void fake_unwatch(void *ctx, const char *room)
{
	(void)room;
	((struct world *)ctx)->unwatched++;
}

static int fake_forward(void *ctx, const struct peer *to, const struct peer *from, enum msg_type type,
			struct msgbuf *m)
{
	struct world *w = ctx;
	w->forward_type = type;
	if (w->forward_rc < 0)
		return w->forward_rc;
	g_ptr_array_add(w->forwarded, g_strdup_printf("%s %" G_GUINT64_FORMAT " %s %.*s", to->instance, to->epoch,
						      from->id, (int)m->len, msgbuf_text(m)));
	return 0;
}

static const struct router_services cluster_services = {
	.monotonic_ns = fake_mono,
	.real_us = fake_real,
	.log = fake_log,
	.auth_required = fake_required,
	.verify_jwt = fake_verify,
	.await_keys = fake_await,
	.cancel_wait = fake_cancel,
	.create_room = fake_create,
	.cluster_announce = fake_announce,
	.cluster_update = fake_update,
	.cluster_withdraw = fake_withdraw,
	.cluster_watch = fake_watch,
	.cluster_unwatch = fake_unwatch,
	.cluster_forward = fake_forward,
};

/* --- the world --- */

static struct world *world_new_with(bool auth, const struct router_services *svc)
{
	struct world *w = g_new0(struct world, 1);
	const struct addrlimit_limits lim = { .max_addresses = 16, .regs_per_minute = 3, .failed_per_minute = 3 };

	w->cfg = config_new_defaults();
	w->reg = registry_new();
	w->rooms = rooms_new(NULL);
	g_assert_cmpint(addrlimit_new(&lim, &w->al), ==, 0);
	w->log = g_ptr_array_new_with_free_func(g_free);
	w->auth_required = auth;
	w->mono_ns = 1000000000;
	w->real_us = (gint64)1700000000 * G_USEC_PER_SEC;
	const struct router_env env = { .rooms = w->rooms, .addrlimit = w->al };
	w->withdrawn = g_ptr_array_new_with_free_func(g_free);
	w->forwarded = g_ptr_array_new_with_free_func(g_free);
	w->watch_rc = 1;
	w->r = router_new(w->cfg, w->reg, &env, svc, w);
	router_set_transport(w->r, &transport, w);
	return w;
}

static struct world *world_new(bool auth)
{
	return world_new_with(auth, &services);
}

/* One of several instances: its cluster services are the fakes above. */
static struct world *world_new_clustered(void)
{
	return world_new_with(false, &cluster_services);
}

static struct fake *fake_new(void)
{
	struct fake *f = g_new0(struct fake, 1);
	g_queue_init(&f->sent);
	return f;
}

/* The connection goes, as the transport reports it. */
static void fake_gone(struct world *w, struct fake *f)
{
	router_disconnect(w->r, &f->c);
	g_queue_clear_full(&f->sent, g_free);
	g_free(f->close_reason);
	g_free(f);
}

static void world_free(struct world *w)
{
	router_free(w->r);
	g_assert_cmpuint(registry_n_peers(w->reg), ==, 0);
	registry_free(w->reg);
	rooms_free(w->rooms);
	addrlimit_free(w->al);
	config_free(w->cfg);
	g_ptr_array_unref(w->log);
	g_ptr_array_unref(w->withdrawn);
	g_ptr_array_unref(w->forwarded);
	g_free(w->create_by);
	g_free(w);
}

static void say(struct world *w, struct fake *f, const char *text)
{
	router_receive(w->r, &f->c, text, strlen(text), true);
}

static void sayf(struct world *w, struct fake *f, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void sayf(struct world *w, struct fake *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	g_autofree char *text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	say(w, f, text);
}

/* The oldest message F has not looked at, which must be of TYPE. */
static json_object *next(struct fake *f, const char *type)
{
	g_autofree char *text = g_queue_pop_head(&f->sent);
	json_object *o, *t;

	if (!text)
		g_error("expected %s, nothing was sent", type);
	o = json_tokener_parse(text);
	g_assert_nonnull(o);
	g_assert_true(json_object_object_get_ex(o, "type", &t));
	if (strcmp(json_object_get_string(t), type) != 0)
		g_error("expected %s, got %s", type, text);
	return o;
}

static const char *str(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* The next message is the error CODE. */
static void expect_error(struct fake *f, const char *code)
{
	json_object *o = next(f, "error");
	g_assert_cmpstr(str(o, "code"), ==, code);
	for (int c = 0; c < ERR__COUNT; c++)
		if (strcmp(protocol_code_name(c), code) == 0)
			seen[c] = true;
	json_object_put(o);
}

static void expect_nothing(struct fake *f)
{
	if (!g_queue_is_empty(&f->sent))
		g_error("expected nothing, got %s", (char *)g_queue_peek_head(&f->sent));
}

/* Registers PEER in ROOM (2.1 unless V20) and checks the answer. */
static struct fake *join(struct world *w, const char *room, const char *peer, const char *extra,
			 bool v20)
{
	struct fake *f = fake_new();
	sayf(w, f, "{\"type\":\"register\",\"room_id\":\"%s\",\"peer_id\":\"%s\"%s%s}", room, peer,
	     v20 ? "" : ",\"protocol\":\"2.1\"", extra ? extra : "");
	json_object *o = next(f, "registered_auth");
	g_assert_cmpstr(str(o, "peer_id"), ==, peer);
	g_assert_cmpstr(str(o, "room_id"), ==, room);
	json_object_put(o);
	return f;
}

static bool logged(struct world *w, const char *what)
{
	for (guint i = 0; i < w->log->len; i++)
		if (strstr(g_ptr_array_index(w->log, i), what))
			return true;
	return false;
}

struct made {
	char *id, *token;
};

static void made_cb(int status, const struct store_room *room, const char *token, const char *why,
		    void *data)
{
	struct made *x = data;
	(void)why;
	g_assert_cmpint(status, ==, 0);
	x->id = g_strdup(room->id);
	x->token = g_strdup(token);
}

/* A persistent room created by CREATOR (memory only: at once); its id
 * in *ID, its token in *TOKEN (may be NULL). */
static void room_made(const char *creator, bool open_to_issuer, gint64 expires_at,
		      struct world *w, char **id, char **token)
{
	struct made o = { 0 };
	const struct rooms_spec spec = { .open_to_issuer = open_to_issuer, .expires_at = expires_at };

	rooms_create(w->rooms, &spec, creator, w->real_us / G_USEC_PER_SEC - 10, made_cb, &o);
	g_assert_nonnull(o.id);
	*id = o.id;
	if (token)
		*token = o.token;
	else
		g_free(o.token);
}

/* --- register --- */

static void test_register_open(void)
{
	struct world *w = world_new(false);
	struct fake *f = fake_new();

	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"role\":\"worker\",\"protocol\":\"2.1\"}");
	json_object *o = next(f, "registered_auth");
	g_assert_true(g_str_has_prefix(str(o, "peer_id"), "peer-"));
	g_assert_cmpstr(str(o, "protocol"), ==, "2.1");
	json_object_put(o);
	g_assert_cmpuint(registry_n_peers(w->reg), ==, 1);
	g_assert_true(logged(w, "peer registered"));
	/* A 2.0 session is told 2.0. */
	struct fake *old = join(w, "r", "old", NULL, true);
	g_assert_cmpint(old->c.proto, ==, PROTOCOL_V20);
	fake_gone(w, f);
	fake_gone(w, old);
	world_free(w);
}

static void test_register_errors(void)
{
	struct world *w = world_new(true);
	struct fake *f = fake_new();
	g_autofree char *room = NULL, *token = NULL, *expired = NULL;

	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\"}");
	expect_error(f, "AUTH_REQUIRED");
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"jwt\":\"forged\"}");
	expect_error(f, "AUTH_FAILED");
	say(w, f, "{\"type\":\"register\",\"room_id\":\"nowhere\",\"jwt\":\"good:alice\"}");
	expect_error(f, "ROOM_NOT_FOUND");
	say(w, f, "{\"type\":\"register\",\"jwt\":\"good:alice\"}"); /* no room_id */
	expect_error(f, "INVALID_MESSAGE");
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"protocol\":\"3\"}");
	expect_error(f, "INVALID_MESSAGE");
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"api_key\":\"k1.wrong\"}");
	expect_error(f, "AUTH_FAILED");

	room_made("jwt:test:alice", false, 0, w, &room, &token);
	room_made("jwt:test:alice", false, w->real_us / G_USEC_PER_SEC - 1, w, &expired, NULL);
	sayf(w, f, "{\"type\":\"register\",\"room_id\":\"%s\",\"jwt\":\"good:alice\"}", expired);
	expect_error(f, "ROOM_EXPIRED");
	/* Bob's JWT is good, but the room is alice's and not open to its
	 * issuer: he needs its token. */
	sayf(w, f, "{\"type\":\"register\",\"room_id\":\"%s\",\"jwt\":\"good:bob\"}", room);
	expect_error(f, "AUTH_FAILED");
	sayf(w, f, "{\"type\":\"register\",\"room_id\":\"%s\",\"peer_id\":\"b\",\"jwt\":\"good:bob\","
		   "\"token\":\"%s\",\"protocol\":\"2.1\"}", room, token);
	json_object_put(next(f, "registered_auth"));
	/* Alice may not take bob's id: another principal. */
	struct fake *a = fake_new();
	sayf(w, a, "{\"type\":\"register\",\"room_id\":\"%s\",\"peer_id\":\"b\",\"jwt\":\"good:alice\"}",
	     room);
	expect_error(a, "PEER_ID_TAKEN");
	g_assert_cmpint(f->close_code, ==, 0);
	fake_gone(w, a);
	fake_gone(w, f);
	world_free(w);
}

static void test_register_room_full(void)
{
	struct world *w = world_new(false);
	w->cfg->max_peers_per_room = 1;
	struct fake *a = join(w, "r", "a", NULL, false), *b = fake_new();

	say(w, b, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"b\"}");
	expect_error(b, "ROOM_FULL");
	fake_gone(w, a);
	fake_gone(w, b);
	world_free(w);
}

/* Registration attempts per address are bounded, on the services' clock. */
static void test_register_rate(void)
{
	struct world *w = world_new(true);
	struct fake *f = fake_new();

	g_assert_cmpint(netaddr_parse("192.0.2.7", 9, &f->c.addr), ==, 0);
	f->c.addr_known = true;
	for (int i = 0; i < 3; i++) {
		say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"jwt\":\"forged\"}");
		expect_error(f, "AUTH_FAILED");
	}
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"jwt\":\"forged\"}");
	expect_error(f, "RATE_LIMITED");
	w->mono_ns += (uint64_t)61 * G_USEC_PER_SEC * 1000; /* a minute on */
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"jwt\":\"forged\"}");
	expect_error(f, "AUTH_FAILED");
	fake_gone(w, f);
	world_free(w);
}

/* A connection that keeps failing to register is closed, 1008, at
 * failed_registrations_per_connection; other refusals do not count. */
static void test_register_guesser_closed(void)
{
	struct world *w = world_new(true);
	struct fake *f = fake_new();

	w->cfg->failed_registrations_per_connection = 2;
	say(w, f, "{\"type\":\"register\",\"room_id\":5}");
	expect_error(f, "INVALID_MESSAGE");
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\",\"jwt\":\"forged\"}");
	expect_error(f, "AUTH_FAILED");
	g_assert_cmpint(f->close_code, ==, 0);
	say(w, f, "{\"type\":\"register\",\"room_id\":\"r\"}");
	expect_error(f, "AUTH_REQUIRED");
	g_assert_cmpint(f->close_code, ==, 1008);
	fake_gone(w, f);
	world_free(w);
}

/* A 2.1 session registered again elsewhere is told and closed 4001. */
static void test_register_replaced(void)
{
	struct world *w = world_new(false);
	struct fake *old = join(w, "r", "p", NULL, false);
	struct fake *fresh = join(w, "r", "p", NULL, false);

	expect_error(old, "SESSION_REPLACED");
	g_assert_cmpint(old->close_code, ==, ROUTER_CLOSE_REPLACED);
	g_assert_true(fresh->c.peer && !old->c.peer);
	fake_gone(w, old); /* its close does not end the new registration */
	g_assert_cmpuint(registry_n_peers(w->reg), ==, 1);
	fake_gone(w, fresh);
	world_free(w);
}

/* A 2.0 session is superseded: kept open, told nothing, sent nothing
 * more, may still send as the peer; a third registration closes it. */
static void test_register_superseded(void)
{
	struct world *w = world_new(false);
	struct fake *alice = join(w, "r", "alice", NULL, true);
	struct fake *first = join(w, "r", "w", NULL, true);
	gint64 subscribed = metrics_get(presence_subscriptions);
	say(w, first, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	json_object_put(next(first, "subscribed"));
	struct fake *second = join(w, "r", "w", NULL, true);

	expect_nothing(first); /* its subscription ended with its registration */
	g_assert_cmpint(metrics_get(presence_subscriptions), ==, subscribed);
	g_assert_true(first->c.superseded);
	g_assert_cmpint(first->close_code, ==, 0);
	/* and it starts none: it is sent nothing more */
	say(w, first, "{\"type\":\"discover_peers\",\"watch\":true}");
	expect_error(first, "NOT_IN_ROOM");
	say(w, first, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	expect_error(first, "NOT_IN_ROOM");
	say(w, first, "{\"type\":\"peer_message\",\"to_peer_id\":\"alice\",\"payload\":1}");
	json_object *o = next(alice, "peer_message");
	g_assert_cmpstr(str(o, "from_peer_id"), ==, "w");
	json_object_put(o);
	say(w, alice, "{\"type\":\"peer_message\",\"to_peer_id\":\"w\",\"payload\":2}");
	json_object_put(next(second, "peer_message"));
	expect_nothing(first);
	struct fake *third = join(w, "r", "w", NULL, true);
	g_assert_cmpint(first->close_code, ==, 1000);
	expect_nothing(first);
	fake_gone(w, first);
	fake_gone(w, second);
	fake_gone(w, third);
	fake_gone(w, alice);
	world_free(w);
}

static void test_register_admin_seat(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", ",\"is_admin\":true", false);
	struct fake *b = fake_new();

	say(w, b, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"b\",\"is_admin\":true}");
	json_object *o = next(b, "admin_conflict");
	g_assert_cmpstr(str(o, "current_admin"), ==, "a");
	json_object_put(o);
	json_object_put(next(b, "registered_auth"));
	fake_gone(w, a);
	fake_gone(w, b);
	world_free(w);
}

/* A token signed with a key its issuer is being asked for waits for
 * that fetch; once it has ended, the register runs again. */
static void test_register_parked(void)
{
	struct world *w = world_new(true);
	g_autofree char *room = NULL;
	room_made("jwt:test:alice", false, 0, w, &room, NULL);
	struct fake *f = fake_new();

	w->fetching = true;
	sayf(w, f, "{\"type\":\"register\",\"room_id\":\"%s\",\"peer_id\":\"a\",\"jwt\":\"kid:alice\"}",
	     room);
	g_assert_nonnull(w->parked);
	expect_nothing(f);
	w->keys_rotated = true;
	struct router_parked *p = g_steal_pointer(&w->parked);
	router_keys_ready(p);
	json_object_put(next(f, "registered_auth"));

	/* Nothing being fetched: the unknown kid is final. */
	struct fake *g = fake_new();
	w->keys_rotated = false;
	w->fetching = false;
	sayf(w, g, "{\"type\":\"register\",\"room_id\":\"%s\",\"jwt\":\"kid:alice\"}", room);
	expect_error(g, "AUTH_FAILED");

	/* A parked register whose connection goes stops waiting. */
	w->fetching = true;
	sayf(w, g, "{\"type\":\"register\",\"room_id\":\"%s\",\"jwt\":\"kid:alice\"}", room);
	g_assert_nonnull(w->parked);
	fake_gone(w, g);
	g_assert_cmpuint(w->waits_cancelled, ==, 1);
	fake_gone(w, f);
	world_free(w);
}

/* --- what registered peers send --- */

static void test_not_registered(void)
{
	struct world *w = world_new(false);
	struct fake *f = fake_new();

	say(w, f, "{\"type\":\"discover_peers\"}");
	expect_error(f, "NOT_IN_ROOM");
	say(w, f, "{\"type\":\"ping\"}");
	json_object_put(next(f, "pong"));
	say(w, f, "not json");
	expect_error(f, "INVALID_JSON");
	say(w, f, "{\"type\":\"no_such_type\"}");
	expect_error(f, "UNKNOWN_MESSAGE_TYPE");
	fake_gone(w, f);
	world_free(w);
}

static void test_discover(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", ",\"role\":\"client\"", false);
	struct fake *b = join(w, "r", "b", ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\"]}", false);
	struct fake *c = join(w, "r", "c", ",\"role\":\"worker\"", false);
	struct fake *other = join(w, "elsewhere", "x", ",\"role\":\"worker\"", false);

	say(w, a, "{\"type\":\"discover_peers\",\"filters\":{\"role\":\"worker\",\"tags\":[\"gpu\"]}}");
	json_object *o = next(a, "peer_list"), *peers;
	g_assert_true(json_object_object_get_ex(o, "peers", &peers));
	g_assert_cmpuint(json_object_array_length(peers), ==, 1);
	g_assert_cmpstr(str(json_object_array_get_idx(peers, 0), "peer_id"), ==, "b");
	json_object_put(o);
	say(w, a, "{\"type\":\"discover_peers\",\"filters\":{\"role\":\"worker\"},\"limit\":1}");
	o = next(a, "peer_list");
	g_assert_true(json_object_object_get_ex(o, "peers", &peers));
	g_assert_cmpuint(json_object_array_length(peers), ==, 1);
	json_object_put(o);
	say(w, a, "{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"x\":{\"$nope\":1}}}}");
	expect_error(a, "INVALID_FILTER");
	say(w, a, "{\"type\":\"discover_peers\",\"from_peer_id\":\"b\"}");
	expect_error(a, "FORBIDDEN");
	/* A large answer still queued: asking again is slowed down. */
	a->c.answer_waiting = true;
	say(w, a, "{\"type\":\"discover_peers\"}");
	expect_error(a, "RATE_LIMITED");
	a->c.answer_waiting = false;
	fake_gone(w, a);
	fake_gone(w, b);
	fake_gone(w, c);
	fake_gone(w, other);
	world_free(w);
}

static void test_update_metadata(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false);

	say(w, a, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"status\":\"busy\"}}}");
	json_object *o = next(a, "metadata_updated");
	g_assert_cmpstr(str(o, "peer_id"), ==, "a");
	json_object_put(o);
	say(w, a, "{\"type\":\"update_metadata\",\"peer_id\":\"z\",\"metadata\":{}}");
	expect_error(a, "FORBIDDEN");
	say(w, a, "{\"type\":\"update_metadata\"}");
	expect_error(a, "INVALID_MESSAGE");
	fake_gone(w, a);
	world_free(w);
}

/* peer_message, mesh_connect, mesh_answer, ice_candidate. */
static void test_route(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false), *b = join(w, "r", "b", NULL, false);
	struct fake *x = join(w, "elsewhere", "x", NULL, false);
	static const struct {
		const char *text, *arrives;
	} cases[] = {
		{ "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":{\"n\":1}}", "peer_message" },
		{ "{\"type\":\"mesh_connect\",\"target_peer_id\":\"b\",\"offer\":\"o\"}", "mesh_offer" },
		{ "{\"type\":\"mesh_answer\",\"target_peer_id\":\"b\",\"answer\":\"a\"}", "mesh_answer" },
		{ "{\"type\":\"ice_candidate\",\"target_peer_id\":\"b\",\"candidate\":\"c\"}", "ice_candidate" },
	};

	for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
		say(w, a, cases[i].text);
		json_object *o = next(b, cases[i].arrives);
		g_assert_cmpstr(str(o, "from_peer_id"), ==, "a");
		json_object_put(o);
		expect_nothing(a);
	}
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"nobody\",\"payload\":1}");
	expect_error(a, "PEER_NOT_FOUND");
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"x\",\"payload\":1}");
	expect_error(a, "PEER_NOT_IN_ROOM");
	say(w, a, "{\"type\":\"peer_message\",\"from_peer_id\":\"b\",\"to_peer_id\":\"b\",\"payload\":1}");
	expect_error(a, "FORBIDDEN");
	b->full = true;
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":1}");
	expect_error(a, "DELIVERY_FAILED");
	b->full = false;
	fake_gone(w, a);
	fake_gone(w, b);
	fake_gone(w, x);
	world_free(w);
}

/* offer, answer, candidate: forwarded whole, sender stamped. */
static void test_signal(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", ",\"role\":\"client\"", false);
	struct fake *b = join(w, "r", "b", NULL, false);
	static const char *const types[] = { "offer", "answer", "candidate" };

	for (unsigned i = 0; i < G_N_ELEMENTS(types); i++) {
		sayf(w, a, "{\"type\":\"%s\",\"target\":\"b\",\"sdp\":\"v=0\",\"role\":\"client\"}", types[i]);
		json_object *o = next(b, types[i]), *v;
		g_assert_cmpstr(str(o, "sender"), ==, "a");
		g_assert_cmpstr(str(o, "sender_role"), ==, "client");
		g_assert_cmpstr(str(o, "sdp"), ==, "v=0");
		g_assert_false(json_object_object_get_ex(o, "role", &v));
		json_object_put(o);
	}
	say(w, a, "{\"type\":\"offer\",\"target\":\"nobody\",\"sdp\":\"v=0\"}");
	expect_error(a, "PEER_NOT_FOUND");
	say(w, a, "{\"type\":\"offer\",\"target\":\"b\",\"sender\":\"b\",\"sdp\":\"v=0\"}");
	expect_error(a, "FORBIDDEN");
	fake_gone(w, a);
	fake_gone(w, b);
	world_free(w);
}

/* Relayed types are forwarded or dropped, never answered with an error. */
static void test_relay(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, true), *b = join(w, "r", "b", NULL, true);

	say(w, a, "{\"type\":\"job_status\",\"to_peer_id\":\"b\",\"job_id\":\"j\"}");
	json_object *o = next(b, "job_status");
	g_assert_cmpstr(str(o, "sender"), ==, "a");
	json_object_put(o);
	say(w, a, "{\"type\":\"job_status\",\"to_peer_id\":\"nobody\",\"job_id\":\"j\"}");
	expect_nothing(a);
	fake_gone(w, a);
	fake_gone(w, b);
	world_free(w);
}

/* Once registered, a 2.0 session is told only what the original server
 * told; the rest is counted and logged, and a 2.1 session is told. */
static void test_v20_untold(void)
{
	struct world *w = world_new(false);
	struct fake *old = join(w, "r", "old", NULL, true), *new = join(w, "r", "new", NULL, false);

	say(w, old, "{\"type\":\"offer\",\"target\":\"nobody\",\"sdp\":\"v=0\"}");
	expect_nothing(old);
	g_assert_true(logged(w, "not told to a v2.0 session (offer)"));
	say(w, new, "{\"type\":\"offer\",\"target\":\"nobody\",\"sdp\":\"v=0\"}");
	expect_error(new, "PEER_NOT_FOUND");
	/* What v2.0 did send: a peer_message to nobody. */
	say(w, old, "{\"type\":\"peer_message\",\"to_peer_id\":\"nobody\",\"payload\":1}");
	expect_error(old, "PEER_NOT_FOUND");
	fake_gone(w, old);
	fake_gone(w, new);
	world_free(w);
}

/* --- create_room, with the room service faked --- */

static void test_create_room(void)
{
	struct world *w = world_new(true);
	g_autofree char *room = NULL;
	room_made("jwt:test:alice", true, 0, w, &room, NULL);
	struct fake *a = fake_new();
	sayf(w, a, "{\"type\":\"register\",\"room_id\":\"%s\",\"peer_id\":\"a\",\"jwt\":\"good:alice\","
		   "\"protocol\":\"2.1\"}", room);
	json_object_put(next(a, "registered_auth"));

	say(w, a, "{\"type\":\"create_room\",\"expires_in\":60}");
	g_assert_cmpuint(w->creates, ==, 1);
	g_assert_cmpstr(w->create_by, ==, "jwt:test:alice");
	expect_nothing(a); /* until the store has it */
	say(w, a, "{\"type\":\"create_room\"}");
	expect_error(a, "INVALID_MESSAGE"); /* one at a time */
	const struct store_room made = { .id = "new-room", .expires_at = 1700000060 };
	router_room_created(0, &made, "tok", NULL, g_steal_pointer(&w->pending));
	json_object *o = next(a, "room_created");
	g_assert_cmpstr(str(o, "room_id"), ==, "new-room");
	g_assert_cmpstr(str(o, "token"), ==, "tok");
	json_object_put(o);

	say(w, a, "{\"type\":\"create_room\"}");
	router_room_created(-EAGAIN, NULL, NULL, "the store is busy", g_steal_pointer(&w->pending));
	expect_error(a, "SERVICE_UNAVAILABLE");
	w->create_rc = -EDQUOT;
	say(w, a, "{\"type\":\"create_room\"}");
	expect_error(a, "RATE_LIMITED");
	w->create_rc = -EINVAL;
	say(w, a, "{\"type\":\"create_room\"}");
	expect_error(a, "INVALID_MESSAGE");
	w->create_rc = 0;

	/* The asker goes first: its completion tells nobody. */
	say(w, a, "{\"type\":\"create_room\"}");
	struct router_pending *p = g_steal_pointer(&w->pending);
	fake_gone(w, a);
	router_room_created(0, &made, "tok", NULL, p);
	world_free(w);
}

/* With authentication on, only a JWT's session creates rooms. */
static void test_create_room_needs_jwt(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false);

	w->auth_required = true; /* a reload switched it on */
	say(w, a, "{\"type\":\"create_room\"}");
	expect_error(a, "AUTH_REQUIRED");
	g_assert_cmpuint(w->creates, ==, 0);
	fake_gone(w, a);
	world_free(w);
}

/* --- what the edges tell the router --- */

static void test_close_room(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false), *b = join(w, "r", "b", NULL, true);
	struct fake *x = join(w, "elsewhere", "x", NULL, false);

	g_assert_cmpuint(router_close_room(w->r, "r", "expired"), ==, 2);
	struct fake *both[] = { a, b };
	for (unsigned i = 0; i < 2; i++) {
		json_object *o = next(both[i], "room_closed");
		g_assert_cmpstr(str(o, "reason"), ==, "expired");
		json_object_put(o);
		g_assert_cmpint(both[i]->close_code, ==, 1000);
		g_assert_null(both[i]->c.peer);
	}
	g_assert_cmpint(x->close_code, ==, 0);
	g_assert_cmpuint(router_close_room(w->r, "no-such-room", "deleted"), ==, 0);
	fake_gone(w, a);
	fake_gone(w, b);
	fake_gone(w, x);
	world_free(w);
}

static void test_close_principal(void)
{
	struct world *w = world_new(true);
	g_autofree char *room = NULL;
	room_made("jwt:test:alice", true, 0, w, &room, NULL);
	struct fake *a = fake_new(), *b = fake_new();
	sayf(w, a, "{\"type\":\"register\",\"room_id\":\"%s\",\"jwt\":\"good:alice\",\"protocol\":\"2.1\"}", room);
	sayf(w, b, "{\"type\":\"register\",\"room_id\":\"%s\",\"jwt\":\"good:bob\",\"protocol\":\"2.1\"}", room);
	json_object_put(next(a, "registered_auth"));
	json_object_put(next(b, "registered_auth"));

	g_assert_cmpuint(router_close_principal(w->r, "jwt:test:alice", "Token revoked"), ==, 1);
	expect_error(a, "AUTH_FAILED");
	g_assert_cmpint(a->close_code, ==, 1008);
	expect_nothing(b);
	g_assert_cmpint(b->close_code, ==, 0);
	fake_gone(w, a);
	fake_gone(w, b);
	world_free(w);
}

static void test_rate_limited(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false);

	router_rate_limited(w->r, &a->c);
	expect_error(a, "RATE_LIMITED");
	fake_gone(w, a);
	world_free(w);
}

/* 2.1 is told the server is stopping; a v2.0 session only gets the 1001. */
static void test_shutting_down(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false), *old = join(w, "r", "old", NULL, true);

	router_shutting_down(w->r, &a->c);
	expect_error(a, "SERVER_SHUTTING_DOWN");
	router_shutting_down(w->r, &old->c);
	expect_nothing(old);
	fake_gone(w, a);
	fake_gone(w, old);
	world_free(w);
}

/* A closing connection's input is ignored; its disconnect ends its peer. */
static void test_closing_and_disconnect(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false), *b = join(w, "r", "b", NULL, false);

	a->c.closing = true;
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":1}");
	expect_nothing(b);
	fake_gone(w, a);
	g_assert_cmpuint(registry_n_peers(w->reg), ==, 1);
	fake_gone(w, b);
	g_assert_cmpuint(registry_n_rooms(w->reg), ==, 0);
	world_free(w);
}

/* The cases above, together, saw every error code there is. */
static void test_every_error_code(void)
{
	for (int c = 0; c < ERR__COUNT; c++)
		if (!seen[c])
			g_error("no case saw %s", protocol_code_name(c));
}

/* --- [cluster]: the router with other instances (router_cluster_*) --- */

static void remote(struct world *w, const char *room, const char *peer, const char *instance,
		   uint64_t epoch, const char *meta)
{
	const struct router_remote_peer p = { .room = room, .peer = peer, .instance = instance, .role = "worker",
					      .meta = meta, .connected_at = 1700000000123, .epoch = epoch };
	router_cluster_peer_upsert(w->r, &p);
}

/* The first register into a room waits for its view; registered_auth
 * and discovery then show the other instances' peers like its own. */
/* --- presence and watches (core/events.c, core/watch.c) --- */

/* The next message is event TYPE about PEER, of watch WATCH (NULL: a
 * presence event, which has no watch_id); peer_left's reason is WHY. */
static void expect_event(struct fake *f, const char *type, const char *watch, const char *peer,
			 const char *why)
{
	json_object *o = next(f, type), *p;

	g_assert_cmpstr(str(o, "watch_id"), ==, watch);
	if (strcmp(type, "peer_left") == 0) {
		g_assert_cmpstr(str(o, "peer_id"), ==, peer);
		g_assert_cmpstr(str(o, "reason"), ==, why);
	} else {
		g_assert_true(json_object_object_get_ex(o, "peer", &p));
		g_assert_cmpstr(str(p, "peer_id"), ==, peer);
		g_assert_nonnull(str(p, "role"));
		g_assert_nonnull(str(p, "connected_at"));
		g_assert_true(json_object_object_get_ex(p, "metadata", NULL));
		/* public metadata only */
		g_assert_null(strstr(json_object_to_json_string(p), "_secret"));
	}
	json_object_put(o);
}

/* Starts a watch of F on FILTERS; returns its id (g_free). */
static char *watch(struct world *w, struct fake *f, const char *filters, unsigned listed)
{
	sayf(w, f, "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":%s}", filters);
	json_object *o = next(f, "peer_list"), *count;
	g_assert_true(json_object_object_get_ex(o, "count", &count));
	g_assert_cmpint(json_object_get_int(count), ==, listed);
	char *id = g_strdup(str(o, "watch_id"));
	g_assert_nonnull(id);
	json_object_put(o);
	return id;
}

/* Presence: opt-in by subscribe or register "events"; every way a peer
 * leaves has its reason; never about oneself; old clients see nothing. */
static void test_presence(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false);
	struct fake *old = join(w, "r", "old", NULL, true); /* a v2.0 client */
	struct fake *b = join(w, "r", "b", ",\"events\":[\"presence\"]", false);
	json_object *o;

	say(w, a, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	o = next(a, "subscribed");
	json_object_put(o);
	g_assert_cmpint(metrics_get(presence_subscriptions), ==, 2);
	struct fake *c = join(w, "r", "c",
			      ",\"role\":\"worker\",\"metadata\":{\"_secret\":1,\"properties\":{\"x\":1,\"_secret\":2}}",
			      false);
	expect_event(a, "peer_joined", NULL, "c", NULL);
	expect_event(b, "peer_joined", NULL, "c", NULL);
	say(w, c, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"x\":2}}}");
	json_object_put(next(c, "metadata_updated"));
	expect_event(a, "peer_updated", NULL, "c", NULL);
	expect_event(b, "peer_updated", NULL, "c", NULL);
	expect_nothing(c); /* never about itself */
	c->c.timed_out = true;
	fake_gone(w, c);
	expect_event(a, "peer_left", NULL, "c", "timeout");
	expect_event(b, "peer_left", NULL, "c", "timeout");

	/* replaced: left, then the new session joins */
	struct fake *d = join(w, "r", "d", NULL, false);
	expect_event(a, "peer_joined", NULL, "d", NULL);
	expect_event(b, "peer_joined", NULL, "d", NULL);
	struct fake *d2 = join(w, "r", "d", NULL, false);
	expect_error(d, "SESSION_REPLACED");
	expect_event(a, "peer_left", NULL, "d", "replaced");
	expect_event(a, "peer_joined", NULL, "d", NULL);
	expect_event(b, "peer_left", NULL, "d", "replaced");
	expect_event(b, "peer_joined", NULL, "d", NULL);
	/* moved to another room: left; and its own subscription ended */
	say(w, b, "{\"type\":\"register\",\"room_id\":\"other\",\"peer_id\":\"b\",\"protocol\":\"2.1\"}");
	json_object_put(next(b, "registered_auth"));
	expect_event(a, "peer_left", NULL, "b", "left");
	g_assert_cmpint(metrics_get(presence_subscriptions), ==, 1);
	fake_gone(w, d2);
	expect_event(a, "peer_left", NULL, "d", "disconnected");
	expect_nothing(b);
	/* unsubscribed: nothing more */
	say(w, a, "{\"type\":\"unsubscribe\",\"events\":[\"presence\"]}");
	json_object_put(next(a, "unsubscribed"));
	struct fake *e = join(w, "r", "e", NULL, false);
	expect_nothing(a);
	/* bad requests are told, even to a v2.0 session */
	say(w, old, "{\"type\":\"subscribe\",\"events\":[\"weather\"]}");
	expect_error(old, "INVALID_MESSAGE");
	say(w, old, "{\"type\":\"subscribe\",\"events\":[]}");
	expect_error(old, "INVALID_MESSAGE");
	say(w, old, "{\"type\":\"subscribe\"}");
	expect_error(old, "INVALID_MESSAGE");
	expect_nothing(old); /* and it saw nothing of the others */
	g_assert_cmpint(old->close_code, ==, 0);
	fake_gone(w, e);
	fake_gone(w, a);
	fake_gone(w, b);
	fake_gone(w, d);
	fake_gone(w, old);
	g_assert_cmpint(metrics_get(presence_subscriptions), ==, 0);
	world_free(w);
}

/* A watched discover: the set's entries and exits, its members' changes. */
static void test_watch(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", NULL, false);
	struct fake *b = join(w, "r", "b", ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"gb\":16,\"status\":\"available\"}}",
			      false);
	struct fake *c = join(w, "r", "c", ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"gb\":24,\"status\":\"available\"}}",
			      false);
	const char *f = "{\"role\":\"worker\",\"properties\":{\"gb\":{\"$gte\":8},\"status\":\"available\"}}";
	gint64 watches = metrics_get(watches);

	/* limit bounds the first answer only */
	sayf(w, a, "{\"type\":\"discover_peers\",\"watch\":true,\"limit\":1,\"filters\":%s}", f);
	json_object *o = next(a, "peer_list");
	g_assert_cmpstr(str(o, "count"), ==, "1");
	g_autofree char *w1 = g_strdup(str(o, "watch_id"));
	json_object_put(o);
	g_assert_cmpint(metrics_get(watches), ==, watches + 1);
	g_autofree char *w2 = watch(w, a, "{\"role\":\"client\"}", 0);
	g_assert_cmpstr(w1, !=, w2);

	struct fake *d = join(w, "r", "d", ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"gb\":4,\"status\":\"available\"}}",
			      false);
	expect_nothing(a); /* does not match */
	say(w, d, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"gb\":12}}}");
	expect_event(a, "peer_joined", w1, "d", NULL); /* now matches */
	say(w, d, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"jobs\":3}}}");
	expect_event(a, "peer_updated", w1, "d", NULL); /* a member changed */
	say(w, d, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"status\":\"busy\"}}}");
	expect_event(a, "peer_left", w1, "d", "no_longer_matches");
	say(w, d, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"jobs\":4}}}");
	expect_nothing(a); /* outside the set */
	say(w, c, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"gb\":32}}}");
	expect_event(a, "peer_updated", w1, "c", NULL); /* not in the first answer, in the set */
	fake_gone(w, c);
	expect_event(a, "peer_left", w1, "c", "disconnected");
	struct fake *e = join(w, "r", "e", ",\"role\":\"client\"", false);
	expect_event(a, "peer_joined", w2, "e", NULL); /* the other watch's */
	expect_nothing(a);

	/* unwatch; unknown ids and bad requests are errors, never a close */
	sayf(w, a, "{\"type\":\"unwatch\",\"watch_id\":\"%s\"}", w1);
	o = next(a, "unwatched");
	g_assert_cmpstr(str(o, "watch_id"), ==, w1);
	json_object_put(o);
	say(w, b, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"gb\":64}}}");
	json_object_put(next(b, "metadata_updated"));
	expect_nothing(a);
	sayf(w, a, "{\"type\":\"unwatch\",\"watch_id\":\"%s\"}", w1);
	o = next(a, "error");
	g_assert_cmpstr(str(o, "code"), ==, "WATCH_NOT_FOUND");
	g_assert_cmpstr(str(o, "watch_id"), ==, w1);
	seen[ERR_WATCH_NOT_FOUND] = true;
	json_object_put(o);
	say(w, a, "{\"type\":\"unwatch\"}");
	expect_error(a, "INVALID_MESSAGE");
	say(w, a, "{\"type\":\"unwatch\",\"watch_id\":7}");
	expect_error(a, "INVALID_MESSAGE");
	say(w, a, "{\"type\":\"discover_peers\",\"watch\":\"yes\"}");
	expect_error(a, "INVALID_MESSAGE");
	say(w, a, "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":{\"properties\":{\"x\":{\"$near\":1}}}}");
	expect_error(a, "INVALID_FILTER");
	g_assert_cmpint(metrics_get(watches), ==, watches + 1); /* w2 alone */
	g_assert_cmpint(a->close_code, ==, 0);

	/* the bounds: a watch keeps its filter, as large as metadata at most */
	w->cfg->max_metadata_bytes = 64;
	say(w, a, "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":{\"properties\":{\"status\":\"a very long status the watch would keep\"}}}");
	expect_error(a, "INVALID_FILTER");
	w->cfg->max_metadata_bytes = 16384;
	w->cfg->watches_per_session = 2;
	g_autofree char *w3 = watch(w, a, "{}", 3);
	say(w, a, "{\"type\":\"discover_peers\",\"watch\":true}");
	expect_error(a, "RATE_LIMITED");
	w->cfg->watches_per_room = 3;
	g_autofree char *w4 = watch(w, b, "{}", 3);
	say(w, e, "{\"type\":\"discover_peers\",\"watch\":true}");
	expect_error(e, "RATE_LIMITED");
	g_assert_cmpint(metrics_get(watches), ==, watches + 3);
	say(w, e, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}"); /* presence counts too */
	expect_error(e, "RATE_LIMITED");
	/* a watcher that leaves takes its watches with it */
	fake_gone(w, b);
	expect_event(a, "peer_left", w3, "b", "disconnected");
	g_assert_cmpint(metrics_get(watches), ==, watches + 2);
	fake_gone(w, a);
	fake_gone(w, d);
	fake_gone(w, e);
	g_assert_cmpint(metrics_get(watches), ==, watches);
	world_free(w);
}

/* A watcher too slow for its events loses the watch, told why, and
 * keeps its connection. */
static void test_watch_slow(void)
{
	struct world *w = world_new(false);
	struct fake *a = join(w, "r", "a", ",\"events\":[\"presence\"]", false);
	g_autofree char *w1 = watch(w, a, "{}", 0);
	guint64 lost = metrics_get(watches_lost);

	a->full = true;
	struct fake *b = join(w, "r", "b", NULL, false);
	a->full = false;
	json_object *o = next(a, "watch_lost");
	g_assert_cmpstr(str(o, "reason"), ==, "queue_full");
	g_assert_nonnull(strstr(json_object_to_json_string(o), "presence"));
	json_object_put(o);
	o = next(a, "watch_lost");
	g_assert_cmpstr(str(o, "watch_id"), ==, w1);
	json_object_put(o);
	g_assert_cmpuint(metrics_get(watches_lost), ==, lost + 2);
	g_assert_cmpint(a->close_code, ==, 0);
	fake_gone(w, b);
	expect_nothing(a); /* both ended */
	say(w, a, "{\"type\":\"ping\"}");
	json_object_put(next(a, "pong"));
	fake_gone(w, a);
	world_free(w);
}

/* Other instances' peers give the same events, their reasons included. */
static void test_watch_cluster(void)
{
	struct world *w = world_new_clustered();
	struct fake *a = join(w, "r", "a", ",\"events\":[\"presence\"]", false);
	g_autofree char *w1 = watch(w, a, "{\"tags\":[\"gpu\"]}", 0);

	remote(w, "r", "rb", "b", 7, "{\"tags\":[\"gpu\"]}");
	expect_event(a, "peer_joined", NULL, "rb", NULL);
	expect_event(a, "peer_joined", w1, "rb", NULL);
	remote(w, "r", "rb", "b", 7, "{\"tags\":[\"cpu\"]}");
	expect_event(a, "peer_updated", NULL, "rb", NULL);
	expect_event(a, "peer_left", w1, "rb", "no_longer_matches");
	remote(w, "r", "rb", "c", 9, "{\"tags\":[\"gpu\"]}"); /* taken over elsewhere */
	expect_event(a, "peer_left", NULL, "rb", "replaced");
	expect_event(a, "peer_joined", NULL, "rb", NULL);
	expect_event(a, "peer_joined", w1, "rb", NULL);
	router_cluster_peer_remove(w->r, "r", "rb", "c", PROTOCOL_GONE_TIMEOUT);
	expect_event(a, "peer_left", NULL, "rb", "timeout");
	expect_event(a, "peer_left", w1, "rb", "timeout");
	expect_nothing(a);
	fake_gone(w, a);
	world_free(w);
}

static void test_cluster_view(void)
{
	struct world *w = world_new_clustered();
	struct fake *a = fake_new();
	json_object *o, *v;

	w->watch_rc = 0; /* loading */
	say(w, a, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"a\",\"protocol\":\"2.1\"}");
	expect_nothing(a);
	remote(w, "r", "rb", "b", 7, "{\"tags\":[\"gpu\"],\"properties\":{\"mem\":16}}");
	remote(w, "r", "rc", "c", 8, NULL);
	w->watch_rc = 1;
	router_cluster_view_ready(w->r, "r");
	o = next(a, "registered_auth");
	g_assert_true(json_object_object_get_ex(o, "peer_list", &v));
	g_assert_cmpstr(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), ==, "[\"rb\",\"rc\"]");
	g_assert_true(json_object_object_get_ex(o, "peer_metadata", &v));
	g_assert_nonnull(strstr(json_object_to_json_string(v), "gpu"));
	json_object_put(o);
	g_assert_cmpuint(w->announced, ==, 1);
	/* the filter language over remote peers, as over local ones */
	say(w, a, "{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"mem\":{\"$gte\":8}}}}");
	o = next(a, "peer_list");
	g_assert_cmpstr(str(o, "count"), ==, "1");
	g_assert_nonnull(strstr(json_object_to_json_string(o), "\"rb\""));
	g_assert_nonnull(strstr(json_object_to_json_string(o), "1700000000.123"));
	json_object_put(o);
	/* a metadata change of a remote peer, and its leaving */
	remote(w, "r", "rc", "c", 8, "{\"tags\":[\"gpu\"]}");
	router_cluster_peer_remove(w->r, "r", "rb", "b", PROTOCOL_GONE_DISCONNECTED);
	router_cluster_peer_remove(w->r, "r", "rc", "elsewhere", PROTOCOL_GONE_DISCONNECTED); /* not its instance: kept */
	say(w, a, "{\"type\":\"discover_peers\",\"filters\":{\"tags\":[\"gpu\"]}}");
	o = next(a, "peer_list");
	g_assert_cmpstr(str(o, "count"), ==, "1");
	g_assert_nonnull(strstr(json_object_to_json_string(o), "\"rc\""));
	json_object_put(o);
	say(w, a, "{\"type\":\"update_metadata\",\"metadata\":{\"tags\":[\"x\"]}}");
	json_object_put(next(a, "metadata_updated"));
	g_assert_cmpuint(w->updated, ==, 1);
	/* the last peer of ours goes: withdrawn, the view let go with its peers */
	fake_gone(w, a);
	g_assert_cmpuint(w->withdrawn->len, ==, 1);
	g_assert_cmpuint(w->unwatched, ==, 1);
	g_assert_cmpuint(registry_n_rooms(w->reg), ==, 0);
	world_free(w);
}

/* Routed types to a peer of another instance are forwarded, the frame
 * as the target gets it; failures come back as DELIVERY_FAILED. */
static void test_cluster_forward(void)
{
	struct world *w = world_new_clustered();
	struct fake *a = join(w, "r", "a", NULL, false), *b = join(w, "r", "b", NULL, false);

	remote(w, "r", "rb", "inst-b", 7, NULL);
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"rb\",\"payload\":{\"n\":1}}");
	say(w, a, "{\"type\":\"offer\",\"target\":\"rb\",\"sdp\":\"v=0\"}");
	g_assert_cmpuint(w->forwarded->len, ==, 2);
	g_assert_true(g_str_has_prefix(g_ptr_array_index(w->forwarded, 0), "inst-b 7 a {\"type\":\"peer_message\""));
	g_assert_nonnull(strstr(g_ptr_array_index(w->forwarded, 1), "\"sender\":\"a\""));
	/* the same frame a local target gets, but for its id */
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":{\"n\":1}}");
	g_autofree char *local = g_queue_pop_head(&b->sent);
	g_autofree char *far = g_strdup(strchr(strchr(strchr(g_ptr_array_index(w->forwarded, 0), ' ') + 1, ' ') + 1, ' ') + 1);
	char *t = strstr(far, "\"rb\"");
	memmove(t + 1, t + 2, strlen(t + 2) + 1); /* "rb" -> "b" */
	g_assert_cmpstr(far, ==, local);
	g_assert_cmpuint(w->forwarded->len, ==, 2); /* a local target: nothing forwarded */
	expect_nothing(a);
	w->forward_rc = -ENOTCONN;
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"rb\",\"payload\":1}");
	expect_error(a, "DELIVERY_FAILED");
	w->forward_rc = 0;
	router_cluster_delivery_failed(w->r, "a", "rb", MSG_PEER_MESSAGE, "its queue is full");
	expect_error(a, "DELIVERY_FAILED");
	router_cluster_delivery_failed(w->r, "gone", "rb", MSG_PEER_MESSAGE, "its queue is full"); /* nobody to tell */
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"nobody\",\"payload\":1}");
	expect_error(a, "PEER_NOT_FOUND");
	expect_nothing(a);
	fake_gone(w, a);
	fake_gone(w, b);
	world_free(w);
}

/* Another instance takes our peer's id: replaced, not withdrawn; a
 * message for our session arrives as its bytes, or is refused. */
static void test_cluster_replaced_and_deliver(void)
{
	struct world *w = world_new_clustered();
	struct fake *a = join(w, "r", "a", NULL, false), *k = join(w, "r", "k", NULL, false);
	const char frame[] = "{\"type\":\"peer_message\",\"from_peer_id\":\"x\",\"payload\":1}";

	/* epochs: a 1001, k 1002 */
	g_assert_cmpint(router_cluster_deliver(w->r, "k", 1002, frame, strlen(frame)), ==, 0);
	g_autofree char *got = g_queue_pop_head(&k->sent);
	g_assert_cmpstr(got, ==, frame);
	g_assert_cmpint(router_cluster_deliver(w->r, "k", 1001, frame, strlen(frame)), ==, -ENOENT);
	k->full = true;
	g_assert_cmpint(router_cluster_deliver(w->r, "k", 1002, frame, strlen(frame)), ==, -ENOBUFS);
	k->full = false;

	router_cluster_replaced(w->r, "r", "a", 999); /* an older session: nothing */
	expect_nothing(a);
	router_cluster_replaced(w->r, "r", "a", 1001);
	expect_error(a, "SESSION_REPLACED");
	g_assert_cmpint(a->close_code, ==, ROUTER_CLOSE_REPLACED);
	g_assert_cmpuint(w->withdrawn->len, ==, 0);
	remote(w, "r", "a", "b", 5000, NULL);
	/* its late close evicts nothing */
	fake_gone(w, a);
	g_assert_cmpuint(w->withdrawn->len, ==, 0);
	say(w, k, "{\"type\":\"peer_message\",\"to_peer_id\":\"a\",\"payload\":1}");
	g_assert_cmpuint(w->forwarded->len, ==, 1);
	/* a newer session of k elsewhere, told as an upsert first */
	remote(w, "r", "k", "b", 6000, NULL);
	expect_error(k, "SESSION_REPLACED");
	g_assert_cmpint(k->close_code, ==, ROUTER_CLOSE_REPLACED);
	fake_gone(w, k);
	g_assert_cmpuint(w->withdrawn->len, ==, 0);
	world_free(w);
}

/* A register waits for its claim's answer, then ends as on one instance:
 * registered (the admin seat as answered), PEER_ID_TAKEN or ROOM_FULL;
 * an id another principal holds in the view is refused at once. */
static void test_cluster_claim(void)
{
	struct world *w = world_new_clustered();
	struct fake *a = fake_new(), *b = fake_new(), *c = fake_new(), *d = fake_new(), *e = fake_new();
	json_object *o;

	w->claims_answered = 1;
	say(w, a, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"a\",\"protocol\":\"2.1\"}");
	expect_nothing(a);
	g_assert_false(w->claim_admin);
	g_assert_cmpuint(w->claim_max, ==, w->cfg->max_peers_per_room);
	/* not registered until answered */
	say(w, a, "{\"type\":\"peer_message\",\"to_peer_id\":\"a\",\"payload\":1}");
	expect_error(a, "NOT_IN_ROOM");
	router_cluster_claimed(w->r, "r", "a", 999, ROUTER_CLAIMED, NULL); /* not its epoch */
	expect_nothing(a);
	router_cluster_claimed(w->r, "r", "a", 1001, ROUTER_CLAIMED, NULL);
	json_object_put(next(a, "registered_auth"));

	/* the seat is another instance's */
	say(w, b, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"b\",\"protocol\":\"2.1\",\"is_admin\":true}");
	g_assert_true(w->claim_admin);
	router_cluster_claimed(w->r, "r", "b", 1002, ROUTER_CLAIMED, "far");
	o = next(b, "admin_conflict");
	g_assert_cmpstr(str(o, "current_admin"), ==, "far");
	json_object_put(o);
	json_object_put(next(b, "registered_auth"));

	say(w, c, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"c\",\"protocol\":\"2.1\"}");
	/* the winner's news may come before our claim's answer: the
	 * answer decides (not SESSION_REPLACED), then the news applies */
	remote(w, "r", "c", "far", 5000, "{\"tags\":[\"won\"]}");
	expect_nothing(c);
	router_cluster_claimed(w->r, "r", "c", 1003, ROUTER_CLAIM_TAKEN, NULL);
	expect_error(c, "PEER_ID_TAKEN");
	say(w, a, "{\"type\":\"discover_peers\",\"filters\":{\"tags\":[\"won\"]}}");
	o = next(a, "peer_list");
	g_assert_nonnull(strstr(json_object_to_json_string(o), "\"c\""));
	json_object_put(o);
	say(w, d, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"d\",\"protocol\":\"2.1\"}");
	router_cluster_claimed(w->r, "r", "d", 1004, ROUTER_CLAIM_FULL, NULL);
	expect_error(d, "ROOM_FULL");
	g_assert_cmpuint(w->withdrawn->len, ==, 0); /* Redis holds neither */
	say(w, d, "{\"type\":\"discover_peers\"}");
	expect_error(d, "NOT_IN_ROOM");

	/* another principal's id, as the view shows it: no claim at all */
	const struct router_remote_peer rp = { .room = "r", .peer = "owned", .instance = "b", .role = "worker",
					       .principal = "some-other-tag", .epoch = 7 };
	router_cluster_peer_upsert(w->r, &rp);
	unsigned announced = w->announced;
	say(w, e, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"owned\",\"protocol\":\"2.1\"}");
	expect_error(e, "PEER_ID_TAKEN");
	g_assert_cmpuint(w->announced, ==, announced);

	/* a far failure names the field of its type, as a near one does */
	router_cluster_delivery_failed(w->r, "a", "owned", MSG_OFFER, "its queue is full");
	o = next(a, "error");
	g_assert_cmpstr(str(o, "code"), ==, "DELIVERY_FAILED");
	g_assert_cmpstr(str(o, "target"), ==, "owned");
	g_assert_null(str(o, "to_peer_id"));
	json_object_put(o);
	router_cluster_delivery_failed(w->r, "a", "owned", MSG_MESH_CONNECT, "its queue is full");
	o = next(a, "error");
	g_assert_cmpstr(str(o, "target_peer_id"), ==, "owned");
	json_object_put(o);
	router_cluster_delivery_failed(w->r, "a", "owned", MSG_ERROR, "gone"); /* a relay: never answered */
	expect_nothing(a);
	fake_gone(w, a);
	fake_gone(w, b);
	fake_gone(w, c);
	fake_gone(w, d);
	fake_gone(w, e);
	world_free(w);
}

/* max_peers_per_room counts the room's view: other instances' peers too. */
static void test_cluster_room_full(void)
{
	struct world *w = world_new_clustered();
	struct fake *a = fake_new();

	w->cfg->max_peers_per_room = 2;
	w->watch_rc = 0;
	say(w, a, "{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"a\",\"protocol\":\"2.1\"}");
	remote(w, "r", "x", "b", 1, NULL);
	remote(w, "r", "y", "c", 2, NULL);
	router_cluster_view_ready(w->r, "r");
	expect_error(a, "ROOM_FULL");
	/* refused, and no other register waits: the view is let go */
	g_assert_cmpuint(w->unwatched, ==, 1);
	g_assert_cmpuint(registry_n_rooms(w->reg), ==, 0);
	fake_gone(w, a);
	world_free(w);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/router/register/open", test_register_open);
	g_test_add_func("/router/register/errors", test_register_errors);
	g_test_add_func("/router/register/room-full", test_register_room_full);
	g_test_add_func("/router/register/rate", test_register_rate);
	g_test_add_func("/router/register/guesser-closed", test_register_guesser_closed);
	g_test_add_func("/router/register/replaced", test_register_replaced);
	g_test_add_func("/router/register/superseded", test_register_superseded);
	g_test_add_func("/router/register/admin-seat", test_register_admin_seat);
	g_test_add_func("/router/register/parked", test_register_parked);
	g_test_add_func("/router/message/not-registered", test_not_registered);
	g_test_add_func("/router/message/discover", test_discover);
	g_test_add_func("/router/message/update-metadata", test_update_metadata);
	g_test_add_func("/router/message/route", test_route);
	g_test_add_func("/router/message/signal", test_signal);
	g_test_add_func("/router/message/relay", test_relay);
	g_test_add_func("/router/message/v20-untold", test_v20_untold);
	g_test_add_func("/router/create-room/completions", test_create_room);
	g_test_add_func("/router/create-room/needs-jwt", test_create_room_needs_jwt);
	g_test_add_func("/router/edge/close-room", test_close_room);
	g_test_add_func("/router/edge/close-principal", test_close_principal);
	g_test_add_func("/router/edge/rate-limited", test_rate_limited);
	g_test_add_func("/router/edge/shutting-down", test_shutting_down);
	g_test_add_func("/router/edge/closing-and-disconnect", test_closing_and_disconnect);
	g_test_add_func("/router/events/presence", test_presence);
	g_test_add_func("/router/events/watch", test_watch);
	g_test_add_func("/router/events/watch-slow", test_watch_slow);
	g_test_add_func("/router/events/watch-cluster", test_watch_cluster);
	g_test_add_func("/router/cluster/view", test_cluster_view);
	g_test_add_func("/router/cluster/forward", test_cluster_forward);
	g_test_add_func("/router/cluster/claim", test_cluster_claim);
	g_test_add_func("/router/cluster/replaced-and-deliver", test_cluster_replaced_and_deliver);
	g_test_add_func("/router/cluster/room-full", test_cluster_room_full);
	g_test_add_func("/router/summary/every-error-code", test_every_error_code);
	return g_test_run();
}
