/* Deeply nested JSON for the depth tests: HEAD, then DEPTH '[', then, when
 * CLOSED, as many ']' and a final '}' (HEAD opens an object). */
#pragma once

#include <glib.h>
#include <stdbool.h>

static inline GString *nested_json(const char *head, unsigned depth, bool closed)
{
	GString *s = g_string_new(head);
	for (unsigned i = 0; i < depth; i++)
		g_string_append_c(s, '[');
	if (closed) {
		for (unsigned i = 0; i < depth; i++)
			g_string_append_c(s, ']');
		g_string_append_c(s, '}');
	}
	return s;
}
