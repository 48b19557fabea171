/* A sequence of messages from several sessions through protocol decode and
 * the router, against an in-memory registry, persistent rooms and API keys
 * (fuzz_env_rooms), as ws.c drives it: fake sessions record what the
 * router sends, bound their queues like ws.c (max_queued_bytes: closed
 * with 1008, -ENOBUFS) and free their memory when they disconnect, so
 * that the router keeping a session it let go is a use-after-free.
 *
 * Checks, after every step: every text sent is JSON a browser parses
 * (fuzz_check_output: finding 7), with known error codes, others' private
 * metadata never shown, peer_list without its asker, a registration
 * answered with exactly the room and peer id asked for (finding 13);
 * events (presence, watches) are never about their receiver and show
 * only public metadata, and a slow watcher loses its watch, never its
 * connection; nothing is sent to a session after its disconnect; each registered peer
 * is owned by a live session whose peer it is, and each session's peer is
 * in the registry; one message costs at most ROUTER_BUDGET_US of CPU; at
 * the end, with every session gone, the registry is empty.
 *
 * Input: a mode byte ('a': authentication on, issuer "test" and API key
 * k1.s3cret; else open mode), then steps separated by "%%" lines.  A step is an opcode byte and its argument:
 *   '0'-'3' TEXT  session N sends TEXT (@jwt@, @jwt2@, @jwtx@, @jwtk@ are
 *                 replaced by tokens: fuzz_env_expand)
 *   'b'N TEXT     the same as a binary frame (not checked as UTF-8)
 *   'e'N          session N sends an empty message assembled from empty
 *                 fragments: ws.c hands the router ("", 0) (finding 11)
 *   'x'N          session N's connection closes (a new one takes its slot)
 *   'd'N          session N's queue drains (its socket wrote)
 *   'l'N          session N goes over its message rate
 *   'R' ID        the admin deletes room ID (rooms_delete, router_close_room)
 *   'K' KEY_ID    the admin revokes KEY_ID (and closes its sessions)
 *   'h' JSON      POST /create-room with @jwt@ as bearer, JSON as body */
#include "fuzz.h"

#include "util/addrlimit.h"
#include "auth/auth.h"
#include "util/config.h"
#include "core/jscan.h"
#include "util/netaddr.h"
#include "core/protocol.h"
#include "core/registry.h"
#include "store/rooms.h"
#include "daemon/roomhttp.h"
#include "core/router.h"
#include "daemon/routerio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define N_SESSIONS 4
#define MAX_STEPS 48
#define ROUTER_BUDGET_US 100000

struct session {
	struct client client; /* first: the router's pointer is ours */
	unsigned index;
	/* the ids of the register in flight, as asked (NULL: not checked) */
	GString *want_room, *want_peer;
	size_t queued;
	int close_code;
	unsigned sent;
};

struct world {
	const struct config *cfg;
	struct registry *reg;
	struct rooms *rooms;
	struct roomsvc *roomsvc;
	struct routerio io;
	struct addrlimit *al;
	struct router *router;
	struct auth *auth;
	struct session *s[N_SESSIONS];
	/* sessions gone (freed): their addresses, to tell a late send */
	GPtrArray *gone;
	unsigned http_done;
};

static struct session *session_of(struct world *w, struct client *c, const char *what)
{
	for (unsigned i = 0; i < N_SESSIONS; i++)
		if (w->s[i] && &w->s[i]->client == c)
			return w->s[i];
	for (guint i = 0; i < w->gone->len; i++)
		if (g_ptr_array_index(w->gone, i) == (void *)c)
			fuzz_fail("%s to a session after its disconnect", what);
	fuzz_fail("%s to a client that is no session", what);
}

/* A room mate's metadata as others see it: no private key ('_') at the
 * top or in properties. */
