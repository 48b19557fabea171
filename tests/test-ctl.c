/* Unit tests: rtcsignalctl's parsing, target resolution and output, each
 * command run against canned answers of the admin API. */
#include "ctl/ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct canned {
	const char *method, *target;
	int status;     /* the answer's, when ERROR is 0 */
	const char *body;
	int error;      /* the transport fails with -ERROR */
	bool connected; /* ... after connect() succeeded */
};

#define ANSWER(method, target, status, body) { method, target, status, body, 0, false }
#define FAILURE(method, target, error, connected) { method, target, 0, NULL, error, connected }

struct fake {
	const struct canned *answers;
	size_t n;
	GPtrArray *seen; /* of "METHOD TARGET\nHEADERS\nBODY" */
};

static int fake_request(void *data, const struct listen_addr *to, const struct httpc_request *req,
			struct httpc_reply *out)
{
	struct fake *f = data;

	(void)to;
	memset(out, 0, sizeof *out);
	g_ptr_array_add(f->seen, g_strdup_printf("%s %s\n%s\n%s", req->method, req->target,
						 req->headers ? req->headers : "",
						 req->body ? req->body : ""));
	for (size_t i = 0; i < f->n; i++) {
		const struct canned *c = &f->answers[i];
		if (strcmp(c->method, req->method) != 0 || strcmp(c->target, req->target) != 0)
			continue;
		out->connected = c->error ? c->connected : true;
		if (c->error)
			return -c->error;
		out->status = c->status;
		out->head = g_string_new("HTTP/1.1");
		out->body = g_string_new(c->body);
		return 0;
	}
	g_error("no canned answer for %s %s", req->method, req->target);
}

struct result {
	int status;
	char *out, *err;
	GPtrArray *seen;
};

static void result_clear(struct result *r)
{
	g_free(r->out);
	g_free(r->err);
	g_ptr_array_unref(r->seen);
}

typedef struct result result_t;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(result_t, result_clear)

/* Runs CMDLINE's command with TOKEN (may be NULL) against ANSWERS. */
static struct result run_canned(const struct canned *answers, size_t n, const char *token,
				const char *cmdline)
{
	g_autofree char *line = g_strconcat("rtcsignalctl ", cmdline, NULL);
	g_auto(GStrv) argv = NULL;
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(GString) err = g_string_new(NULL);
	struct fake f = { answers, n, g_ptr_array_new_with_free_func(g_free) };
	struct ctl_target t = { .request = fake_request, .data = &f };
	struct ctl_args a;
	int argc;

	g_assert_true(g_shell_parse_argv(line, &argc, &argv, NULL));
	g_assert_cmpint(ctl_parse(argc, argv, &a, out, err), ==, CTL_EXIT_OK);
	g_assert_cmpint(config_parse_listen("127.0.0.1:8001", &t.admin), ==, 0);
	t.token = g_strdup(token);
	t.token_source = g_strdup("$RTCSIGNALD_ADMIN_TOKEN");
	int status = ctl_execute(&a, &t, out, err);
	ctl_target_clear(&t);
	ctl_args_clear(&a);
	return (struct result){ status, g_strdup(out->str), g_strdup(err->str), f.seen };
}

#define RUN(answers, token, cmdline) run_canned(answers, G_N_ELEMENTS(answers), token, cmdline)

/* ctl_main on CMDLINE: status, with OUT and ERR. */
static int run_main(const char *cmdline, char **out, char **err)
{
	g_autofree char *line = g_strconcat("rtcsignalctl ", cmdline, NULL);
	g_auto(GStrv) argv = NULL;
	GString *o = g_string_new(NULL), *e = g_string_new(NULL);
	int argc;

	g_assert_true(g_shell_parse_argv(line, &argc, &argv, NULL));
	int status = ctl_main(argc, argv, o, e);
	*out = g_string_free(o, FALSE);
	*err = g_string_free(e, FALSE);
	return status;
}

/* --- parsing --- */

static void test_parse_commands(void)
{
	static const struct {
		const char *line;
		enum ctl_command command;
	} cases[] = {
		{ "status", CTL_STATUS },
		{ "rooms list", CTL_ROOMS_LIST },
		{ "room list", CTL_ROOMS_LIST },
		{ "rooms create", CTL_ROOMS_CREATE },
		{ "room delete r1", CTL_ROOMS_DELETE },
		{ "keys list", CTL_KEYS_LIST },
		{ "key create --room r1 --name ci", CTL_KEYS_CREATE },
		{ "--json keys revoke k1", CTL_KEYS_REVOKE },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *line = g_strconcat("rtcsignalctl ", cases[i].line, NULL);
		g_auto(GStrv) argv = NULL;
		g_autoptr(GString) out = g_string_new(NULL), err = g_string_new(NULL);
		struct ctl_args a;
		int argc;
		g_assert_true(g_shell_parse_argv(line, &argc, &argv, NULL));
		g_assert_cmpint(ctl_parse(argc, argv, &a, out, err), ==, CTL_EXIT_OK);
		g_assert_cmpint(a.command, ==, cases[i].command);
		g_assert_cmpstr(err->str, ==, "");
		ctl_args_clear(&a);
	}
}

