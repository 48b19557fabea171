/* The admin API's requests (src/daemon/adminapi.c) and the POST /create-room
 * request cycle (roomhttp_create, its completion and roomhttp_cancel),
 * in process, against a real SQLite room store whose
 * writes complete on the loop later, as in the daemon: so creations are
 * pending while other requests, cancellations and disconnects happen.
 *
 * admin_request_* are implemented here (admin.c, the libmicrohttpd side,
 * is not linked): each request must be answered exactly once, with JSON
 * that never shows a room token or key secret but at its creation;
 * POST /create-room must complete exactly once unless cancelled, and
 * never after its cancel (the context is freed at the cancel, as ws.c
 * frees its session: a late completion is a use-after-free).
 *
 * Input: steps separated by "%%" lines, an opcode byte first:
 *   'G' PATH, 'D' PATH, 'P' PATH \n BODY, 'X' METHOD \n PATH  admin request
 *   'h' BODY       POST /create-room with alice's JWT (slot = step % 4)
 *   'H' TOKEN \n BODY  the same with TOKEN (@jwt@... expanded)
 *   'c'N           the connection of slot N goes: roomhttp_cancel
 *   '0'-'1' TEXT   session N sends TEXT to the router (register with a
 *                  JWT, create_room)
 *   'x'N           session N disconnects
 *   'w'            the store finishes its writes; completions run
 *   'q'N           store queue limit N (0: the default) */
#include "fuzz.h"

#include "daemon/admin.h"
#include "daemon/adminapi.h"
#include "daemon/roomhttp.h"
#include "util/config.h"
#include "util/netaddr.h"
#include "core/registry.h"
#include "store/rooms.h"
#include "core/router.h"
#include "daemon/routerio.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define MAX_STEPS 32
#define N_SLOTS 4
#define MAX_REQUESTS MAX_STEPS

struct admin_request {
	char *method, *path, *body;
	size_t len;
	const char *allow;
	unsigned status; /* 0: not answered yet */
};

const char *admin_request_method(const struct admin_request *r)
{
	return r->method;
}

const char *admin_request_path(const struct admin_request *r)
{
	return r->path;
}

const char *admin_request_body(const struct admin_request *r, size_t *len)
{
	*len = r->len;
	return r->body;
}

const char *admin_request_jwt(const struct admin_request *r)
{
	(void)r;
	return NULL; /* the admin token */
}

void admin_request_set_allow(struct admin_request *r, const char *allow)
{
	r->allow = allow;
}

/* Room tokens and key secrets of this input: shown once, at creation,
 * and never again (adminapi.h). */
static GPtrArray *secrets;

static void secrets_check(const char *what, const char *json, unsigned status)
{
	json_object *o, *v;

	for (guint i = 0; i < secrets->len; i++)
		if (strstr(json, g_ptr_array_index(secrets, i)))
			fuzz_fail("%s: a token or secret shown again: %s", what, json);
	if (status != 201 || !(o = json_tokener_parse(json)))
		return;
	if (json_object_object_get_ex(o, "token", &v) && json_object_is_type(v, json_type_string))
		g_ptr_array_add(secrets, g_strdup(json_object_get_string(v)));
	if (json_object_object_get_ex(o, "api_key", &v) && json_object_is_type(v, json_type_string))
		g_ptr_array_add(secrets, g_strdup(strchr(json_object_get_string(v), '.')
							  ? strchr(json_object_get_string(v), '.') + 1
							  : json_object_get_string(v)));
	json_object_put(o);
}

void admin_request_answer(struct admin_request *r, unsigned status, char *json)
{
	if (r->status)
		fuzz_fail("admin request %s /api/%s answered twice (%u, then %u)", r->method, r->path,
			  r->status, status);
	if (status < 200 || status > 599)
		fuzz_fail("admin answer status %u", status);
	if (status == 405 && !r->allow)
		fuzz_fail("405 without Allow");
	fuzz_check_output("admin answer", json, strlen(json));
	secrets_check("admin answer", json, status);
	r->status = status;
	g_free(json);
}

struct http_ctx {
	struct world *w;
	unsigned slot;
};

struct session {
	struct client client;
	unsigned index;
};

struct world {
	uv_loop_t *loop;
	struct store *st;
	const struct config *cfg;
	struct registry *reg;
	struct rooms *rooms;
	struct roomsvc *roomsvc;
	struct routerio io;
	struct addrlimit *al;
	struct router *router;
	struct adminapi api;
	struct admin_request *req[MAX_REQUESTS];
	unsigned n_req;
	struct roomhttp_pending *pending[N_SLOTS];
	struct http_ctx *http[N_SLOTS];
	struct session *s[2];
};

static uv_loop_t loop;
static struct store *store;

