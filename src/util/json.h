/* json: the JSON text helpers shared by every layer, on json-c: escaping
 * into a GString, the one serialisation flag set, strict parsing of one
 * object, and the body of an HTTP error answer. */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stddef.h>

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
