/* msgbuf: an outbound message, built once and queued to one or many
 * sessions by reference.  Each buffer carries MSGBUF_HEADROOM bytes in
 * front of the text for the transport's frame header. */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stddef.h>

#define MSGBUF_HEADROOM 16

struct msgbuf {
	unsigned refs;
	size_t len; /* of the text, without headroom */
	char data[]; /* MSGBUF_HEADROOM bytes, then the text */
};

static inline char *msgbuf_text(struct msgbuf *m)
{
	return m->data + MSGBUF_HEADROOM;
}

/* Room for LEN bytes of text (to be written in full) with headroom, one
 * reference. */
struct msgbuf *msgbuf_alloc(size_t len);
/* A copy of TEXT (LEN bytes) with headroom, one reference. */
struct msgbuf *msgbuf_new(const char *text, size_t len);
struct msgbuf *msgbuf_ref(struct msgbuf *m);
void msgbuf_unref(struct msgbuf *m);

/* JSON text building in a GString.  Strings are escaped by json-c. */
void json_append_string(GString *s, const char *str, size_t len);
void json_append_value(GString *s, json_object *value);
/* The flags every serialisation uses: compact, '/' left alone. */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* {"error":WHY}, WHY escaped: the body of an HTTP error answer. */
char *json_error_body(const char *why);
/* TEXT parsed by TOK (reset first) when it is exactly one JSON object,
 * nothing after it; NULL otherwise. */
json_object *json_parse_object(json_tokener *tok, const char *text, size_t len);

/* A message from the JSON text of OBJ. */
struct msgbuf *msgbuf_from_json(json_object *obj);