static struct session *session_of(struct world *w, struct client *c, const char *what)
{
	for (unsigned i = 0; i < 2; i++)
		if (w->s[i] && &w->s[i]->client == c)
			return w->s[i];
	fuzz_fail("%s to a session that is gone (or never was)", what);
}

static int fake_send(void *ctx, struct client *c, struct msgbuf *m)
{
	struct session *s = session_of(ctx, c, "send");
	fuzz_check_output("router send", msgbuf_text(m), m->len);
	return s->client.closing ? -EPIPE : 0;
}

static void fake_close(void *ctx, struct client *c, int code, const char *reason)
{
	struct session *s = session_of(ctx, c, "close");
	s->client.closing = true;
}

static const struct router_ops ops = { .send = fake_send, .close = fake_close };

static struct session *session_new(unsigned i)
{
	struct session *s = g_new0(struct session, 1);
	s->index = i;
	s->client.addr_known = true;
	g_assert_cmpint(netaddr_parse(i ? "10.0.1.2" : "10.0.1.1", 8, &s->client.addr), ==, 0);
	return s;
}

static void session_gone(struct world *w, unsigned i)
{
	router_disconnect(w->router, &w->s[i]->client);
	g_free(w->s[i]);
	w->s[i] = NULL;
}

/* POST /create-room's answer; CTX is freed here, or at the cancel. */
static void http_done(unsigned status, char *json, void *data)
{
	struct http_ctx *ctx = data;
	struct world *w = ctx->w;

	if (w->http[ctx->slot] != ctx)
		fuzz_fail("POST /create-room slot %u completed twice", ctx->slot);
	fuzz_check_output("POST /create-room", json, strlen(json));
	secrets_check("POST /create-room", json, status);
	if (status != 201 && status != 400 && status != 401 && status != 429 && status != 503)
		fuzz_fail("POST /create-room answered %u", status);
	g_free(json);
	w->http[ctx->slot] = NULL;
	w->pending[ctx->slot] = NULL;
	g_free(ctx);
}

static void http_start(struct world *w, unsigned slot, const char *bearer, const char *body,
		       size_t len)
{
	if (w->http[slot]) /* the connection is reused: the old request goes first */
		return;
	struct http_ctx *ctx = g_new0(struct http_ctx, 1);
	ctx->w = w;
	ctx->slot = slot;
	w->http[slot] = ctx;
	const struct roomhttp_env env = { .auth = fuzz_env()->auth, .roomsvc = w->roomsvc };
	struct roomhttp_pending *p = roomhttp_create(&env, w->cfg, NULL, bearer, body, len, http_done, ctx);
	if (w->http[slot] == ctx) { /* not answered yet: pending */
		if (!p)
			fuzz_fail("POST /create-room neither answered nor pending");
		w->pending[slot] = p;
	} else if (p) {
		fuzz_fail("POST /create-room answered and still pending");
	}
}

static void http_cancel(struct world *w, unsigned slot)
{
	if (!w->http[slot])
		return;
	roomhttp_cancel(w->pending[slot]);
	g_free(w->http[slot]); /* as ws.c frees the session */
	w->http[slot] = NULL;
	w->pending[slot] = NULL;
}

/* The store's writes finish and their completions run. */
static void drain(struct world *w)
{
	/* A write is pending until its completion has run on the loop.
	 * Generous: the campaign runs at nice 19 on a busy machine. */
	for (int i = 0; i < 40000 && store_pending(w->st); i++) {
		uv_run(w->loop, UV_RUN_NOWAIT);
		if (store_pending(w->st))
			g_usleep(200);
	}
	if (store_pending(w->st))
		fuzz_fail("the store did not finish its writes in 8 s");
}

static void admin(struct world *w, const char *method, const char *path, size_t path_len,
		  const char *body, size_t len)
{
	if (w->n_req == MAX_REQUESTS)
		return;
	struct admin_request *r = g_new0(struct admin_request, 1);
	r->method = g_strdup(method);
	r->path = g_strndup(path, path_len);
	r->body = g_strndup(body, len);
	r->len = len;
	w->req[w->n_req++] = r;
	adminapi_handle(&w->api, r);
}

/* "LINE\nREST": LINE and REST. */
static void line(const char *p, size_t len, size_t *line_len, const char **rest, size_t *rest_len)
{
	const char *nl = memchr(p, '\n', len);
	*line_len = nl ? (size_t)(nl - p) : len;
	*rest = nl ? nl + 1 : p + len;
	*rest_len = nl ? len - *line_len - 1 : 0;
}

