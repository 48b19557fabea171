#include "util/json.h"

#include <string.h>

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

char *json_error_body(const char *why)
{
	GString *s = g_string_new("{\"error\":");
	json_append_string(s, why, strlen(why));
	g_string_append_c(s, '}');
	return g_string_free(s, FALSE);
}

json_object *json_parse_object(json_tokener *tok, const char *text, size_t len)
{
	json_object *o;

	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}
