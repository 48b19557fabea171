#include "core/protocol.h"

#include "core/jscan.h"
#include "util/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const type_names[MSG__COUNT] = {
	[MSG_UNKNOWN] = "unknown",
	[MSG_REGISTER] = "register",
	[MSG_DISCOVER_PEERS] = "discover_peers",
	[MSG_UPDATE_METADATA] = "update_metadata",
	[MSG_PEER_MESSAGE] = "peer_message",
	[MSG_OFFER] = "offer",
	[MSG_ANSWER] = "answer",
	[MSG_CANDIDATE] = "candidate",
	[MSG_MESH_CONNECT] = "mesh_connect",
	[MSG_MESH_ANSWER] = "mesh_answer",
	[MSG_ICE_CANDIDATE] = "ice_candidate",
	[MSG_PING] = "ping",
	[MSG_PONG] = "pong",
	[MSG_CREATE_ROOM] = "create_room",
	[MSG_SUBSCRIBE] = "subscribe",
	[MSG_UNSUBSCRIBE] = "unsubscribe",
	[MSG_UNWATCH] = "unwatch",
	[MSG_ERROR] = "error",
	[MSG_JOB_STATUS] = "job_status",
	[MSG_JOB_PROGRESS] = "job_progress",
	[MSG_ENCRYPTED_RELAY] = "encrypted_relay",
	[MSG_FS_LIST_RES] = "fs_list_res",
	[MSG_WORKER_PATH_OK] = "worker_path_ok",
	[MSG_WORKER_PATH_ERROR] = "worker_path_error",
	[MSG_FS_CHECK_VIDEOS_RESPONSE] = "fs_check_videos_response",
	[MSG_KEY_EXCHANGE_RESPONSE] = "key_exchange_response",
};

/* The messages the server routes to one peer: the sender's field, the
 * target's, and the body's (NULL: the signal messages, forwarded whole),
 * with the type and body field the target receives. */
static const struct route_fields {
	const char *from, *to, *body;
	const char *out_type, *out_body;
} route_fields[MSG__COUNT] = {
	[MSG_PEER_MESSAGE] = { "from_peer_id", "to_peer_id", "payload", "peer_message", "payload" },
	[MSG_MESH_CONNECT] = { "from_peer_id", "target_peer_id", "offer", "mesh_offer", "offer" },
	[MSG_MESH_ANSWER] = { "from_peer_id", "target_peer_id", "answer", "mesh_answer", "answer" },
	[MSG_ICE_CANDIDATE] = { "from_peer_id", "target_peer_id", "candidate", "ice_candidate",
				"candidate" },
	[MSG_OFFER] = { "sender", "target", NULL, NULL, NULL },
	[MSG_ANSWER] = { "sender", "target", NULL, NULL, NULL },
	[MSG_CANDIDATE] = { "sender", "target", NULL, NULL, NULL },
};

static const char *const code_names[ERR__COUNT] = {
	[ERR_INVALID_JSON] = "INVALID_JSON",
	[ERR_UNKNOWN_MESSAGE_TYPE] = "UNKNOWN_MESSAGE_TYPE",
	[ERR_INVALID_MESSAGE] = "INVALID_MESSAGE",
	[ERR_INVALID_FILTER] = "INVALID_FILTER",
	[ERR_AUTH_REQUIRED] = "AUTH_REQUIRED",
	[ERR_AUTH_FAILED] = "AUTH_FAILED",
	[ERR_FORBIDDEN] = "FORBIDDEN",
	[ERR_NOT_IN_ROOM] = "NOT_IN_ROOM",
	[ERR_ROOM_NOT_FOUND] = "ROOM_NOT_FOUND",
	[ERR_ROOM_EXPIRED] = "ROOM_EXPIRED",
	[ERR_ROOM_FULL] = "ROOM_FULL",
	[ERR_PEER_ID_TAKEN] = "PEER_ID_TAKEN",
	[ERR_PEER_NOT_IN_ROOM] = "PEER_NOT_IN_ROOM",
	[ERR_PEER_NOT_FOUND] = "PEER_NOT_FOUND",
	[ERR_DELIVERY_FAILED] = "DELIVERY_FAILED",
	[ERR_RATE_LIMITED] = "RATE_LIMITED",
	[ERR_SESSION_REPLACED] = "SESSION_REPLACED",
	[ERR_SERVER_SHUTTING_DOWN] = "SERVER_SHUTTING_DOWN",
	[ERR_SERVICE_UNAVAILABLE] = "SERVICE_UNAVAILABLE",
	[ERR_WATCH_NOT_FOUND] = "WATCH_NOT_FOUND",
};

const char *protocol_type_name(enum msg_type t)
{
	return t < MSG__COUNT ? type_names[t] : "unknown";
}

const char *protocol_code_name(enum err_code c)
{
	return c < ERR__COUNT ? code_names[c] : "UNKNOWN";
}

const char *protocol_version_name(enum protocol_version v)
{
	return v == PROTOCOL_V21 ? "2.1" : "2.0";
}

/* At most 64 bytes of TEXT for an error message, not cutting a UTF-8
 * character in two. */
static int echo_len(const char *text, size_t len)
{
	size_t n = MIN(len, 64);
	while (n > 0 && n < len && ((unsigned char)text[n] & 0xc0) == 0x80)
		n--;
	return (int)n;
}