static void step(struct world *w, unsigned k, const char *p, size_t len)
{
	unsigned n = len > 1 ? (unsigned)(p[1] - '0') : 0;
	const char *rest;
	size_t l, rl;

	switch (len ? p[0] : 0) {
	case 'G':
		admin(w, "GET", p + 1, len - 1, "", 0);
		break;
	case 'D':
		admin(w, "DELETE", p + 1, len - 1, "", 0);
		break;
	case 'P':
		line(p + 1, len - 1, &l, &rest, &rl);
		admin(w, "POST", p + 1, l, rest, rl);
		break;
	case 'X': {
		line(p + 1, len - 1, &l, &rest, &rl);
		g_autofree char *m = g_strndup(p + 1, l);
		admin(w, m, rest, rl, "", 0);
		break;
	}
	case 'h':
		http_start(w, k % N_SLOTS, fuzz_env()->jwt_alice, p + 1, len - 1);
		break;
	case 'H': {
		line(p + 1, len - 1, &l, &rest, &rl);
		size_t tl;
		g_autofree char *token = fuzz_env_expand(p + 1, l, &tl);
		http_start(w, k % N_SLOTS, l ? token : NULL, rest, rl);
		break;
	}
	case 'c':
		http_cancel(w, n % N_SLOTS);
		break;
	case '0':
	case '1': {
		size_t tl;
		g_autofree char *text = fuzz_env_expand(p + 1, len - 1, &tl);
		unsigned i = (unsigned)(p[0] - '0');
		router_receive(w->router, &w->s[i]->client, text, tl, fuzz_utf8(text, tl));
		break;
	}
	case 'x':
		session_gone(w, n % 2);
		w->s[n % 2] = session_new(n % 2);
		break;
	case 'w':
		drain(w);
		break;
	case 'q':
		store_set_queue_limit(w->st, n % 10 ? n % 10 : STORE_QUEUE_DEFAULT);
		break;
	default:
		break;
	}
}

static void setup(void)
{
	g_autoptr(GError) err = NULL;

	fuzz_env();
	g_assert_cmpint(uv_loop_init(&loop), ==, 0);
	/* Writes land in a scratch database; no fsync worth waiting for. */
	g_autofree char *state_dir = fuzz_tmpdir("store");
	if (store_open(&loop, "sqlite", state_dir, &store, &err) < 0)
		g_error("%s", err->message);
}

/* The room service's hook, as the daemon wires it. */
static unsigned close_room(void *router, const char *room_id, const char *reason)
{
	return router_close_room(router, room_id, reason);
}

FUZZ_TARGET(adminapi)
{
	const struct fuzz_env *env;
	struct fuzz_rec rec[MAX_STEPS];
	struct world w = { 0 };

	if (!store)
		setup();
	env = fuzz_env();
	/* Only minted ones: the input may echo the fixed ones as names. */
	secrets = g_ptr_array_new_with_free_func(g_free);
	w.loop = &loop;
	w.st = store;
	w.cfg = env->cfg_auth;
	w.reg = registry_new();
	w.rooms = fuzz_env_rooms(store, true);
	struct addrlimit_limits lim = { .max_addresses = 16, .regs_per_minute = 1000 };
	g_assert_cmpint(addrlimit_new(&lim, &w.al), ==, 0);
	w.roomsvc = roomsvc_new(w.rooms, w.cfg);
	w.io = (struct routerio){ .auth = env->auth, .roomsvc = w.roomsvc };
	struct router_env renv = { .rooms = w.rooms, .addrlimit = w.al };
	w.router = router_new(w.cfg, w.reg, &renv, &routerio_services, &w.io);
	router_set_transport(w.router, &ops, &w);
	roomsvc_set_close(w.roomsvc, close_room, w.router);
	w.api = (struct adminapi){ .cfg = &w.cfg, .rooms = w.rooms, .roomsvc = w.roomsvc, .reg = w.reg,
				   .router = w.router };
	for (unsigned i = 0; i < 2; i++)
		w.s[i] = session_new(i);

	size_t n = fuzz_split(data, size, rec, MAX_STEPS);
	for (size_t i = 0; i < n; i++)
		step(&w, (unsigned)i, rec[i].p, rec[i].len);

	/* The connections go, then the store finishes: every request must
	 * have had its answer. */
	for (unsigned i = 0; i < N_SLOTS; i++)
		http_cancel(&w, i);
	for (unsigned i = 0; i < 2; i++)
		session_gone(&w, i);
	drain(&w);
	for (unsigned i = 0; i < w.n_req; i++) {
		struct admin_request *r = w.req[i];
		if (!r->status)
			fuzz_fail("admin request %s /api/%s never answered", r->method, r->path);
		g_free(r->method);
		g_free(r->path);
		g_free(r->body);
		g_free(r);
	}
	store_set_queue_limit(store, STORE_QUEUE_DEFAULT);
	g_clear_pointer(&secrets, g_ptr_array_unref);
	router_free(w.router);
	roomsvc_free(w.roomsvc);
	addrlimit_free(w.al);
	rooms_free(w.rooms);
	registry_free(w.reg);
	return 0;
}