static void check_public(const char *what, json_object *md)
{
	json_object *props;
	if (!json_object_is_type(md, json_type_object))
		fuzz_fail("%s: metadata is not an object", what);
	json_object_object_foreach(md, key, val) {
		(void)val;
		if (key[0] == '_')
			fuzz_fail("%s: private key %s shown to another peer", what, key);
	}
	if (json_object_object_get_ex(md, "properties", &props) &&
	    json_object_is_type(props, json_type_object)) {
		json_object_object_foreach(props, pkey, pval) {
			(void)pval;
			if (pkey[0] == '_')
				fuzz_fail("%s: private property %s shown to another peer", what, pkey);
		}
	}
}

static void check_id(json_object *o, const char *key, const GString *want)
{
	json_object *v = NULL;
	if (!want)
		return;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) != want->len ||
	    memcmp(json_object_get_string(v), want->str, want->len) != 0)
		fuzz_fail("registered as %s %s, asked for %.*s (finding 13: ids must be taken exactly)",
			  key, v ? json_object_get_string(v) : "(none)", (int)want->len, want->str);
}

/* The ids a registration answers with are the ones asked for. */
static void check_ids(const struct session *s, json_object *o)
{
	check_id(o, "room_id", s->want_room);
	check_id(o, "peer_id", s->want_peer);
}

/* What a session is told, checked against docs/protocol.md: error codes are
 * known; registered_auth and peer_list show others only public metadata;
 * peer_list never lists its asker, and counts what it lists. */
static void check_message(const struct session *s, const char *text, size_t len)
{
	static json_tokener *tok;
	if (!tok)
		tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH * 40);
	json_tokener_reset(tok);
	json_object *o = json_tokener_parse_ex(tok, text, (int)len), *v, *peers;
	const char *type = json_object_object_get_ex(o, "type", &v) ? json_object_get_string(v) : "";
	const char *self = s->client.peer ? s->client.peer->id : NULL;

	if (strcmp(type, "error") == 0) {
		const char *code = json_object_object_get_ex(o, "code", &v) ? json_object_get_string(v) : "";
		int i;
		for (i = 0; i < ERR__COUNT; i++)
			if (strcmp(code, protocol_code_name((enum err_code)i)) == 0)
				break;
		if (i == ERR__COUNT)
			fuzz_fail("error with unknown code %s", code);
	} else if (strcmp(type, "registered_auth") == 0 || strcmp(type, "registered") == 0) {
		check_ids(s, o);
		if (json_object_object_get_ex(o, "peer_metadata", &peers) &&
		    json_object_is_type(peers, json_type_object)) {
			json_object_object_foreach(peers, id, md)
				check_public(id, md);
		}
	} else if (g_str_has_prefix(type, "peer_") && strcmp(type, "peer_list") != 0 &&
		   strcmp(type, "peer_message") != 0) {
		json_object *p = o, *id, *md;
		if (strcmp(type, "peer_left") != 0 && !json_object_object_get_ex(o, "peer", &p))
			fuzz_fail("%s without peer", type);
		if (!json_object_object_get_ex(p, "peer_id", &id))
			fuzz_fail("%s without peer_id", type);
		if (self && strcmp(json_object_get_string(id), self) == 0)
			fuzz_fail("%s about its receiver %s", type, self);
		if (json_object_object_get_ex(p, "metadata", &md))
			check_public(type, md);
	} else if (strcmp(type, "peer_list") == 0) {
		if (!json_object_object_get_ex(o, "peers", &peers) ||
		    !json_object_is_type(peers, json_type_array))
			fuzz_fail("peer_list without peers");
		size_t n = json_object_array_length(peers);
		if (!json_object_object_get_ex(o, "count", &v) || json_object_get_int64(v) != (int64_t)n)
			fuzz_fail("peer_list count is not the number of peers (%zu)", n);
		for (size_t i = 0; i < n; i++) {
			json_object *p = json_object_array_get_idx(peers, i), *id, *md;
			if (json_object_object_get_ex(p, "peer_id", &id) && self &&
			    strcmp(json_object_get_string(id), self) == 0)
				fuzz_fail("peer_list lists its asker %s", self);
			if (json_object_object_get_ex(p, "metadata", &md))
				check_public("peer_list", md);
		}
	}
	json_object_put(o);
}

