#include "util/msgbuf.h"
#include "util/json.h"

#include <string.h>

struct msgbuf *msgbuf_alloc(size_t len)
{
	struct msgbuf *m = g_malloc(sizeof *m + MSGBUF_HEADROOM + len + 1);
	m->refs = 1;
	m->len = len;
	msgbuf_text(m)[len] = '\0';
	return m;
}

struct msgbuf *msgbuf_new(const char *text, size_t len)
{
	struct msgbuf *m = msgbuf_alloc(len);
	memcpy(msgbuf_text(m), text, len);
	return m;
}

struct msgbuf *msgbuf_ref(struct msgbuf *m)
{
	m->refs++;
	return m;
}

void msgbuf_unref(struct msgbuf *m)
{
	if (m && --m->refs == 0)
		g_free(m);
}

struct msgbuf *msgbuf_from_json(json_object *obj)
{
	size_t n;
	const char *text = json_object_to_json_string_length(obj, JSON_FLAGS, &n);
	return msgbuf_new(text, n);
}