static int fail(struct msg_error *err, enum err_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct msg_error *err, enum err_code code, const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	err->limit = PROTOCOL_LIMIT_NONE;
	err->v20_closed = false;
	err->field = err->field_value = NULL;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Room ids (docs/protocol.md, "Identity"): 1 to 128 of A-Z a-z 0-9 . _ - */
static bool valid_room_id(const char *id, size_t len)
{
	if (len == 0 || len > REGISTRY_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!g_ascii_isalnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
			return false;
	return true;
}

/* A string of 1..128 bytes without NUL; *OUT points into the JSON tree. */
static bool get_string(json_object *v, const char **out)
{
	int len;
	if (!json_object_is_type(v, json_type_string))
		return false;
	*out = json_object_get_string(v);
	len = json_object_get_string_len(v);
	return len > 0 && len <= REGISTRY_ID_MAX && strlen(*out) == (size_t)len;
}

/* A string without NUL: json-c keeps the length, but C reads up to the
 * first NUL, so "a\u0000b" would be taken as "a". */
static bool no_nul(json_object *v)
{
	return strlen(json_object_get_string(v)) == (size_t)json_object_get_string_len(v);
}

/* An integer that json-c holds exactly: it clamps what is out of range to
 * INT64_MIN, or to INT64_MAX and above (kept as unsigned), so those edges
 * are refused with all beyond them.  Fractions and exponents are doubles. */
static bool exact_int(json_object *v, int64_t *out)
{
	if (!json_object_is_type(v, json_type_int))
		return false;
	*out = json_object_get_int64(v);
	return *out != INT64_MIN && (*out != INT64_MAX || json_object_get_uint64(v) == INT64_MAX);
}

/* A peer id field: a string, or an integer turned into its decimal text.
 * Absent or null leaves *OUT NULL, which is an error when REQUIRED. */
static int get_id(struct msg *m, int slot, const char *key, bool required, const char **out,
		  struct msg_error *err)
{
	json_object *v = NULL;

	*out = NULL;
	if (!json_object_object_get_ex(m->root, key, &v) || !v) {
		if (required)
			return fail(err, ERR_INVALID_MESSAGE, "Missing field: %s", key);
		return 0;
	}
	if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
		/* "1e3", "1.0" or a clamped 1e30 would be ids that other
		 * numbers, or strings, also spell. */
		int64_t n;
		if (!exact_int(v, &n))
			return fail(err, ERR_INVALID_MESSAGE,
				    "Invalid field: %s must be a string or an integer within 64 bits", key);
		snprintf(m->idbuf[slot], sizeof m->idbuf[slot], "%" PRId64, n);
		*out = m->idbuf[slot];
		return 0;
	}
	if (!get_string(v, out))
		return fail(err, ERR_INVALID_MESSAGE,
			    "Invalid field: %s must be a string of 1 to %d bytes", key, REGISTRY_ID_MAX);
	return 0;
}

/* An optional field of type T: absent or null leaves *OUT NULL, any other
 * type is INVALID_MESSAGE. */
static int get_opt(json_object *root, const char *key, enum json_type t, json_object **out,
		   struct msg_error *err)
{
	json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(root, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, t))
		return fail(err, ERR_INVALID_MESSAGE, "Invalid field: %s must be %s", key,
			    t == json_type_object    ? "an object"
			    : t == json_type_boolean ? "a boolean"
			    : t == json_type_int     ? "an integer"
						     : "a string");
	*out = v;
	return 0;
}

/* An optional string of any length (credentials). */
static int get_opt_string(json_object *root, const char *key, const char **out,
			  struct msg_error *err)
{
	json_object *v;
	int rc = get_opt(root, key, json_type_string, &v, err);
	*out = v ? json_object_get_string(v) : NULL;
	if (v && !no_nul(v))
		return fail(err, ERR_INVALID_MESSAGE, "Invalid field: %s must not contain \\u0000", key);
	return rc;
}

/* "events": a non-empty array of the names of events; only "presence"
 * exists.  Absent leaves *PRESENCE false unless REQUIRED. */
static int get_events(json_object *root, bool required, bool *presence, struct msg_error *err)
{
	json_object *v;
	size_t n;

	*presence = false;
	if (!json_object_object_get_ex(root, "events", &v) || !v) {
		if (required)
			return fail(err, ERR_INVALID_MESSAGE, "Missing field: events");
		return 0;
	}
	if (!json_object_is_type(v, json_type_array) || (n = json_object_array_length(v)) == 0)
		return fail(err, ERR_INVALID_MESSAGE,
			    "Invalid field: events must be a non-empty array of event names");
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);
		const char *name = json_object_is_type(e, json_type_string) ? json_object_get_string(e) : NULL;
		if (!name)
			return fail(err, ERR_INVALID_MESSAGE, "Invalid field: events must hold strings");
		if (strcmp(name, "presence") != 0)
			return fail(err, ERR_INVALID_MESSAGE, "Unknown event: %.*s",
				    echo_len(name, strlen(name)), name);
		*presence = true;
	}
	return 0;
}