static int fake_send(void *ctx, struct client *c, struct msgbuf *m)
{
	struct world *w = ctx;
	struct session *s = session_of(w, c, "send");

	fuzz_check_output("router send", msgbuf_text(m), m->len);
	check_message(s, msgbuf_text(m), m->len);
	if (g_getenv("FUZZ_DEBUG"))
		fprintf(stderr, "-> %u: %.*s\n", s->index, (int)MIN(m->len, 300), msgbuf_text(m));
	if (s->close_code)
		return -EPIPE;
	if (s->queued + m->len > w->cfg->max_queued_bytes) {
		s->queued = 0;
		s->close_code = 1008;
		s->client.closing = true;
		return -ENOBUFS;
	}
	s->queued += m->len;
	s->sent++;
	return 0;
}

static void fake_close(void *ctx, struct client *c, int code, const char *reason)
{
	struct world *w = ctx;
	struct session *s = session_of(w, c, "close");

	if (!reason)
		fuzz_fail("close without a reason");
	if (s->close_code)
		return;
	s->client.closing = true;
	s->close_code = code;
}

/* As ws.c: events within half the bound, refused past it (the session
 * stays open), a forced one (watch_lost) queued whatever. */
static int fake_event(void *ctx, struct client *c, struct msgbuf *m, bool force)
{
	struct world *w = ctx;
	struct session *s = session_of(w, c, "event");

	if (!force && !s->close_code && s->queued + m->len > w->cfg->max_queued_bytes / 2)
		return -ENOBUFS;
	if (!force)
		return fake_send(ctx, c, m);
	fuzz_check_output("router event", msgbuf_text(m), m->len);
	check_message(s, msgbuf_text(m), m->len);
	if (s->close_code)
		return -EPIPE;
	s->queued += m->len;
	s->sent++;
	return 0;
}

static const struct router_ops ops = { .send = fake_send, .event = fake_event, .close = fake_close };

static struct session *session_new(unsigned i)
{
	struct session *s = g_new0(struct session, 1);
	char addr[32];
	int n = snprintf(addr, sizeof addr, "10.0.0.%u", i + 1);
	s->index = i;
	s->client.addr_known = true;
	g_assert_cmpint(netaddr_parse(addr, (size_t)n, &s->client.addr), ==, 0);
	return s;
}

static void session_gone(struct world *w, unsigned i)
{
	struct session *s = w->s[i];
	router_disconnect(w->router, &s->client);
	if (s->client.peer)
		fuzz_fail("session %u still registered after its disconnect", i);
	w->s[i] = NULL;
	if (s->want_room)
		g_string_free(s->want_room, TRUE);
	if (s->want_peer)
		g_string_free(s->want_peer, TRUE);
	/* Freed now: a pointer the router kept is then a use-after-free. */
	g_ptr_array_add(w->gone, s);
	g_free(s);
}

struct check {
	struct world *w;
	unsigned peers;
};

static void check_room(struct room *room, void *data)
{
	struct check *ck = data;
	struct peer *p;

	if (room_size(room) == 0)
		fuzz_fail("empty room %s kept", room->id);
	ROOM_FOREACH_PEER(room, p) {
		ck->peers++;
		if (p->room != room)
			fuzz_fail("peer %s: wrong room", p->id);
		struct session *s = session_of(ck->w, p->owner, "registry owner");
		if (s->client.peer != p)
			fuzz_fail("peer %s/%s is owned by session %u, whose peer is another", room->id,
				  p->id, s->index);
		if (room_find_peer(room, p->id) != p)
			fuzz_fail("peer %s not found by its id", p->id);
	}
}

static void check_world(struct world *w)
{
	struct check ck = { w, 0 };
	unsigned registered = 0;

	registry_foreach_room(w->reg, check_room, &ck);
	for (unsigned i = 0; i < N_SESSIONS; i++) {
		struct peer *p = w->s[i] ? w->s[i]->client.peer : NULL;
		if (!p)
			continue;
		/* A v2.0 session whose registration a newer one took over
		 * still names it: the peer's former, not its owner. */
		if (w->s[i]->client.superseded) {
			if (p->former != &w->s[i]->client || p->owner == &w->s[i]->client)
				fuzz_fail("session %u is superseded but not its peer's former", i);
			continue;
		}
		registered++;
		if (p->owner != &w->s[i]->client)
			fuzz_fail("session %u's peer has another owner", i);
	}
	if (ck.peers != registered || registry_n_peers(w->reg) != registered)
		fuzz_fail("%u peers in rooms, %u counted, %u sessions registered", ck.peers,
			  registry_n_peers(w->reg), registered);
}

