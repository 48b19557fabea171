/* jscan: a fast, strict JSON scanner for the messages the server only
 * routes.  json-c builds a tree and copies every string byte by byte,
 * which for a 1 KiB payload costs more than the rest of the routing; this
 * checks the text in one pass and reports the top-level members as spans
 * of it, so a payload is forwarded as the sender wrote it.
 *
 * It is conservative: whatever it does not accept, the caller gives to
 * json-c, whose verdict (and error message) stands.  It accepts only RFC
 * 8259 JSON, and gives up on a few valid forms better left to json-c:
 * whitespace around the object, escaped keys, \u escapes of surrogates,
 * deep nesting.
 * The transport has already checked that the text is UTF-8 (the router
 * sends it nothing else).  No I/O, no allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Deeper containers are left to json-c, whatever the configured limit. */
#define JSCAN_MAX_DEPTH 64

enum jscan_kind { JSCAN_STRING, JSCAN_NUMBER, JSCAN_OBJECT, JSCAN_ARRAY, JSCAN_LITERAL };

struct jscan_member {
	const char *key; /* between the quotes, as written */
	size_t key_len;
	const char *value; /* the value's text; a string's without its quotes */
	size_t value_len;
	enum jscan_kind kind;
	bool escaped; /* the string value holds a backslash */
};

/* Scans TEXT (LEN bytes) as one JSON object whose containers nest at most
 * MAX_DEPTH deep (the object itself counts 1), with at most MAX members.
 * 0 with the members in OUT and their number in *N, or -1: the caller
 * parses it the slow way. */
int jscan_object(const char *text, size_t len, unsigned max_depth, struct jscan_member *out,
		 size_t max, size_t *n);