static int decode_register(struct msg *m, struct msg_error *err)
{
	struct msg_register *r = &m->reg;
	json_object *v;
	int rc;

	if ((rc = get_id(m, 0, "peer_id", false, &r->peer_id, err)) < 0 ||
	    (rc = get_opt_string(m->root, "room_id", &r->room_id, err)) < 0)
		return rc;
	if (r->room_id && !valid_room_id(r->room_id, strlen(r->room_id)))
		return fail(err, ERR_INVALID_MESSAGE,
			    "Invalid field: room_id must be 1 to %d characters of A-Z a-z 0-9 . _ -",
			    REGISTRY_ID_MAX);
	if ((rc = get_opt(m->root, "token", json_type_string, &r->token, err)) < 0)
		return rc;
	if (r->token && !no_nul(r->token))
		return fail(err, ERR_INVALID_MESSAGE, "Invalid field: token must not contain \\u0000");
	if ((rc = get_opt_string(m->root, "jwt", &r->jwt, err)) < 0 ||
	    (!r->jwt && (rc = get_opt_string(m->root, "id_token", &r->jwt, err)) < 0) ||
	    (rc = get_opt_string(m->root, "api_key", &r->api_key, err)) < 0 ||
	    (rc = get_opt(m->root, "metadata", json_type_object, &r->metadata, err)) < 0 ||
	    (rc = get_opt(m->root, "is_admin", json_type_boolean, &v, err)) < 0)
		return rc;
	r->is_admin = v && json_object_get_boolean(v);
	/* What the session speaks: the original server's clients say
	 * nothing, so nothing is 2.0. */
	if (json_object_object_get_ex(m->root, "protocol", &v) && v) {
		const char *ver = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (strcmp(ver, "2.1") == 0)
			r->version = PROTOCOL_V21;
		else if (strcmp(ver, "2.0") != 0)
			return fail(err, ERR_INVALID_MESSAGE,
				    "Invalid field: protocol must be \"2.0\" or \"2.1\"");
	}
	r->role = "peer";
	if (json_object_object_get_ex(m->root, "role", &v) && v && !get_string(v, &r->role))
		return fail(err, ERR_INVALID_MESSAGE,
			    "Invalid field: role must be a string of 1 to %d bytes", REGISTRY_ID_MAX);
	return get_events(m->root, false, &r->presence, err);
}

static int decode_discover(struct msg *m, struct msg_error *err)
{
	struct msg_discover *d = &m->discover;
	json_object *v;
	int rc;

	if ((rc = get_id(m, 0, "from_peer_id", false, &d->from, err)) < 0 ||
	    (rc = get_opt(m->root, "filters", json_type_object, &d->filters, err)) < 0)
		return rc;
	d->limit = PROTOCOL_DISCOVER_LIMIT;
	if (json_object_object_get_ex(m->root, "limit", &v) && v) {
		int64_t n = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || n < 1)
			return fail(err, ERR_INVALID_MESSAGE,
				    "Invalid field: limit must be a positive integer");
		d->limit = n < PROTOCOL_DISCOVER_LIMIT ? (unsigned)n : PROTOCOL_DISCOVER_LIMIT;
	}
	if ((rc = get_opt(m->root, "watch", json_type_boolean, &v, err)) < 0)
		return rc;
	d->watch = v && json_object_get_boolean(v);
	return 0;
}

static int decode_unwatch(struct msg *m, struct msg_error *err)
{
	json_object *v;

	if (!json_object_object_get_ex(m->root, "watch_id", &v) || !v)
		return fail(err, ERR_INVALID_MESSAGE, "Missing field: watch_id");
	if (!get_string(v, &m->unwatch.watch_id))
		return fail(err, ERR_INVALID_MESSAGE,
			    "Invalid field: watch_id must be a string of 1 to %d bytes", REGISTRY_ID_MAX);
	return 0;
}

static int decode_update(struct msg *m, struct msg_error *err)
{
	int rc;

	if ((rc = get_id(m, 0, "peer_id", false, &m->update.peer_id, err)) < 0 ||
	    (rc = get_opt(m->root, "metadata", json_type_object, &m->update.metadata, err)) < 0)
		return rc;
	if (!m->update.metadata)
		return fail(err, ERR_INVALID_MESSAGE, "Missing field: metadata");
	return 0;
}

static int decode_route(struct msg *m, struct msg_error *err)
{
	const struct route_fields *rf = &route_fields[m->type];
	struct msg_route *r = &m->route;
	int rc;

	r->to_field = rf->to;
	if ((rc = get_id(m, 0, rf->from, false, &r->from, err)) < 0 ||
	    (rc = get_id(m, 1, rf->to, true, &r->to, err)) < 0)
		return rc;
	/* The body may be any JSON value, null included, but must be there. */
	if (!json_object_object_get_ex(m->root, rf->body, &r->body))
		return fail(err, ERR_INVALID_MESSAGE, "Missing field: %s", rf->body);
	return 0;
}

int protocol_decode_create_room(json_object *obj, struct msg_create_room *out,
				struct msg_error *err)
{
	json_object *v;
	int rc;

