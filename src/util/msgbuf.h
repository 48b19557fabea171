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

/* A message from the JSON text of OBJ. */
struct msgbuf *msgbuf_from_json(json_object *obj);
