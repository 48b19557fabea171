/* protocol: the v2 wire format.  Decodes a client's JSON text into a typed,
 * validated message, and builds every reply and error the server sends.
 * No I/O and no policy. */
#pragma once

#include "util/msgbuf.h"
#include "core/registry.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

enum msg_type {
	MSG_UNKNOWN = 0,
	MSG_REGISTER,
	MSG_DISCOVER_PEERS,
	MSG_UPDATE_METADATA,
	MSG_PEER_MESSAGE,
	MSG_OFFER,
	MSG_ANSWER,
	MSG_CANDIDATE,
	MSG_MESH_CONNECT,
	MSG_MESH_ANSWER,
	MSG_ICE_CANDIDATE,
	MSG_PING,
	MSG_PONG,
	MSG_CREATE_ROOM,
	/* Presence and watches (docs/protocol.md "Presence and watches"). */
	MSG_SUBSCRIBE,
	MSG_UNSUBSCRIBE,
	MSG_UNWATCH,
	/* What today's sleap-rtc workers send for the server to pass on
	 * (docs/protocol.md "Relayed types"): forwarded when they name a
	 * peer of the room, otherwise counted; never answered with an error. */
	MSG_ERROR, /* a peer's own error for another, e.g. a busy worker's */
	MSG_JOB_STATUS,
	MSG_JOB_PROGRESS,
	MSG_ENCRYPTED_RELAY,
	MSG_FS_LIST_RES,
	MSG_WORKER_PATH_OK,
	MSG_WORKER_PATH_ERROR,
	MSG_FS_CHECK_VIDEOS_RESPONSE,
	MSG_KEY_EXCHANGE_RESPONSE,
	MSG__COUNT
};

/* The relayed types are MSG_ERROR up to the end. */
static inline bool protocol_is_relay(int t)
{
	return t >= MSG_ERROR && t < MSG__COUNT;
}

/* What a session speaks, declared in register ("protocol"): 2.0 when it
 * declares nothing, the original server's error behaviour; 2.1 every
 * error of docs/protocol.md. */
enum protocol_version { PROTOCOL_V20 = 0, PROTOCOL_V21 };

enum err_code {
	ERR_INVALID_JSON,
	ERR_UNKNOWN_MESSAGE_TYPE,
	ERR_INVALID_MESSAGE,
	ERR_INVALID_FILTER,
	ERR_AUTH_REQUIRED,
	ERR_AUTH_FAILED,
	ERR_FORBIDDEN,
	ERR_NOT_IN_ROOM,
	ERR_ROOM_NOT_FOUND,
	ERR_ROOM_EXPIRED,
	ERR_ROOM_FULL,
	ERR_PEER_ID_TAKEN,
	ERR_PEER_NOT_IN_ROOM,
	ERR_PEER_NOT_FOUND,
	ERR_DELIVERY_FAILED,
	ERR_RATE_LIMITED,
	ERR_SESSION_REPLACED,
	ERR_SERVER_SHUTTING_DOWN,
	ERR_SERVICE_UNAVAILABLE, /* ext: the room store cannot take a write now */
	ERR_WATCH_NOT_FOUND,     /* ext: unwatch names no watch of this connection */
	ERR__COUNT
};

const char *protocol_type_name(enum msg_type t);
const char *protocol_code_name(enum err_code c);

#define PROTOCOL_DISCOVER_LIMIT 1000
/* The longest lifetime a room or API key may be asked for (68 years),
 * so that now + expires_in cannot overflow. */
#define PROTOCOL_EXPIRES_IN_MAX G_MAXINT32
/* A peer id given as a JSON number is turned into its decimal text. */
#define PROTOCOL_ID_BUF (REGISTRY_ID_MAX + 1)

struct msg_register {
	const char *peer_id; /* NULL: the server generates one */
	const char *room_id;
	json_object *token;  /* echoed back; may be NULL */
	const char *jwt;     /* "jwt" or "id_token" */
	const char *api_key;
	const char *role;
	json_object *metadata; /* NULL means {} */
	bool is_admin;
	enum protocol_version version;
	bool presence; /* "events":["presence"] */
};