	memset(out, 0, sizeof *out);
	out->expires_in = -1;
	if ((rc = get_opt(obj, "expires_in", json_type_int, &v, err)) < 0)
		return rc;
	if (v) {
		out->expires_in = json_object_get_int64(v);
		if (out->expires_in < 0 || out->expires_in > PROTOCOL_EXPIRES_IN_MAX)
			return fail(err, ERR_INVALID_MESSAGE,
				    "Invalid field: expires_in must be 0 or more, in seconds, at most %d",
				    PROTOCOL_EXPIRES_IN_MAX);
	}
	if ((rc = get_opt(obj, "max_peers", json_type_int, &v, err)) < 0)
		return rc;
	if (v) {
		int64_t n = json_object_get_int64(v);
		if (n < 1 || n > 10000000)
			return fail(err, ERR_INVALID_MESSAGE, "Invalid field: max_peers must be at least 1");
		out->max_peers = (unsigned)n;
	}
	if ((rc = get_opt(obj, "name", json_type_string, &v, err)) < 0)
		return rc;
	if (v && !get_string(v, &out->name))
		return fail(err, ERR_INVALID_MESSAGE,
			    "Invalid field: name must be a string of 1 to %d bytes", REGISTRY_ID_MAX);
	if ((rc = get_opt(obj, "open_to_issuer", json_type_boolean, &v, err)) < 0)
		return rc;
	out->open_to_issuer = v && json_object_get_boolean(v);
	return 0;
}

static int decode_signal(struct msg *m, struct msg_error *err)
{
	int rc;
	if ((rc = get_id(m, 0, route_fields[m->type].from, false, &m->signal.sender, err)) < 0)
		return rc;
	return get_id(m, 1, route_fields[m->type].to, true, &m->signal.target, err);
}

/* A relayed type names its peer in "target" (a busy worker's error) or
 * "to_peer_id"; one that names none, or not as an id, is only counted. */
static int decode_relay(struct msg *m)
{
	struct msg_error ignored;

	if (get_id(m, 1, "target", false, &m->relay.target, &ignored) < 0 || !m->relay.target)
		if (get_id(m, 1, "to_peer_id", false, &m->relay.target, &ignored) < 0)
			m->relay.target = NULL;
	return 0;
}

/* What protocol_decode() learns of a message's top level before any tree. */
struct top {
	struct jscan_member type; /* the last "type", as json-c keeps */
	bool has_type;
	bool escaped_key; /* then only json-c can say which is "type" */
};

static void note_member(const struct jscan_member *v, void *data)
{
	struct top *top = data;
	top->escaped_key |= v->key_escaped;
	if (v->key_len == 4 && memcmp(v->key, "type", 4) == 0) {
		top->type = *v;
		top->has_type = true;
	}
}

/* The gate before json-c: only RFC 8259 JSON within LIM passes.  Fills
 * TOP from the object's members. */
static int check_json(const struct protocol_limits *lim, const char *text, size_t len,
		      struct top *top, struct msg_error *err)
{
	size_t i = 0;
	int rc;

	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	rc = jscan_check(text, len, lim->max_depth, lim->max_values, note_member, top);
	switch (rc) {
	case JSCAN_OK:
		if (i == len || text[i] != '{') {
			/* JSON, but no object: the original server's handler
			 * raised and the connection closed, with no error. */
			rc = fail(err, ERR_INVALID_JSON, "Invalid JSON format");
			err->v20_closed = true;
			return rc;
		}
		/* A binary frame's UTF-8 is checked here, not by json-c: a
		 * parse json-c abandons part way leaves a half-read \u escape
		 * in its tokener, which json_tokener_reset() (json-c 0.16) does
		 * not clear, and the next message parsed, anyone's, would get a
		 * U+FFFD.  Past this gate json-c never fails. */
		if (!g_utf8_validate_len(text, len, NULL))
			return fail(err, ERR_INVALID_JSON, "Invalid JSON format");
		return 0;
	case JSCAN_TOO_DEEP:
		rc = fail(err, ERR_INVALID_JSON, "JSON nested deeper than %u levels", lim->max_depth);
		err->limit = PROTOCOL_LIMIT_DEPTH;
		err->v20_closed = true;
		return rc;
	case JSCAN_TOO_MANY:
		rc = fail(err, ERR_INVALID_JSON, "JSON of more than %zu values", lim->max_values);
		err->limit = PROTOCOL_LIMIT_VALUES;
		err->v20_closed = true;
		return rc;
	case JSCAN_NUL_KEY:
		return fail(err, ERR_INVALID_MESSAGE, "Invalid key: keys must not contain \\u0000");
	default:
		return fail(err, ERR_INVALID_JSON, "Invalid JSON format");
	}
}

/* Ping, pong and unknown types from the scan alone: their other members
 * are ignored, so no tree is built for them, however big.  1 when decided
 * (0 or a failure in *RC), 0 when json-c must read the message. */
static int decode_without_tree(const struct top *top, const char *text, size_t len, struct msg *m,
			       struct msg_error *err, int *rc)
{
	const struct jscan_member *t = top->has_type ? &top->type : NULL;

	if (top->escaped_key || (t && (t->kind != JSCAN_STRING || t->escaped)))
		return 0;
	if (!t) {
		*rc = fail(err, ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: None");
		return 1;
	}
	for (int i = MSG_UNKNOWN + 1; i < MSG__COUNT && m->type == MSG_UNKNOWN; i++)
		if (strlen(type_names[i]) == t->value_len &&
		    memcmp(type_names[i], t->value, t->value_len) == 0)
			m->type = (enum msg_type)i;
	if (m->type == MSG_UNKNOWN) {
		*rc = fail(err, ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: %.*s",
			   echo_len(t->value, t->value_len), t->value);
		return 1;
	}
	if (m->type != MSG_PING && m->type != MSG_PONG) {
		m->type = MSG_UNKNOWN;
		return 0;
	}
	*rc = 0;
	return 1;
}

int protocol_decode(json_tokener *tok, const struct protocol_limits *lim, const char *text,
		    size_t len, struct msg *m, struct msg_error *err)
{
	struct top top = { 0 };
	json_object *type;
	int rc;

	memset(m, 0, offsetof(struct msg, idbuf));
	if ((rc = check_json(lim, text, len, &top, err)) < 0 ||
	    decode_without_tree(&top, text, len, m, err, &rc))
		return rc;
	json_tokener_reset(tok);
	m->root = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len ||
	    !json_object_is_type(m->root, json_type_object))
		return fail(err, ERR_INVALID_JSON, "Invalid JSON format");