static void test_parse_options(void)
{
	char *argv[] = { "rtcsignalctl", "rooms", "--expires-in", "2h", "create", "--max-peers=5",
			 "--name", "lab", "--open-to-issuer", "--json", "--timeout", "3", "-c", "/x.conf",
			 "--admin", "[::1]:9", "--token-file", "t", NULL };
	g_autoptr(GString) out = g_string_new(NULL), err = g_string_new(NULL);
	struct ctl_args a;

	g_assert_cmpint(ctl_parse(G_N_ELEMENTS(argv) - 1, argv, &a, out, err), ==, CTL_EXIT_OK);
	g_assert_cmpint(a.command, ==, CTL_ROOMS_CREATE);
	g_assert_cmpint(a.expires_in, ==, 7200);
	g_assert_cmpint(a.max_peers, ==, 5);
	g_assert_cmpstr(a.name, ==, "lab");
	g_assert_true(a.open_to_issuer);
	g_assert_true(a.json);
	g_assert_cmpint(a.timeout_ms, ==, 3000);
	g_assert_cmpstr(a.config_path, ==, "/x.conf");
	g_assert_cmpstr(a.admin, ==, "[::1]:9");
	g_assert_cmpstr(a.token_file, ==, "t");
	g_assert_cmpstr(argv[2], ==, "--expires-in"); /* left as it was */
	ctl_args_clear(&a);

	/* Defaults, suffixes, and an id that looks like an option. */
	char *argv2[] = { "rtcsignalctl", "keys", "create", "--room", "r", "--expires-in", "7d", NULL };
	g_assert_cmpint(ctl_parse(G_N_ELEMENTS(argv2) - 1, argv2, &a, out, err), ==, CTL_EXIT_OK);
	g_assert_cmpint(a.expires_in, ==, 7 * 86400);
	g_assert_cmpint(a.max_peers, ==, -1);
	g_assert_cmpint(a.timeout_ms, ==, 10000);
	g_assert_false(a.json);
	ctl_args_clear(&a);
	char *argv3[] = { "rtcsignalctl", "rooms", "delete", "--", "-odd", NULL };
	g_assert_cmpint(ctl_parse(G_N_ELEMENTS(argv3) - 1, argv3, &a, out, err), ==, CTL_EXIT_OK);
	g_assert_cmpstr(a.id, ==, "-odd");
	g_assert_cmpint(a.expires_in, ==, -1);
	ctl_args_clear(&a);
	char *argv4[] = { "rtcsignalctl", "rooms", "create", "--expires-in", "0", NULL };
	g_assert_cmpint(ctl_parse(G_N_ELEMENTS(argv4) - 1, argv4, &a, out, err), ==, CTL_EXIT_OK);
	g_assert_cmpint(a.expires_in, ==, 0);
	ctl_args_clear(&a);
}

