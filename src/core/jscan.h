/* jscan: a fast, strict JSON scanner.
 *
 * jscan_check() is the gate every message passes before json-c: RFC 8259
 * only, within the depth and value bounds, in one pass.
 *
 * jscan_object() is the fast path for the messages the server only
 * routes.  json-c builds a tree and copies every string byte by byte,
 * which for a 1 KiB payload costs more than the rest of the routing; this
 * checks the text in one pass and reports the top-level members as spans
 * of it, so a payload is forwarded as the sender wrote it.  It is
 * conservative: whatever it does not accept, the caller gives to the slow
 * path, whose verdict (and error message) stands.  It accepts only RFC
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
	bool key_escaped;
};

/* Scans TEXT (LEN bytes) as one JSON object whose containers nest at most
 * MAX_DEPTH deep (the object itself counts 1), of at most MAX_VALUES values
 * (the object itself counts 1), with at most MAX members.  0 with the
 * members in OUT and their number in *N, or -1: the caller parses it the
 * slow way. */
int jscan_object(const char *text, size_t len, unsigned max_depth, size_t max_values,
		 struct jscan_member *out, size_t max, size_t *n);

/* --- the gate in front of json-c --- */

/* Deeper is JSCAN_TOO_DEEP whatever MAX_DEPTH says. */
#define JSCAN_CHECK_DEPTH_MAX 1024

enum jscan_verdict {
	JSCAN_OK = 0,
	JSCAN_INVALID = -1,  /* not RFC 8259 JSON */
	JSCAN_TOO_DEEP = -2, /* containers nest deeper than MAX_DEPTH */
	JSCAN_TOO_MANY = -3, /* more than MAX_VALUES values */
	JSCAN_NUL_KEY = -4,  /* a key holds \u0000, which json-c would cut off */
};

typedef void (*jscan_member_fn)(const struct jscan_member *m, void *data);

/* Checks that TEXT is exactly one RFC 8259 JSON value (whitespace around
 * it allowed), nested at most MAX_DEPTH deep, of at most MAX_VALUES values
 * (every value counts: containers, their elements and members' values;
 * keys do not).  json-c, even strict, also takes NaN, Infinity, single-
 * quoted keys, "1." and raw control characters in strings, and writes
 * them back out: what passes here is JSON any peer can read.  When TEXT
 * is an object, FN (may be NULL) sees each of its members as they end,
 * repeated keys included.  Stops at the first fault, in text order: one
 * pass, no allocation.  A jscan_verdict. */
int jscan_check(const char *text, size_t len, unsigned max_depth, size_t max_values,
		jscan_member_fn fn, void *data);