	if (!json_object_object_get_ex(m->root, "type", &type) ||
	    !json_object_is_type(type, json_type_string))
		return fail(err, ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: %s",
			    type ? json_object_to_json_string_ext(type, JSON_FLAGS) : "None");
	const char *type_text = json_object_get_string(type);
	for (int t = MSG_UNKNOWN + 1; t < MSG__COUNT && m->type == MSG_UNKNOWN; t++)
		if (strcmp(type_names[t], type_text) == 0)
			m->type = (enum msg_type)t;

	switch (m->type) {
	case MSG_UNKNOWN:
		return fail(err, ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: %.*s",
			    echo_len(type_text, strlen(type_text)), type_text);
	case MSG_REGISTER:
		return decode_register(m, err);
	case MSG_DISCOVER_PEERS:
		return decode_discover(m, err);
	case MSG_UPDATE_METADATA:
		return decode_update(m, err);
	case MSG_PEER_MESSAGE:
	case MSG_MESH_CONNECT:
	case MSG_MESH_ANSWER:
	case MSG_ICE_CANDIDATE:
		return decode_route(m, err);
	case MSG_OFFER:
	case MSG_ANSWER:
	case MSG_CANDIDATE:
		return decode_signal(m, err);
	case MSG_CREATE_ROOM:
		return protocol_decode_create_room(m->root, &m->create, err);
	case MSG_SUBSCRIBE:
	case MSG_UNSUBSCRIBE:
		return get_events(m->root, true, &m->subscribe.presence, err);
	case MSG_UNWATCH:
		return decode_unwatch(m, err);
	default:
		if (protocol_is_relay(m->type))
			return decode_relay(m);
		return 0;
	}
}

/* A plain string id: no escapes (json-c would unescape them), 1 to
 * REGISTRY_ID_MAX bytes; copied to M's buffer SLOT. */
static bool plain_id(struct msg *m, int slot, const struct jscan_member *v, const char **out)
{
	if (v->kind != JSCAN_STRING || v->escaped || !v->value_len || v->value_len > REGISTRY_ID_MAX)
		return false;
	memcpy(m->idbuf[slot], v->value, v->value_len);
	m->idbuf[slot][v->value_len] = '\0';
	*out = m->idbuf[slot];
	return true;
}

static bool is_key(const struct jscan_member *v, const char *name)
{
	size_t n = strlen(name);
	return v->key_len == n && memcmp(v->key, name, n) == 0;
}

int protocol_decode_routed(const char *text, size_t len, const struct protocol_limits *lim,
			   struct msg *m)
{
	struct jscan_member members[16];
	const struct jscan_member *type = NULL, *from = NULL, *to = NULL, *body = NULL;
	size_t n;

	memset(m, 0, offsetof(struct msg, idbuf));
	if (jscan_object(text, len, lim->max_depth, lim->max_values, members, G_N_ELEMENTS(members),
			 &n) < 0)
		return -1;
	for (size_t i = 0; i < n && !type; i++)
		if (is_key(&members[i], "type"))
			type = &members[i];
	if (!type || type->kind != JSCAN_STRING || type->escaped)
		return -1;
	for (int t = MSG_UNKNOWN + 1; t < MSG__COUNT; t++)
		if (strlen(type_names[t]) == type->value_len &&
		    memcmp(type_names[t], type->value, type->value_len) == 0)
			m->type = (enum msg_type)t;
	const struct route_fields *rf = &route_fields[m->type];
	if (!rf->from)
		return -1;
	/* A repeated field is json-c's to settle (the last one wins). */
	for (size_t i = 0; i < n; i++) {
		const struct jscan_member *v = &members[i], **slot = NULL;
		if (is_key(v, rf->from))
			slot = &from;
		else if (is_key(v, rf->to))
			slot = &to;
		else if (rf->body && is_key(v, rf->body))
			slot = &body;
		else if (v != type && is_key(v, "type"))
			return -1;
		/* The server writes these of a signal (protocol_signal). */
		else if (!rf->body && (is_key(v, "role") || is_key(v, "sender_role")))
			return -1;
		if (slot && *slot)
			return -1;
		if (slot)
			*slot = v;
	}
	const char **from_out = rf->body ? &m->route.from : &m->signal.sender;
	const char **to_out = rf->body ? &m->route.to : &m->signal.target;
	if (!to || !plain_id(m, 1, to, to_out) || (from && !plain_id(m, 0, from, from_out)))
		return -1;
	if (rf->body) {
		if (!body)
			return -1;
		m->route.to_field = rf->to;
		m->route.body_text = body->kind == JSCAN_STRING ? body->value - 1 : body->value;
		m->route.body_len = body->kind == JSCAN_STRING ? body->value_len + 2 : body->value_len;
	}
	return 0;
}