static void test_parse_usage(void)
{
	static const struct {
		const char *line, *says;
	} cases[] = {
		{ "", "no command given" },
		{ "--json", "no command given" },
		{ "frob", "unknown command 'frob'" },
		{ "rooms", "'rooms' needs list, create, delete, members, add-member or remove-member" },
		{ "keys create --room r --account a", "'keys create' needs --room ROOM_ID or --account SUB" },
		{ "keys create --room r --issuer lab", "--issuer goes with --account" },
		{ "rooms add-member r", "'rooms add-member' needs --account SUB" },
		{ "rooms members", "'rooms members' needs ROOM_ID" },
		{ "keys", "'keys' needs list, create or revoke" },
		{ "rooms revoke x", "unknown command 'rooms revoke'" },
		{ "keys delete x", "unknown command 'keys delete'" },
		{ "status now", "unexpected argument 'now'" },
		{ "rooms delete", "'rooms delete' needs ROOM_ID" },
		{ "rooms delete ''", "'rooms delete' needs ROOM_ID" },
		{ "keys revoke", "'keys revoke' needs KEY_ID" },
		{ "rooms delete a b", "unexpected argument 'b'" },
		{ "keys create", "'keys create' needs --room" },
		{ "keys create --room r --max-peers 3", "--max-peers is not an option of 'keys create'" },
		{ "rooms create --room r", "--room is not an option of 'rooms create'" },
		{ "rooms list --name x", "--name is not an option of 'rooms list'" },
		{ "status --open-to-issuer", "--open-to-issuer is not an option of 'status'" },
		{ "rooms create --max-peers 0", "--max-peers: '0' is not a number" },
		{ "rooms create --max-peers -3", "--max-peers: '-3' is not a number" },
		{ "rooms create --max-peers many", "--max-peers: 'many'" },
		{ "rooms create --expires-in -1", "--expires-in: '-1'" },
		{ "rooms create --expires-in 2w", "--expires-in: '2w'" },
		{ "rooms create --expires-in 1hh", "--expires-in: '1hh'" },
		{ "rooms create --expires-in 99999999999d", "--expires-in: '99999999999d'" },
		{ "status --timeout 0", "--timeout: '0'" },
		{ "status --timeout 1.5", "--timeout: '1.5'" },
		{ "status --token x", "Unknown option --token" },
		{ "status --timeout", "--timeout" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *out = NULL, *err = NULL;
		g_test_message("%s", cases[i].line);
		g_assert_cmpint(run_main(cases[i].line, &out, &err), ==, CTL_EXIT_USAGE);
		g_assert_cmpstr(out, ==, "");
		g_assert_true(g_str_has_prefix(err, "rtcsignalctl: "));
		g_assert_nonnull(strstr(err, cases[i].says));
		g_assert_nonnull(strstr(err, "--help"));
	}
}

static void test_help_and_version(void)
{
	g_autofree char *out = NULL, *err = NULL;

	g_assert_cmpint(run_main("--help", &out, &err), ==, CTL_EXIT_OK);
	g_assert_cmpstr(err, ==, "");
	static const char *const says[] = { "status", "rooms list", "rooms create", "rooms delete ROOM_ID",
					    "keys create --room ROOM_ID", "keys list", "keys revoke KEY_ID",
					    "--config", "--admin", "--token-file", "--json", "--timeout",
					    "--expires-in", "--max-peers", "--name", "--open-to-issuer",
					    "--room", "RTCSIGNALD_ADMIN_TOKEN", "Exit status",
					    "  64  ", "  69  ", "  75  ", "  77  ", "  78  " };
	for (size_t i = 0; i < G_N_ELEMENTS(says); i++)
		g_assert_nonnull(strstr(out, says[i]));
	g_free(out);
	g_free(err);
	/* Help wins over a bad command line's command. */
	g_assert_cmpint(run_main("frob -h", &out, &err), ==, CTL_EXIT_OK);
	g_assert_nonnull(strstr(out, "Usage:"));
	g_free(out);
	g_free(err);
	g_assert_cmpint(run_main("--version", &out, &err), ==, CTL_EXIT_OK);
	g_assert_cmpstr(out, ==, "rtcsignalctl " PACKAGE_VERSION "\n");
}

/* --- status --- */

static const char health_ok[] = "{\"status\":\"healthy\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"version\":\"9.8.7\"}";
static const char ready_ok[] = "{\"status\":\"ready\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"version\":\"9.8.7\"}";
static const char metrics_json[] =
	"{\"timestamp\":\"2026-01-01T00:00:00Z\",\"active_rooms\":2,\"active_connections\":12,"
	"\"peers_by_role\":{\"worker\":7,\"client\":3,\"bad\\u001b[31m\":1},\"total_connections\":40,"
	"\"total_messages\":5,\"rooms_created\":2}";

static void test_status(void)
{
	const struct canned answers[] = {
		ANSWER("GET", "/health", 200, health_ok),
		ANSWER("GET", "/ready", 200, ready_ok),
		ANSWER("GET", "/metrics?format=json", 200, metrics_json),
	};
	g_auto(result_t) r = RUN(answers, NULL, "status");

	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(r.err, ==, "");
	g_assert_cmpstr(r.out, ==,
			"Health:       healthy\n"
			"Readiness:    ready\n"
			"Version:      9.8.7\n"
			"Connections:  12\n"
			"Rooms:        2\n"
			"Peers:        11\n"
			"  worker      7\n"
			"  client      3\n"
			"  bad?[31m    1\n");
	g_assert_cmpuint(r.seen->len, ==, 3);
	/* Needs no token, and sends none. */
	for (guint i = 0; i < r.seen->len; i++)
		g_assert_null(strstr(r.seen->pdata[i], "Authorization"));
}

static void test_status_not_ready(void)
{
	const struct canned answers[] = {
		ANSWER("GET", "/health", 503, "{\"status\":\"draining\",\"version\":\"1\"}"),
		ANSWER("GET", "/ready", 503, "{\"status\":\"not ready\",\"reason\":\"draining\"}"),
		ANSWER("GET", "/metrics?format=json", 200,
		  "{\"active_rooms\":0,\"active_connections\":0,\"peers_by_role\":{}}"),
	};
	g_auto(result_t) r = RUN(answers, NULL, "status");

	g_assert_cmpint(r.status, ==, CTL_EXIT_TEMPFAIL);
	g_assert_cmpstr(r.out, ==,
			"Health:       draining\n"
			"Readiness:    not ready (draining)\n"
			"Version:      1\n"
			"Connections:  0\n"
			"Rooms:        0\n"
			"Peers:        0\n");
}

static void test_status_json(void)
{
	const struct canned answers[] = {
		ANSWER("GET", "/health", 200, health_ok),
		ANSWER("GET", "/ready", 503, "{\"status\":\"not ready\",\"reason\":\"starting\"}"),
		ANSWER("GET", "/metrics?format=json", 200, metrics_json),
	};
	g_auto(result_t) r = RUN(answers, NULL, "status --json");
	json_object *o = json_tokener_parse(r.out), *v;

	g_assert_cmpint(r.status, ==, CTL_EXIT_TEMPFAIL);
	g_assert_nonnull(o);
	g_assert_true(json_object_object_get_ex(o, "health", &v));
	g_assert_cmpstr(json_object_get_string(json_object_object_get(v, "version")), ==, "9.8.7");
	g_assert_true(json_object_object_get_ex(o, "ready", &v));
	g_assert_cmpstr(json_object_get_string(json_object_object_get(v, "reason")), ==, "starting");
	g_assert_true(json_object_object_get_ex(o, "metrics", &v));
	g_assert_cmpint(json_object_get_int(json_object_object_get(v, "active_connections")), ==, 12);
	json_object_put(o);
}

/* Issue 18: the authentication mode, as the daemon reports it. */
static void test_status_authentication(void)
{
	const struct canned answers[] = {
		ANSWER("GET", "/health", 200, health_ok),
		ANSWER("GET", "/ready", 200, ready_ok),
		ANSWER("GET", "/metrics?format=json", 200,
		       "{\"active_rooms\":0,\"active_connections\":0,\"peers_by_role\":{},"
		       "\"authentication\":\"off: loopback clients only\"}"),
	};
	g_auto(result_t) r = RUN(answers, NULL, "status");

	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(r.out, ==,
			"Health:       healthy\n"
			"Readiness:    ready\n"
			"Version:      9.8.7\n"
			"Auth:         off: loopback clients only\n"
			"Connections:  0\n"
			"Rooms:        0\n"
			"Peers:        0\n");
}

/* /metrics behind a metrics token this client does not send. */
static void test_status_metrics_refused(void)
{
	const struct canned answers[] = {
		ANSWER("GET", "/health", 200, health_ok),
		ANSWER("GET", "/ready", 200, ready_ok),
		ANSWER("GET", "/metrics?format=json", 401, "{\"error\":\"unauthorized\"}"),
	};
	g_auto(result_t) r = RUN(answers, "t", "status");

	g_assert_cmpint(r.status, ==, CTL_EXIT_NOPERM);
	g_assert_cmpstr(r.out, ==, "");
	g_assert_cmpstr(r.err, ==, "rtcsignalctl: not authorized: unauthorized (HTTP 401)\n");
}

/* --- rooms --- */

static const char rooms_json[] =
	"{\"rooms\":[{\"room_id\":\"3f2a9c1e5b7d4a60\",\"name\":\"lab\",\"created_by\":\"admin\","
	"\"created_at\":1795670000,\"expires_at\":1795677200,\"max_peers\":10,\"open_to_issuer\":false,"
	"\"peers\":3,\"peers_by_role\":{\"worker\":2,\"client\":1}},"
	"{\"room_id\":\"00aa\",\"name\":null,\"created_by\":\"jwt:kc:alice\",\"created_at\":0,"
	"\"expires_at\":null,\"max_peers\":null,\"open_to_issuer\":true,\"peers\":0,"
	"\"peers_by_role\":{}}]}";

static void test_rooms_list(void)
{
	const struct canned answers[] = { ANSWER("GET", "/api/rooms", 200, rooms_json) };
	g_auto(result_t) r = RUN(answers, "s3cret", "rooms list");

	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(r.err, ==, "");
	g_assert_cmpstr(r.out, ==,
		"ROOM ID           NAME  PEERS  MAX  CREATED               EXPIRES               OPEN  CREATED BY    ROLES\n"
		"3f2a9c1e5b7d4a60  lab   3      10   2026-11-26T05:13:20Z  2026-11-26T07:13:20Z  no    admin         worker=2 client=1\n"
		"00aa              -     0      -    1970-01-01T00:00:00Z  never                 yes   jwt:kc:alice  -\n");
	g_assert_cmpstr(r.seen->pdata[0], ==,
			"GET /api/rooms\nAccept: application/json\r\nAuthorization: Bearer s3cret\r\n\n");
}

static void test_rooms_list_empty_and_json(void)
{
	const struct canned answers[] = { ANSWER("GET", "/api/rooms", 200, "{\"rooms\":[]}") };
	g_auto(result_t) r = RUN(answers, "t", "rooms list");

	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(r.out, ==, "No rooms.\n");

	const struct canned full[] = { ANSWER("GET", "/api/rooms", 200, rooms_json) };
	g_auto(result_t) j = RUN(full, "t", "--json room list");
	json_object *got = json_tokener_parse(j.out), *want = json_tokener_parse(rooms_json);
	g_assert_cmpint(j.status, ==, CTL_EXIT_OK);
	g_assert_true(json_object_equal(got, want));
	json_object_put(got);
	json_object_put(want);
}

/* Client-chosen strings cannot drive the operator's terminal. */
static void test_rooms_list_sanitized(void)
{
	const struct canned answers[] = {
		ANSWER("GET", "/api/rooms", 200,
		  "{\"rooms\":[{\"room_id\":\"r\\u001b]0;x\\u0007\",\"name\":\"caf\\u00e9\\u0085\","
		  "\"created_by\":\"admin\",\"created_at\":1,\"expires_at\":null,\"max_peers\":null,"
		  "\"open_to_issuer\":false,\"peers\":1,\"peers_by_role\":{\"\\r\\n\":1}}]}"),
	};
	g_auto(result_t) r = RUN(answers, "t", "rooms list");

	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_null(strchr(r.out, '\x1b'));
	g_assert_null(strchr(r.out, '\a'));
	g_assert_null(strchr(r.out, '\r'));
	g_assert_nonnull(strstr(r.out, "r?]0;x?  café?"));
	g_assert_nonnull(strstr(r.out, "?" "?=1\n")); /* two cleaned bytes */
}

static void test_rooms_create(void)
{
	const struct canned answers[] = {
		ANSWER("POST", "/api/rooms", 201,
		  "{\"room_id\":\"3f2a9c1e5b7d4a60\",\"token\":\"0123456789abcdef0123456789abcdef\","
		  "\"expires_at\":1795677200}"),
	};
	g_auto(result_t) r = RUN(answers, "t",
				      "rooms create --expires-in 90m --max-peers 10 --name 'lab \"1\"' "
				      "--open-to-issuer");

	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(r.out, ==,
			"Room ID:  3f2a9c1e5b7d4a60\n"
			"Token:    0123456789abcdef0123456789abcdef\n"
			"Expires:  2026-11-26T07:13:20Z\n");
	g_assert_cmpstr(r.err, ==, "Keep the token now: it is not shown again.\n");
	g_assert_cmpstr(r.seen->pdata[0], ==,
			"POST /api/rooms\nAccept: application/json\r\nAuthorization: Bearer t\r\n"
			"Content-Type: application/json\r\n\n"
			"{\"expires_in\":5400,\"max_peers\":10,\"name\":\"lab \\\"1\\\"\",\"open_to_issuer\":true}");

	/* Nothing given: an empty object, the server's defaults. */
	const struct canned never[] = {
		ANSWER("POST", "/api/rooms", 201, "{\"room_id\":\"a\",\"token\":\"b\",\"expires_at\":null}"),
	};
	g_auto(result_t) n = RUN(never, "t", "room create");
	g_assert_cmpint(n.status, ==, CTL_EXIT_OK);
	g_assert_true(g_str_has_suffix(n.seen->pdata[0], "\n{}"));
	g_assert_cmpstr(n.out, ==, "Room ID:  a\nToken:    b\nExpires:  never\n");

	/* --json: the server's answer, and no reminder on stderr. */
	g_auto(result_t) j = RUN(never, "t", "rooms create --json");
	json_object *o = json_tokener_parse(j.out);
	g_assert_nonnull(o);
	g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "token")), ==, "b");
	g_assert_cmpstr(j.err, ==, "");
	json_object_put(o);
}