/* A store write of the memory-only store: done at once. */
static void written(int status, const char *why, void *data)
{
	(void)why;
	*(int *)data = status;
}

static void http_done(unsigned status, char *json, void *data)
{
	struct world *w = data;
	fuzz_check_output("POST /create-room", json, strlen(json));
	if (status != 201 && status != 400 && status != 401 && status != 503 && status != 429)
		fuzz_fail("POST /create-room answered %u", status);
	w->http_done++;
	g_free(json);
}

/* A register's room_id (a string, without an api_key, which names its
 * own room) and peer_id (a string, or an integer as written). */
static void expect_ids(struct session *s, const char *text, size_t len)
{
	static json_tokener *tok;
	json_object *o = NULL, *v;
	struct jscan_member m[16];
	size_t n;

	if (s->want_room)
		g_string_free(g_steal_pointer(&s->want_room), TRUE);
	if (s->want_peer)
		g_string_free(g_steal_pointer(&s->want_peer), TRUE);
	if (!tok) {
		tok = json_tokener_new_ex(33);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	}
	/* Only what the daemon's gate passes (json-c 0.16 would otherwise
	 * carry a half-read \u escape into the next text). */
	if (jscan_check(text, len, 32, SIZE_MAX, NULL, NULL) != JSCAN_OK)
		goto out;
	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (!json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "type", &v) || !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "register") != 0)
		goto out;
	if (!json_object_object_get_ex(o, "api_key", NULL) &&
	    json_object_object_get_ex(o, "room_id", &v) && json_object_is_type(v, json_type_string))
		s->want_room = g_string_new_len(json_object_get_string(v), json_object_get_string_len(v));
	if (!json_object_object_get_ex(o, "peer_id", &v))
		goto out;
	if (json_object_is_type(v, json_type_string)) {
		s->want_peer = g_string_new_len(json_object_get_string(v), json_object_get_string_len(v));
	} else if (json_object_is_type(v, json_type_int) &&
		   jscan_object(text, len, 32, SIZE_MAX, m, G_N_ELEMENTS(m), &n) == 0) {
		const struct jscan_member *last = NULL; /* json-c keeps the last */
		for (size_t i = 0; i < n; i++)
			if (m[i].key_len == 7 && memcmp(m[i].key, "peer_id", 7) == 0)
				last = &m[i];
		/* an integer as written: digits, maybe a minus */
		if (last && last->kind == JSCAN_NUMBER &&
		    strspn(last->value, "-0123456789") >= last->value_len)
			/* -0 is the number 0 */
			s->want_peer = last->value_len == 2 && memcmp(last->value, "-0", 2) == 0
					       ? g_string_new("0")
					       : g_string_new_len(last->value, (gssize)last->value_len);
	}
out:
	json_object_put(o);
}