json_object *protocol_parse_object(json_tokener *tok, const struct protocol_limits *lim,
				   const char *text, size_t len)
{
	if (jscan_check(text, len, lim->max_depth, lim->max_values, NULL, NULL) != JSCAN_OK ||
	    !g_utf8_validate_len(text, len, NULL)) /* as check_json() */
		return NULL;
	return json_parse_object(tok, text, len);
}

void msg_clear(struct msg *m)
{
	json_object_put(m->root);
	m->root = NULL;
}

struct msgbuf *protocol_error(enum err_code code, const char *message, const char *field,
			      const char *field_value)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(o, "code", json_object_new_string(protocol_code_name(code)));
	json_object_object_add(o, "message", json_object_new_string(message));
	json_object_object_add(o, "reason", json_object_new_string(message));
	if (field && field_value)
		json_object_object_add(o, field, json_object_new_string(field_value));
	struct msgbuf *m = msgbuf_from_json(o);
	json_object_put(o);
	return m;
}

struct msgbuf *protocol_error_from(const struct msg_error *e)
{
	return protocol_error(e->code, e->message, e->field, e->field_value);
}

#define PUT(w, text, len) (memcpy(w, text, len), (w) += (len))
#define PUT_LITERAL(w, lit) PUT(w, lit, sizeof lit - 1)

static struct msgbuf *finish(GString *s)
{
	return msgbuf_new(s->str, s->len);
}

static void append_room_id(GString *s, const struct room *room)
{
	/* Room ids are [A-Za-z0-9._-]: nothing to escape. */
	g_string_append_c(s, '"');
	g_string_append(s, room->id);
	g_string_append_c(s, '"');
}

/* The length of what put_room_mates() writes. */
static size_t room_mates_len(const struct peer *self, bool with_metadata)
{
	size_t n = 2, count = 0;
	struct peer *p;

	ROOM_FOREACH_PEER(self->room, p) {
		if (p == self)
			continue;
		n += p->id_json_len + (with_metadata ? 1 + p->meta->public_len : 0);
		count++;
	}
	return n + (count ? count - 1 : 0);
}

/* The other peers of SELF's room in registration order, written at W:
 * their ids as an array, or with their public metadata as an object.
 * Returns the end. */
static char *put_room_mates(char *w, const struct peer *self, bool with_metadata)
{
	bool first = true;
	struct peer *p;

	*w++ = with_metadata ? '{' : '[';
	ROOM_FOREACH_PEER(self->room, p) {
		if (p == self)
			continue;
		if (!first)
			*w++ = ',';
		first = false;
		PUT(w, p->id_json, p->id_json_len);
		if (with_metadata) {
			*w++ = ':';
			PUT(w, p->meta->public_json, p->meta->public_len);
		}
	}
	*w++ = with_metadata ? '}' : ']';
	return w;
}

/* Its room mates make it O(room) bytes, megabytes in a room of thousands:
 * the head is built in S, and the whole written once, in place. */
struct msgbuf *protocol_registered(GString *s, const struct peer *self, json_object *token,
				   const char *ice_servers_json, enum protocol_version version)
{
	const struct room *room = self->room;
	static const char mates_key[] = ",\"peer_metadata\":", ice_key[] = ",\"ice_servers\":",
			  mesh_key[] = ",\"mesh_ice_servers\":", proto_key[] = ",\"protocol\":\"";
	size_t ice_len = strlen(ice_servers_json);
	const char *ver = protocol_version_name(version);
	size_t ver_len = strlen(ver);

	g_string_assign(s, "{\"type\":\"registered_auth\",\"room_id\":");
	append_room_id(s, room);
	g_string_append(s, ",\"token\":");
	if (token)
		json_append_value(s, token);
	else
		g_string_append(s, "null");
	g_string_append(s, ",\"peer_id\":");
	g_string_append_len(s, self->id_json, (gssize)self->id_json_len);
	g_string_append(s, ",\"admin_peer_id\":");
	if (room->admin)
		g_string_append_len(s, room->admin->id_json, (gssize)room->admin->id_json_len);
	else
		g_string_append(s, "null");
	g_string_append(s, ",\"peer_list\":");

	size_t len = s->len + room_mates_len(self, false) + sizeof mates_key - 1 +
		     room_mates_len(self, true) +
		     sizeof ice_key - 1 + ice_len + sizeof mesh_key - 1 + ice_len +
		     sizeof proto_key - 1 + ver_len + 2;
	struct msgbuf *m = msgbuf_alloc(len);
	char *w = msgbuf_text(m);

	PUT(w, s->str, s->len);
	w = put_room_mates(w, self, false);
	PUT_LITERAL(w, mates_key);
	w = put_room_mates(w, self, true);
	PUT_LITERAL(w, ice_key);
	PUT(w, ice_servers_json, ice_len);
	PUT_LITERAL(w, mesh_key);
	PUT(w, ice_servers_json, ice_len);
	PUT_LITERAL(w, proto_key);
	PUT(w, ver, ver_len);
	*w++ = '"';
	*w++ = '}';
	g_assert(w == msgbuf_text(m) + len);
	return m;
}

struct msgbuf *protocol_admin_conflict(const struct room *room)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("admin_conflict"));
	json_object_object_add(o, "room_id", json_object_new_string(room->id));
	json_object_object_add(o, "current_admin",
			       room->admin ? json_object_new_string(room->admin->id) : NULL);
	struct msgbuf *m = msgbuf_from_json(o);
	json_object_put(o);
	return m;
}