static void test_rooms_delete(void)
{
	const struct canned answers[] = {
		ANSWER("DELETE", "/api/rooms/lab", 200, "{\"room_id\":\"lab\",\"deleted\":true,\"peers_closed\":2}"),
		ANSWER("DELETE", "/api/rooms/one", 200, "{\"room_id\":\"one\",\"deleted\":true,\"peers_closed\":1}"),
		ANSWER("DELETE", "/api/rooms/a%2Fb%20c", 404, "{\"error\":\"no such room\"}"),
	};
	g_auto(result_t) r = RUN(answers, "t", "rooms delete lab");
	g_assert_cmpint(r.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(r.out, ==, "Room lab deleted; 2 peers closed.\n");
	g_auto(result_t) one = RUN(answers, "t", "room delete one");
	g_assert_cmpstr(one.out, ==, "Room one deleted; 1 peer closed.\n");

	/* The id is one path segment, whatever it holds. */
	g_auto(result_t) u = RUN(answers, "t", "rooms delete 'a/b c'");
	g_assert_cmpint(u.status, ==, CTL_EXIT_FAILED);
	g_assert_cmpstr(u.out, ==, "");
	g_assert_cmpstr(u.err, ==, "rtcsignalctl: the server refused: no such room (HTTP 404)\n");
}

/* --- keys --- */

static void test_keys(void)
{
	const struct canned answers[] = {
		ANSWER("POST", "/api/keys", 201,
		  "{\"key_id\":\"9b1c2d3e4f506172\",\"api_key\":\"9b1c2d3e4f506172.00112233445566778899aabbccddeeff\","
		  "\"room_id\":\"lab\",\"expires_at\":null}"),
		ANSWER("GET", "/api/keys", 200,
		  "{\"keys\":[{\"key_id\":\"9b1c2d3e4f506172\",\"room_id\":\"lab\",\"name\":\"ci\","
		  "\"created_at\":1795670000,\"expires_at\":null,\"revoked_at\":null},"
		  "{\"key_id\":\"01\",\"room_id\":\"3f2a9c1e5b7d4a60\",\"name\":null,\"created_at\":1795670000,"
		  "\"expires_at\":1795677200,\"revoked_at\":1795670001}]}"),
		ANSWER("DELETE", "/api/keys/01", 200, "{\"key_id\":\"01\",\"revoked\":true}"),
		ANSWER("DELETE", "/api/keys/02", 404, "{\"error\":\"no such key\"}"),
	};
	g_auto(result_t) c = RUN(answers, "t", "key create --room lab --name ci --expires-in 86400");
	g_assert_cmpint(c.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(c.out, ==,
			"Key ID:   9b1c2d3e4f506172\n"
			"Room ID:  lab\n"
			"API key:  9b1c2d3e4f506172.00112233445566778899aabbccddeeff\n"
			"Expires:  never\n");
	g_assert_cmpstr(c.err, ==, "Keep the API key now: it is not shown again.\n");
	g_assert_true(g_str_has_suffix(c.seen->pdata[0],
				       "\n{\"room_id\":\"lab\",\"name\":\"ci\",\"expires_in\":86400}"));
	g_auto(result_t) m = RUN(answers, "t", "keys create --room lab");
	g_assert_true(g_str_has_suffix(m.seen->pdata[0], "\n{\"room_id\":\"lab\"}"));

	g_auto(result_t) l = RUN(answers, "t", "keys list");
	g_assert_cmpint(l.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(l.out, ==,
		"KEY ID            ROOM ID           NAME  CREATED               EXPIRES               REVOKED\n"
		"9b1c2d3e4f506172  lab               ci    2026-11-26T05:13:20Z  never                 -\n"
		"01                3f2a9c1e5b7d4a60  -     2026-11-26T05:13:20Z  2026-11-26T07:13:20Z  2026-11-26T05:13:21Z\n");
	g_assert_null(strstr(l.out, "00112233")); /* never a secret */

	g_auto(result_t) v = RUN(answers, "t", "keys revoke 01");
	g_assert_cmpint(v.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(v.out, ==, "Key 01 revoked.\n");
	g_auto(result_t) u = RUN(answers, "t", "keys revoke 02");
	g_assert_cmpint(u.status, ==, CTL_EXIT_FAILED);
	g_assert_nonnull(strstr(u.err, "no such key (HTTP 404)"));

	const struct canned none[] = { ANSWER("GET", "/api/keys", 200, "{\"keys\":[]}") };
	g_auto(result_t) e = RUN(none, "t", "keys list");
	g_assert_cmpstr(e.out, ==, "No API keys.\n");
}

/* --- failures --- */

static void test_http_errors(void)
{
	static const struct {
		int status;
		const char *body;
		int exit;
		const char *err;
	} cases[] = {
		{ 401, "{\"error\":\"unauthorized\"}", CTL_EXIT_NOPERM,
		  "not authorized: the server refused the admin token from $RTCSIGNALD_ADMIN_TOKEN: "
		  "unauthorized (HTTP 401)" },
		{ 403, "{\"error\":\"admin API disabled: no [admin] token configured\"}", CTL_EXIT_NOPERM,
		  "admin API disabled: no [admin] token configured (HTTP 403)" },
		{ 400, "{\"error\":\"max_peers: must be positive\"}", CTL_EXIT_FAILED,
		  "the server refused: max_peers: must be positive (HTTP 400)" },
		{ 404, "{\"error\":\"not found\"}", CTL_EXIT_FAILED, "the server refused: not found (HTTP 404)" },
		{ 413, "", CTL_EXIT_FAILED, "the server refused: HTTP 413" },
		{ 500, "oops", CTL_EXIT_TEMPFAIL, "the server is unavailable, try again later: HTTP 500" },
		{ 503, "{\"error\":\"store busy\"}", CTL_EXIT_TEMPFAIL, "store busy (HTTP 503)" },
		{ 302, "", CTL_EXIT_FAILED, "unexpected answer from the server: HTTP 302" },
		{ 200, "not json", CTL_EXIT_FAILED, "HTTP 200 without a JSON object" },
		{ 200, "[1,2]", CTL_EXIT_FAILED, "HTTP 200 without a JSON object" },
		{ 200, "{\"rooms\":{}}", CTL_EXIT_FAILED, "'rooms' is missing" },
		{ 200, "{\"rooms\":[{\"room_id\":\"x\"}]}", CTL_EXIT_FAILED, "is missing or not what was expected" },
		{ 200, "{\"rooms\":[7]}", CTL_EXIT_FAILED, "'rooms' is missing" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const struct canned answers[] = { ANSWER("GET", "/api/rooms", cases[i].status, cases[i].body) };
		g_auto(result_t) r = RUN(answers, "t", "rooms list");
		g_test_message("HTTP %d %s", cases[i].status, cases[i].body);
		g_assert_cmpint(r.status, ==, cases[i].exit);
		g_assert_cmpstr(r.out, ==, "");
		g_assert_true(g_str_has_prefix(r.err, "rtcsignalctl: "));
		g_assert_nonnull(strstr(r.err, cases[i].err));
	}
}

static void test_transport_errors(void)
{
	const struct canned refused[] = { FAILURE("GET", "/health", ECONNREFUSED, false) };
	g_auto(result_t) r = RUN(refused, NULL, "status");
	g_assert_cmpint(r.status, ==, CTL_EXIT_UNAVAILABLE);
	g_assert_cmpstr(r.err, ==,
			"rtcsignalctl: cannot connect to the admin port at 127.0.0.1:8001: Connection refused\n");

	const struct canned slow[] = { FAILURE("GET", "/api/keys", ETIMEDOUT, true) };
	g_auto(result_t) s = RUN(slow, "t", "keys list --timeout 2");
	g_assert_cmpint(s.status, ==, CTL_EXIT_TEMPFAIL);
	g_assert_cmpstr(s.err, ==, "rtcsignalctl: no answer from the admin port at 127.0.0.1:8001 within 2 s\n");

	const struct canned unreachable[] = { FAILURE("GET", "/api/keys", ETIMEDOUT, false) };
	g_auto(result_t) u = RUN(unreachable, "t", "keys list");
	g_assert_cmpint(u.status, ==, CTL_EXIT_UNAVAILABLE);

	const struct canned garbled[] = { FAILURE("GET", "/api/keys", EPROTO, true) };
	g_auto(result_t) g = RUN(garbled, "t", "keys list");
	g_assert_cmpint(g.status, ==, CTL_EXIT_FAILED);
	g_assert_nonnull(strstr(g.err, "unexpected answer from the admin port at 127.0.0.1:8001"));
}

/* Without a token nothing is sent. */
static void test_no_token(void)
{
	const struct canned answers[] = { ANSWER("GET", "/api/rooms", 200, "{\"rooms\":[]}") };
	g_auto(result_t) r = RUN(answers, NULL, "rooms list");

	g_assert_cmpint(r.status, ==, CTL_EXIT_NOPERM);
	g_assert_cmpuint(r.seen->len, ==, 0);
	g_assert_nonnull(strstr(r.err, "not authorized: no admin token found"));
	g_assert_nonnull(strstr(r.err, "--token-file"));
	g_assert_nonnull(strstr(r.err, "RTCSIGNALD_ADMIN_TOKEN"));
}

/* --- the target: config, flags and environment --- */

struct dir {
	char *path;
};

static char *put(struct dir *d, const char *name, const char *text)
{
	char *path = g_build_filename(d->path, name, NULL);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return path;
}

/* ctl_target_init for a command line, the previous result released. */
struct resolved {
	int status;
	struct ctl_target t;
	char *err;
};

static void resolved_clear(struct resolved *x)
{
	ctl_target_clear(&x->t);
	g_clear_pointer(&x->err, g_free);
}

G_GNUC_PRINTF(2, 3)
static void resolve(struct resolved *x, const char *fmt, ...)
{
	g_autofree char *cmdline = NULL, *line = NULL;
	g_auto(GStrv) argv = NULL;
	g_autoptr(GString) out = g_string_new(NULL);
	GString *e = g_string_new(NULL);
	struct ctl_args a;
	va_list ap;
	int argc;

	resolved_clear(x);
	va_start(ap, fmt);
	cmdline = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	line = g_strconcat("rtcsignalctl ", cmdline, NULL);
	g_assert_true(g_shell_parse_argv(line, &argc, &argv, NULL));
	g_assert_cmpint(ctl_parse(argc, argv, &a, out, e), ==, CTL_EXIT_OK);
	x->status = ctl_target_init(&a, &x->t, e);
	ctl_args_clear(&a);
	x->err = g_string_free(e, FALSE);
}

static void test_target(void)
{
	struct dir d = { g_dir_make_tmp("ctl-test-XXXXXX", NULL) };
	g_autofree char *conf = put(&d, "c.conf", "[admin]\nlisten = 127.0.0.1:9123\ntoken_file = tok\n"
					       "[turn]\nsecret_file = /nonexistent/secret\n");
	g_autofree char *tok = put(&d, "tok", "  from-file\n");
	g_autofree char *other = put(&d, "other", "from-flag\n");
	g_autofree char *spaced = put(&d, "spaced", "two words\n");
	g_autofree char *credsdir = g_build_filename(d.path, "creds", NULL);
	struct resolved x = { 0 };

	g_assert_cmpint(mkdir(credsdir, 0700), ==, 0);
	g_autofree char *credtok = put(&d, "creds/tok", "from-credentials");
	g_unsetenv("RTCSIGNALD_ADMIN_TOKEN");
	g_unsetenv("CREDENTIALS_DIRECTORY");

	/* token_file next to the config; the TURN secret is not read. */
	resolve(&x, "-c %s rooms list", conf);
	g_assert_cmpint(x.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(x.err, ==, "");
	g_assert_cmpstr(x.t.admin.text, ==, "127.0.0.1:9123");
	g_assert_cmpstr(x.t.token, ==, "from-file");
	g_assert_nonnull(strstr(x.t.token_source, tok));

	g_setenv("CREDENTIALS_DIRECTORY", credsdir, TRUE);
	resolve(&x, "-c %s rooms list", conf);
	g_assert_cmpstr(x.t.token, ==, "from-credentials");
	g_unsetenv("CREDENTIALS_DIRECTORY");

	g_setenv("RTCSIGNALD_ADMIN_TOKEN", "from-env", TRUE);
	resolve(&x, "-c %s rooms list", conf);
	g_assert_cmpstr(x.t.token, ==, "from-env");
	g_assert_cmpstr(x.t.token_source, ==, "$RTCSIGNALD_ADMIN_TOKEN");

	/* --token-file beats the environment; --admin beats [admin] listen. */
	resolve(&x, "-c %s --token-file %s --admin [::1]:7 keys list", conf, other);
	g_assert_cmpint(x.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(x.t.token, ==, "from-flag");
	g_assert_cmpstr(x.t.admin.text, ==, "[::1]:7");
	g_unsetenv("RTCSIGNALD_ADMIN_TOKEN");

	/* A token that cannot go into a header line. */
	resolve(&x, "-c %s --token-file %s keys list", conf, spaced);
	g_assert_cmpint(x.status, ==, CTL_EXIT_CONFIG);
	g_assert_nonnull(strstr(x.err, "contains spaces or control characters"));

	/* An unreadable token: a configuration error, except for status,
	 * which needs none. */
	g_assert_cmpint(unlink(tok), ==, 0);
	resolve(&x, "-c %s rooms list", conf);
	g_assert_cmpint(x.status, ==, CTL_EXIT_CONFIG);
	g_assert_nonnull(strstr(x.err, "cannot read the admin token"));
	g_assert_nonnull(strstr(x.err, tok));
	resolve(&x, "-c %s status", conf);
	g_assert_cmpint(x.status, ==, CTL_EXIT_OK);
	g_assert_null(x.t.token);
	resolve(&x, "-c %s --token-file %s/missing keys list", conf, d.path);
	g_assert_cmpint(x.status, ==, CTL_EXIT_CONFIG);

	/* No token anywhere: found out when a command needs one. */
	g_autofree char *bare = put(&d, "bare.conf", "[admin]\nlisten = 0.0.0.0:8001\n");
	resolve(&x, "-c %s rooms list", bare);
	g_assert_cmpint(x.status, ==, CTL_EXIT_OK);
	g_assert_null(x.t.token);
	g_assert_cmpstr(x.t.admin.text, ==, "127.0.0.1:8001"); /* the wildcard, on loopback */
	g_autofree char *any6 = put(&d, "any6.conf", "[admin]\nlisten = [::]:8001\ntoken = x\n");
	resolve(&x, "-c %s rooms list", any6);
	g_assert_cmpint(x.status, ==, CTL_EXIT_OK);
	g_assert_cmpstr(x.t.admin.text, ==, "[::1]:8001");
	g_assert_cmpstr(x.t.token, ==, "x");
	g_assert_nonnull(strstr(x.t.token_source, "[admin] token in"));

	/* No admin port configured, a broken config, a bad --admin. */
	g_autofree char *none = put(&d, "none.conf", "[admin]\nlisten =\n");
	resolve(&x, "-c %s status", none);
	g_assert_cmpint(x.status, ==, CTL_EXIT_CONFIG);
	g_assert_nonnull(strstr(x.err, "has no admin port"));
	g_assert_nonnull(strstr(x.err, "--admin"));
	resolve(&x, "-c %s --admin 127.0.0.1:1 status", none);
	g_assert_cmpint(x.status, ==, CTL_EXIT_OK);
	g_autofree char *broken = put(&d, "broken.conf", "[admin]\nlisten = nowhere\n");
	resolve(&x, "-c %s status", broken);
	g_assert_cmpint(x.status, ==, CTL_EXIT_CONFIG);
	g_assert_true(g_str_has_prefix(x.err, "rtcsignalctl: invalid configuration: "));
	resolve(&x, "-c %s/absent.conf status", d.path);
	g_assert_cmpint(x.status, ==, CTL_EXIT_CONFIG);
	resolve(&x, "--admin localhost:8001 status");
	g_assert_cmpint(x.status, ==, CTL_EXIT_USAGE);
	g_assert_nonnull(strstr(x.err, "--admin: 'localhost:8001' is not a numeric"));
	resolved_clear(&x);

	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", d.path);
	g_assert_cmpint(system(rm), ==, 0);
	g_free(d.path);
}

/* The daemon's side of [admin] token and token_file. */
static void test_config_admin_token(void)
{
	struct dir d = { g_dir_make_tmp("ctl-test-XXXXXX", NULL) };
	g_autofree char *conf = put(&d, "c.conf", "[admin]\ntoken_file = tok\n");
	g_autofree char *tok = put(&d, "tok", "\t secret-1 \n\n");
	g_autoptr(GError) err = NULL;
	struct config *cfg;

	g_unsetenv("CREDENTIALS_DIRECTORY");
	g_assert_cmpint(config_load(conf, NULL, &cfg, &err), ==, 0);
	g_assert_cmpstr(cfg->admin_token, ==, "secret-1");
	g_assert_cmpstr(cfg->admin_token_file, ==, tok);
	config_free(cfg);

	/* no_secret_files: the path is resolved, the file left unread. */
	const struct config_overrides ov = { .no_secret_files = true };
	g_assert_cmpint(config_load(conf, &ov, &cfg, &err), ==, 0);
	g_assert_null(cfg->admin_token);
	g_assert_cmpstr(cfg->admin_token_file, ==, tok);
	config_free(cfg);

	g_autofree char *abs = g_strdup_printf("[admin]\ntoken_file = %s\n", tok);
	g_autofree char *conf2 = put(&d, "abs.conf", abs);
	g_setenv("CREDENTIALS_DIRECTORY", "/nonexistent", TRUE); /* absolute names ignore it */
	g_assert_cmpint(config_load(conf2, NULL, &cfg, &err), ==, 0);
	g_assert_cmpstr(cfg->admin_token, ==, "secret-1");
	config_free(cfg);
	g_assert_cmpint(config_load(conf, NULL, &cfg, &err), ==, -ENOENT);
	g_assert_nonnull(strstr(err->message, "[admin] token_file"));
	g_assert_nonnull(strstr(err->message, "/nonexistent/tok"));
	g_clear_error(&err);
	g_unsetenv("CREDENTIALS_DIRECTORY");

	g_assert_true(g_file_set_contents(tok, " \n", -1, NULL));
	g_assert_cmpint(config_load(conf, NULL, &cfg, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err->message, "is empty"));
	g_clear_error(&err);

	g_autofree char *both = put(&d, "both.conf", "[admin]\ntoken = a\ntoken_file = tok\n");
	g_assert_cmpint(config_load(both, NULL, &cfg, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err->message, "[admin] token and token_file are mutually exclusive"));
	g_clear_error(&err);

	g_autofree char *inline_conf = put(&d, "inline.conf", "[admin]\ntoken = abc\n");
	g_assert_cmpint(config_load(inline_conf, NULL, &cfg, &err), ==, 0);
	g_assert_cmpstr(cfg->admin_token, ==, "abc");
	g_assert_null(cfg->admin_token_file);
	config_free(cfg);

	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", d.path);
	g_assert_cmpint(system(rm), ==, 0);
	g_free(d.path);
}

/* --- bash completion --- */

/* What the completion offers for WORDS (the last one being completed). */
static GPtrArray *complete(const char *words)
{
	g_autofree char *file = g_test_build_filename(G_TEST_DIST, "..", "data",
						      "rtcsignalctl.bash-completion", NULL);
	g_autofree char *script = g_strdup_printf(
		"source '%s' && COMP_WORDS=(%s) && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && "
		"_rtcsignalctl && printf '%%s\\n' \"${COMPREPLY[@]}\"", file, words);
	const char *argv[] = { "bash", "--norc", "-c", script, NULL };
	g_autofree char *out = NULL;
	int status;
	GPtrArray *list = g_ptr_array_new_with_free_func(g_free);

	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
				   NULL, &status, NULL));
	g_assert_true(g_spawn_check_wait_status(status, NULL));
	g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
	for (char **l = lines; *l; l++)
		if (**l)
			g_ptr_array_add(list, g_strdup(*l));
	return list;
}

static bool has(GPtrArray *list, const char *s)
{
	return g_ptr_array_find_with_equal_func(list, s, g_str_equal, NULL);
}

static void test_bash_completion(void)
{
	g_autoptr(GPtrArray) top = complete("rtcsignalctl ''");
	g_assert_cmpuint(top->len, ==, 3);
	g_assert_true(has(top, "status") && has(top, "rooms") && has(top, "keys"));
	g_autoptr(GPtrArray) rooms = complete("rtcsignalctl --config /x room ''");
	g_assert_true(has(rooms, "list") && has(rooms, "create") && has(rooms, "delete"));
	g_autoptr(GPtrArray) keys = complete("rtcsignalctl keys ''");
	g_assert_true(has(keys, "list") && has(keys, "create") && has(keys, "revoke"));
	g_autoptr(GPtrArray) list = complete("rtcsignalctl rooms list --");
	g_assert_false(has(list, "--name"));

	/* Between them, the two create commands are offered every long
	 * option that --help names. */
	g_autoptr(GPtrArray) r = complete("rtcsignalctl rooms create --");
	g_autoptr(GPtrArray) k = complete("rtcsignalctl keys create --");
	g_autofree char *help = NULL, *err = NULL;
	g_autoptr(GRegex) re = g_regex_new("^  (?:-., )?(--[a-z-]+)", G_REGEX_MULTILINE, 0, NULL);
	g_autoptr(GMatchInfo) m = NULL;
	unsigned n = 0;

	g_assert_cmpint(run_main("--help", &help, &err), ==, CTL_EXIT_OK);
	for (g_regex_match(re, help, 0, &m); g_match_info_matches(m); g_match_info_next(m, NULL), n++) {
		g_autofree char *opt = g_match_info_fetch(m, 1);
		g_test_message("%s", opt);
		g_assert_true(has(r, opt) || has(k, opt));
	}
	g_assert_cmpuint(n, ==, 14);
	g_assert_cmpuint(r->len + k->len, ==, 2 * 7 + 4 + 5);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_setenv("LC_ALL", "C", TRUE); /* untranslated messages */
	g_test_add_func("/ctl/parse/commands", test_parse_commands);
	g_test_add_func("/ctl/parse/options", test_parse_options);
	g_test_add_func("/ctl/parse/usage", test_parse_usage);
	g_test_add_func("/ctl/parse/help-and-version", test_help_and_version);
	g_test_add_func("/ctl/status", test_status);
	g_test_add_func("/ctl/status/not-ready", test_status_not_ready);
	g_test_add_func("/ctl/status/json", test_status_json);
	g_test_add_func("/ctl/status/authentication", test_status_authentication);
	g_test_add_func("/ctl/status/metrics-refused", test_status_metrics_refused);
	g_test_add_func("/ctl/rooms/list", test_rooms_list);
	g_test_add_func("/ctl/rooms/list-empty-and-json", test_rooms_list_empty_and_json);
	g_test_add_func("/ctl/rooms/list-sanitized", test_rooms_list_sanitized);
	g_test_add_func("/ctl/rooms/create", test_rooms_create);
	g_test_add_func("/ctl/rooms/delete", test_rooms_delete);
	g_test_add_func("/ctl/keys", test_keys);
	g_test_add_func("/ctl/errors/http", test_http_errors);
	g_test_add_func("/ctl/errors/transport", test_transport_errors);
	g_test_add_func("/ctl/errors/no-token", test_no_token);
	g_test_add_func("/ctl/target", test_target);
	g_test_add_func("/ctl/bash-completion", test_bash_completion);
	g_test_add_func("/config/admin-token", test_config_admin_token);
	return g_test_run();
}