static void step(struct world *w, const char *p, size_t len)
{
	unsigned i = len > 1 ? (unsigned)(p[1] - '0') % N_SESSIONS : 0;
	switch (len ? p[0] : 0) {
	case '0':
	case '1':
	case '2':
	case '3':
	case 'b': {
		bool binary = p[0] == 'b';
		const char *arg = p + 1 + binary;
		size_t arg_len = len - 1 - (binary && len > 1);
		if (!binary)
			i = (unsigned)(p[0] - '0');
		size_t n;
		/* the transport's buffer: exactly the message's bytes */
		g_autofree char *text = fuzz_env_expand(arg, arg_len, &n);
		struct session *s = w->s[i];
		expect_ids(s, text, n);
		int64_t start = fuzz_cpu_us();
		router_receive(w->router, &s->client, text, n, !binary && fuzz_utf8(text, n));
		int64_t spent = fuzz_cpu_us() - start;
		if (spent > (int64_t)ROUTER_BUDGET_US * fuzz_budget_scale())
			fuzz_fail("budget: one message of %zu bytes cost %lld us of CPU (bound %d us)", n,
				  (long long)spent, ROUTER_BUDGET_US);
		break;
	}
	case 'e':
		/* an empty message, as the transport hands it (never NULL) */
		router_receive(w->router, &w->s[i]->client, "", 0, true);
		break;
	case 'x':
		session_gone(w, i);
		w->s[i] = session_new(i);
		break;
	case 'd':
		w->s[i]->queued = 0;
		break;
	case 'l':
		if (!w->s[i]->client.closing)
			router_rate_limited(w->router, &w->s[i]->client);
		break;
	case 'R': {
		g_autofree char *id = g_strndup(p + 1, len - 1);
		int status = 1;
		if (rooms_delete(w->rooms, id, written, &status) == 0 && status == 0)
			router_close_room(w->router, id, "deleted");
		break;
	}
	case 'K': {
		g_autofree char *id = g_strndup(p + 1, len - 1);
		g_autofree char *principal = g_strconcat("key:", id, NULL);
		int status = 1;
		if (rooms_revoke_key(w->rooms, id, g_get_real_time() / G_USEC_PER_SEC, written, &status) == 0 &&
		    status == 0)
			router_close_principal(w->router, principal, "Token revoked");
		break;
	}
	case 'h': {
		unsigned before = w->http_done;
		const struct roomhttp_env env = { .auth = w->auth, .roomsvc = w->roomsvc };
		struct roomhttp_pending *pend = roomhttp_create(&env, w->cfg, NULL, fuzz_env()->jwt_alice,
								p + 1, len - 1, http_done, w);
		/* memory-only rooms complete at once */
		if (pend || w->http_done != before + 1)
			fuzz_fail("POST /create-room: %u completions, pending %p", w->http_done - before,
				  (void *)pend);
		break;
	}
	default:
		break;
	}
	check_world(w);
}

FUZZ_TARGET(router)
{
	const struct fuzz_env *env = fuzz_env();
	struct fuzz_rec rec[MAX_STEPS];
	struct world w = { 0 };

	if (!size)
		return 0;
	bool auth = data[0] == 'a';
	w.cfg = auth ? env->cfg_auth : env->cfg_open;
	w.reg = registry_new();
	w.rooms = fuzz_env_rooms(NULL, auth);
	w.gone = g_ptr_array_new();
	struct addrlimit_limits lim = { .max_addresses = 16, .conns_per_address = 0,
					.regs_per_minute = w.cfg->registrations_per_address_per_minute };
	g_assert_cmpint(addrlimit_new(&lim, &w.al), ==, 0);
	w.roomsvc = roomsvc_new(w.rooms, w.cfg);
	w.auth = auth ? env->auth : env->auth_open;
	w.io = (struct routerio){ .auth = w.auth, .roomsvc = w.roomsvc };
	struct router_env renv = { .rooms = w.rooms, .addrlimit = w.al };
	w.router = router_new(w.cfg, w.reg, &renv, &routerio_services, &w.io);
	router_set_transport(w.router, &ops, &w);
	for (unsigned i = 0; i < N_SESSIONS; i++)
		w.s[i] = session_new(i);

	size_t n = fuzz_split(data + 1, size - 1, rec, MAX_STEPS);
	for (size_t i = 0; i < n; i++)
		step(&w, rec[i].p, rec[i].len);

	for (unsigned i = 0; i < N_SESSIONS; i++)
		session_gone(&w, i);
	if (registry_n_peers(w.reg) || registry_n_rooms(w.reg))
		fuzz_fail("%u peers in %u rooms left once every session is gone",
			  registry_n_peers(w.reg), registry_n_rooms(w.reg));
	router_free(w.router);
	roomsvc_free(w.roomsvc);
	addrlimit_free(w.al);
	rooms_free(w.rooms);
	registry_free(w.reg);
	g_ptr_array_unref(w.gone);
	return 0;
}