/* US (microseconds since the epoch, not negative) as seconds with three
 * decimals, written backwards from END; returns where the text starts.  By
 * hand, as a peer list formats one per peer (and printf would follow
 * LC_NUMERIC). */
static char *format_seconds(char *end, gint64 us)
{
	guint64 ms = (guint64)MAX(us, 0) / 1000;

	for (int i = 0; i < 3; i++, ms /= 10)
		*--end = (char)('0' + ms % 10);
	*--end = '.';
	do {
		*--end = (char)('0' + ms % 10);
		ms /= 10;
	} while (ms);
	return end;
}

/* One entry of a peer list, after a comma unless FIRST.  A list holds up
 * to a thousand: the space is reserved once and filled in place. */
static void append_peer(GString *s, const struct peer *p, bool first)
{
	char secs[24], *secs_at = format_seconds(secs + sizeof secs, p->connected_at);
	size_t secs_len = (size_t)(secs + sizeof secs - secs_at), old = s->len;
	size_t n = !first + sizeof "{'peer_id':,'role':,'metadata':,'connected_at':}" - 1 +
		   p->id_json_len + p->role_json_len + p->meta->public_len + secs_len;
	char *w;

	g_string_set_size(s, old + n);
	w = s->str + old;
	if (!first)
		*w++ = ',';
	PUT_LITERAL(w, "{\"peer_id\":");
	PUT(w, p->id_json, p->id_json_len);
	PUT_LITERAL(w, ",\"role\":");
	PUT(w, p->role_json, p->role_json_len);
	PUT_LITERAL(w, ",\"metadata\":");
	PUT(w, p->meta->public_json, p->meta->public_len);
	PUT_LITERAL(w, ",\"connected_at\":");
	PUT(w, secs_at, secs_len);
	*w++ = '}';
	g_assert(w == s->str + old + n);
}

struct msgbuf *protocol_peer_list(GString *s, const struct peer *self, unsigned limit,
				  protocol_peer_pred match, void *data, const char *watch_id)
{
	GPtrArray *order = self->room->order;
	unsigned count = 0;

	g_string_assign(s, "{\"type\":\"peer_list\",\"to_peer_id\":");
	g_string_append_len(s, self->id_json, (gssize)self->id_json_len);
	g_string_append(s, ",\"peers\":[");
	for (guint i = 0; i < order->len && count < limit; i++) {
		const struct peer *p = g_ptr_array_index(order, i), *ahead;
		/* A scan of a big room waits on memory: ask for the peers a few
		 * slots ahead, and for the metadata of the nearer ones. */
		if (i + 8 < order->len && (ahead = g_ptr_array_index(order, i + 8)))
			__builtin_prefetch(ahead);
		if (i + 4 < order->len && (ahead = g_ptr_array_index(order, i + 4)))
			__builtin_prefetch(ahead->meta);
		if (!p || p == self || !match(p, data))
			continue;
		append_peer(s, p, count++ == 0);
	}
	g_string_append_printf(s, "],\"count\":%u", count);
	if (watch_id) {
		g_string_append(s, ",\"watch_id\":");
		json_append_string(s, watch_id, strlen(watch_id));
	}
	g_string_append_c(s, '}');
	return finish(s);
}

static const char *const event_names[PROTOCOL_EVENT__COUNT] = {
	[PROTOCOL_PEER_JOINED] = "peer_joined",
	[PROTOCOL_PEER_UPDATED] = "peer_updated",
	[PROTOCOL_PEER_LEFT] = "peer_left",
};

static const char *const gone_names[PROTOCOL_GONE__COUNT] = {
	[PROTOCOL_GONE_LEFT] = "left",
	[PROTOCOL_GONE_DISCONNECTED] = "disconnected",
	[PROTOCOL_GONE_TIMEOUT] = "timeout",
	[PROTOCOL_GONE_REPLACED] = "replaced",
	[PROTOCOL_GONE_ROOM_CLOSED] = "room_closed",
	[PROTOCOL_GONE_UNMATCHED] = "no_longer_matches",
};

const char *protocol_event_name(enum protocol_event e)
{
	return e < PROTOCOL_EVENT__COUNT ? event_names[e] : "unknown";
}

const char *protocol_gone_name(enum protocol_gone g)
{
	return g < PROTOCOL_GONE__COUNT ? gone_names[g] : "unknown";
}

enum protocol_gone protocol_gone_parse(const char *name)
{
	for (int g = 0; g < PROTOCOL_GONE__COUNT; g++)
		if (strcmp(gone_names[g], name) == 0)
			return (enum protocol_gone)g;
	return PROTOCOL_GONE_DISCONNECTED;
}

/* {"type":T[,"watch_id":W] */
static void event_head(GString *s, const char *type, const char *watch_id)
{
	g_string_assign(s, "{\"type\":\"");
	g_string_append(s, type);
	g_string_append_c(s, '"');
	if (watch_id) {
		g_string_append(s, ",\"watch_id\":");
		json_append_string(s, watch_id, strlen(watch_id));
	}
}

struct msgbuf *protocol_peer_event(GString *s, enum protocol_event e, const char *watch_id,
				   const struct peer *p)
{
	event_head(s, protocol_event_name(e), watch_id);
	g_string_append(s, ",\"peer\":");
	append_peer(s, p, true);
	g_string_append_c(s, '}');
	return finish(s);
}