struct msg_discover {
	const char *from;
	json_object *filters; /* NULL: every peer */
	unsigned limit;
	bool watch; /* "watch":true: the answer starts a watch */
};

/* subscribe, unsubscribe: the events named (only presence exists). */
struct msg_subscribe {
	bool presence;
};

struct msg_unwatch {
	const char *watch_id;
};

struct msg_update {
	const char *peer_id;
	json_object *metadata;
};

/* peer_message and the mesh messages: routed to one peer, rebuilt. */
struct msg_route {
	const char *from;
	const char *to;
	const char *to_field; /* "to_peer_id" or "target_peer_id" */
	json_object *body;    /* payload, offer, answer or candidate */
	const char *body_text; /* or, from protocol_decode_routed, its text */
	size_t body_len;
};

/* The relayed types: the peer named by "target" or "to_peer_id", if any
 * (an id of the wrong type is no target); forwarded whole. */
struct msg_relay {
	const char *target;
};

/* create_room (and the body of POST /create-room). */
struct msg_create_room {
	gint64 expires_in; /* -1: the configured default */
	unsigned max_peers; /* 0: the global limit */
	const char *name;
	bool open_to_issuer;
};

/* offer, answer, candidate: forwarded whole. */
struct msg_signal {
	const char *sender; /* NULL: the server fills it in */
	const char *target;
};

struct msg {
	enum msg_type type;
	json_object *root;
	union {
		struct msg_register reg;
		struct msg_discover discover;
		struct msg_update update;
		struct msg_route route;
		struct msg_signal signal;
		struct msg_create_room create;
		struct msg_relay relay;
		struct msg_subscribe subscribe;
		struct msg_unwatch unwatch;
	};
	char idbuf[2][PROTOCOL_ID_BUF];
};

/* What a message's JSON may cost to read (docs/protocol.md, "Transport";
 * [limits]). */
struct protocol_limits {
	unsigned max_depth; /* containers, the message itself counting 1 */
	size_t max_values;  /* every value, the message itself counting 1 */
};

/* Which of those a refused message went past, for the metrics. */
enum protocol_limit { PROTOCOL_LIMIT_NONE, PROTOCOL_LIMIT_DEPTH, PROTOCOL_LIMIT_VALUES };

struct msg_error {
	enum err_code code;
	enum protocol_limit limit;
	bool v20_closed; /* the original server closed the connection over it */
	char message[200];
	const char *field;      /* the field the error concerns, if any */
	const char *field_value;
};

/* Parses and validates one message.  On failure returns -EINVAL and fills
 * ERR (INVALID_JSON, UNKNOWN_MESSAGE_TYPE or INVALID_MESSAGE; FORBIDDEN
 * and the rest are the router's).  Only RFC 8259 JSON within LIM reaches
 * json-c (TOK, set up with at least LIM's depth); ping and pong build no
 * tree at all (M->root stays NULL).  M->root must be released with
 * msg_clear() either way. */
int protocol_decode(json_tokener *tok, const struct protocol_limits *lim, const char *text,
		    size_t len, struct msg *m, struct msg_error *err);
void msg_clear(struct msg *m);
/* The fast path for the messages that are only routed (peer_message,
 * mesh_*, ice_candidate, offer, answer, candidate) when they are plain:
 * 0 with M filled (M->root NULL, bodies as spans of TEXT), or -1 when the
 * message is anything else, and protocol_decode must judge it. */
int protocol_decode_routed(const char *text, size_t len, const struct protocol_limits *lim,
			   struct msg *m);

/* TEXT as a JSON object, when it is RFC 8259 JSON within LIM (the body
 * of POST /create-room); NULL otherwise. */
json_object *protocol_parse_object(json_tokener *tok, const struct protocol_limits *lim,
				   const char *text, size_t len);

/* The fields of a create_room request in OBJ (a message or an HTTP body). */
int protocol_decode_create_room(json_object *obj, struct msg_create_room *out,
				struct msg_error *err);

/* --- builders; every result has one reference --- */

/* {"type":"error","code":C,"message":M,"reason":M[,FIELD:VALUE]}: every
 * error says its message as "reason" too, which the original server's
 * clients read (docs/protocol.md "Errors"). */
