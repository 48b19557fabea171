#include "msgbuf.h"

#include <string.h>

struct msgbuf *msgbuf_new(const char *text, size_t len)
{
	struct msgbuf *m = g_malloc(sizeof *m + MSGBUF_HEADROOM + len + 1);
	m->refs = 1;
	m->len = len;
	memcpy(msgbuf_text(m), text, len);
	msgbuf_text(m)[len] = '\0';
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

void json_append_string(GString *s, const char *str, size_t len)
{
	json_object *o = json_object_new_string_len(str, (int)len);
	size_t n;
	const char *text = json_object_to_json_string_length(o, JSON_FLAGS, &n);
	g_string_append_len(s, text, (gssize)n);
	json_object_put(o);
}

void json_append_value(GString *s, json_object *value)
{
	size_t n;
	const char *text = json_object_to_json_string_length(value, JSON_FLAGS, &n);
	g_string_append_len(s, text, (gssize)n);
}

struct msgbuf *msgbuf_from_json(json_object *obj)
{
	size_t n;
	const char *text = json_object_to_json_string_length(obj, JSON_FLAGS, &n);
	return msgbuf_new(text, n);
}