struct msgbuf *protocol_peer_left(GString *s, const char *watch_id, const struct peer *p,
				  enum protocol_gone why)
{
	event_head(s, "peer_left", watch_id);
	g_string_append(s, ",\"peer_id\":");
	g_string_append_len(s, p->id_json, (gssize)p->id_json_len);
	g_string_append(s, ",\"reason\":\"");
	g_string_append(s, protocol_gone_name(why));
	g_string_append(s, "\"}");
	return finish(s);
}

struct msgbuf *protocol_watch_lost(const char *watch_id, const char *reason)
{
	g_autoptr(GString) s = g_string_new(NULL);

	event_head(s, "watch_lost", watch_id);
	if (!watch_id)
		g_string_append(s, ",\"events\":[\"presence\"]");
	g_string_append(s, ",\"reason\":");
	json_append_string(s, reason, strlen(reason));
	g_string_append_c(s, '}');
	return finish(s);
}

struct msgbuf *protocol_subscribed(bool subscribed)
{
	static const char yes[] = "{\"type\":\"subscribed\",\"events\":[\"presence\"]}";
	static const char no[] = "{\"type\":\"unsubscribed\",\"events\":[\"presence\"]}";
	return subscribed ? msgbuf_new(yes, sizeof yes - 1) : msgbuf_new(no, sizeof no - 1);
}

struct msgbuf *protocol_unwatched(const char *watch_id)
{
	g_autoptr(GString) s = g_string_new(NULL);

	event_head(s, "unwatched", watch_id);
	g_string_append_c(s, '}');
	return finish(s);
}

struct msgbuf *protocol_metadata_updated(GString *s, const struct peer *self)
{
	g_string_assign(s, "{\"type\":\"metadata_updated\",\"peer_id\":");
	g_string_append_len(s, self->id_json, (gssize)self->id_json_len);
	g_string_append(s, ",\"metadata\":");
	g_string_append_len(s, self->meta->full_json, (gssize)self->meta->full_len);
	g_string_append_c(s, '}');
	return finish(s);
}

struct msgbuf *protocol_routed(GString *s, enum msg_type type, const struct peer *from,
			       const struct peer *to, const struct msg_route *rt)
{
	const char *out_type = route_fields[type].out_type, *body_key = route_fields[type].out_body;

	/* Per message: appends, no printf. */
	g_string_assign(s, "{\"type\":\"");
	g_string_append(s, out_type);
	g_string_append(s, "\",\"from_peer_id\":");
	g_string_append_len(s, from->id_json, (gssize)from->id_json_len);
	if (type == MSG_PEER_MESSAGE) {
		g_string_append(s, ",\"to_peer_id\":");
		g_string_append_len(s, to->id_json, (gssize)to->id_json_len);
	}
	g_string_append(s, ",\"");
	g_string_append(s, body_key);
	g_string_append(s, "\":");
	if (rt->body_text)
		g_string_append_len(s, rt->body_text, (gssize)rt->body_len);
	else
		json_append_value(s, rt->body); /* NULL is written null */
	g_string_append_c(s, '}');
	return finish(s);
}

struct msgbuf *protocol_signal(GString *s, const struct msg *m, const char *text, size_t len,
			       const struct peer *from)
{
	if (m->root) {
		/* json-c's reading: it kept the last of repeated keys, so the
		 * text could name another sender first.  What goes out has one
		 * "sender", this socket's own, and one role, its registered
		 * one, under a name no receiver takes for the sender's say. */
		json_object_object_del(m->root, "role");
		json_object_object_del(m->root, "sender_role");
		json_object_object_add(m->root, "sender", json_object_new_string(from->id));
		json_object_object_add(m->root, "sender_role", json_object_new_string(from->role));
		return msgbuf_from_json(m->root);
	}
	/* From the fast path, which refuses repeated keys and leaves a role
	 * to json-c: the text is exactly one object, its sender (if any) the
	 * one checked; the server's fields go before its closing brace. */
	g_string_truncate(s, 0);
	g_string_append_len(s, text, (gssize)len - 1);
	if (!m->signal.sender) {
		g_string_append(s, ",\"sender\":");
		g_string_append_len(s, from->id_json, (gssize)from->id_json_len);
	}
	g_string_append(s, ",\"sender_role\":");
	g_string_append_len(s, from->role_json, (gssize)from->role_json_len);
	g_string_append_c(s, '}');
	return finish(s);
}

struct msgbuf *protocol_simple(const char *type)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "{\"type\":\"%s\"}", type);
	return msgbuf_new(buf, (size_t)n);
}

char *protocol_room_created(const char *type, const char *room_id, const char *token,
			    gint64 expires_at)
{
	json_object *o = json_object_new_object();
	if (type)
		json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "room_id", json_object_new_string(room_id));
	json_object_object_add(o, "token", json_object_new_string(token));
	json_object_object_add(o, "expires_at", expires_at ? json_object_new_int64(expires_at) : NULL);
	char *text = g_strdup(json_object_to_json_string_ext(o, JSON_FLAGS));
	json_object_put(o);
	return text;
}

struct msgbuf *protocol_room_closed(const char *room_id, const char *reason)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("room_closed"));
	json_object_object_add(o, "room_id", json_object_new_string(room_id));
	json_object_object_add(o, "reason", json_object_new_string(reason));
	struct msgbuf *m = msgbuf_from_json(o);
	json_object_put(o);
	return m;
}