struct msgbuf *protocol_error(enum err_code code, const char *message, const char *field,
			      const char *field_value);
struct msgbuf *protocol_error_from(const struct msg_error *e);

/* "2.0" or "2.1" */
const char *protocol_version_name(enum protocol_version v);
struct msgbuf *protocol_registered(GString *scratch, const struct peer *self, json_object *token,
				   const char *ice_servers_json, enum protocol_version version);
struct msgbuf *protocol_admin_conflict(const struct room *room);

/* peer_list: the peers of SELF's room accepted by MATCH, at most LIMIT;
 * WATCH_ID (or NULL) names the watch the answer starts. */
typedef bool (*protocol_peer_pred)(const struct peer *p, void *data);
struct msgbuf *protocol_peer_list(GString *scratch, const struct peer *self, unsigned limit,
				  protocol_peer_pred match, void *data, const char *watch_id);

/* Presence and watch events (WATCH_ID NULL: presence). */
enum protocol_event { PROTOCOL_PEER_JOINED, PROTOCOL_PEER_UPDATED, PROTOCOL_PEER_LEFT,
		      PROTOCOL_EVENT__COUNT };
/* Why a peer left (a room, or a watch's set): the "reason" of peer_left. */
enum protocol_gone {
	PROTOCOL_GONE_LEFT,
	PROTOCOL_GONE_DISCONNECTED,
	PROTOCOL_GONE_TIMEOUT,
	PROTOCOL_GONE_REPLACED,
	PROTOCOL_GONE_ROOM_CLOSED,
	PROTOCOL_GONE_UNMATCHED, /* watches only: no longer matches */
	PROTOCOL_GONE__COUNT
};
const char *protocol_event_name(enum protocol_event e);
const char *protocol_gone_name(enum protocol_gone g);
/* The reason NAME names; disconnected for one it does not know. */
enum protocol_gone protocol_gone_parse(const char *name);
/* {"type":"peer_joined"|"peer_updated"[,"watch_id":W],"peer":{a peer_list entry}} */
struct msgbuf *protocol_peer_event(GString *scratch, enum protocol_event e, const char *watch_id,
				   const struct peer *p);
/* {"type":"peer_left"[,"watch_id":W],"peer_id":ID,"reason":R} */
struct msgbuf *protocol_peer_left(GString *scratch, const char *watch_id, const struct peer *p,
				  enum protocol_gone why);
/* {"type":"watch_lost","watch_id":W,"reason":R}, or for the presence
 * subscription (WATCH_ID NULL) "events":["presence"] instead of watch_id. */
struct msgbuf *protocol_watch_lost(const char *watch_id, const char *reason);
/* {"type":"subscribed"|"unsubscribed","events":["presence"]} */
struct msgbuf *protocol_subscribed(bool subscribed);
/* {"type":"unwatched","watch_id":W} */
struct msgbuf *protocol_unwatched(const char *watch_id);

struct msgbuf *protocol_metadata_updated(GString *scratch, const struct peer *self);
struct msgbuf *protocol_routed(GString *scratch, enum msg_type type, const struct peer *from,
			       const struct peer *to, const struct msg_route *rt);
/* The whole signal (or relayed) object as its target gets it: "sender"
 * is FROM's id and "sender_role" FROM's registered role, whatever the
 * sender wrote; a "role" it wrote is removed, as receivers take it for a
 * role the server vouched for (docs/protocol.md "offer, answer,
 * candidate"). */
struct msgbuf *protocol_signal(GString *scratch, const struct msg *m, const char *text, size_t len,
			       const struct peer *from);
struct msgbuf *protocol_simple(const char *type); /* {"type":T} */
/* {"room_id","token","expires_at"} as a JSON text; with TYPE first when
 * given ("room_created").  EXPIRES_AT 0 is null.  g_free. */
char *protocol_room_created(const char *type, const char *room_id, const char *token,
			    gint64 expires_at);
/* {"type":"room_closed","room_id","reason"} */
struct msgbuf *protocol_room_closed(const char *room_id, const char *reason);
