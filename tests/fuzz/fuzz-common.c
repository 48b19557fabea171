/* Helpers shared by the harnesses (fuzz.h). */
#include "fuzz.h"

#include "log.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("FUZZ FINDING: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

size_t fuzz_split(const uint8_t *data, size_t size, struct fuzz_rec *out, size_t max)
{
	const char *p = (const char *)data, *end = p + size;
	size_t n = 0;

	if (!max)
		return 0;
	while (n + 1 < max) {
		const char *sep = memmem(p, (size_t)(end - p), FUZZ_SEP, strlen(FUZZ_SEP));
		if (!sep)
			break;
		out[n].p = p;
		out[n++].len = (size_t)(sep - p);
		p = sep + strlen(FUZZ_SEP);
	}
	out[n].p = p;
	out[n++].len = (size_t)(end - p);
	return n;
}

/* Outside strings, valid JSON holds only structure, digits, signs,
 * exponents and the letters of true, false and null: an 'N' or an 'I'
 * there is NaN or Infinity. */
static bool has_nonfinite(const char *s, size_t len)
{
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == 'N' || c == 'I') {
			return true;
		}
	}
	return false;
}

void fuzz_check_output(const char *what, const char *text, size_t len)
{
	json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	bool ok = json_tokener_get_error(tok) == json_tokener_success &&
		  json_tokener_get_parse_end(tok) == len && json_object_is_type(o, json_type_object);
	json_object_put(o);
	json_tokener_free(tok);
	if (!ok)
		fuzz_fail("%s: the server sent what is not one JSON object: %.*s", what,
			  (int)MIN(len, 400), text);
	if (has_nonfinite(text, len))
		fuzz_fail("%s: the server sent NaN or Infinity (not JSON): %.*s", what,
			  (int)MIN(len, 400), text);
}

int64_t fuzz_cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

unsigned fuzz_budget_scale(void)
{
	static unsigned scale;
	if (!scale) {
		const char *env = getenv("FUZZ_BUDGET_SCALE");
#ifdef FUZZ_LIBFUZZER
		scale = 1;
#else
		scale = 50; /* valgrind */
#endif
		if (env && atoi(env) > 0)
			scale = (unsigned)atoi(env);
	}
	return scale;
}

void fuzz_quiet(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	log_init();
	log_set_level(LOG_EMERG);
}

/* UTF-8 as lws checks it, U+0000 included (GLib stops at a NUL). */
bool fuzz_utf8(const char *s, size_t len)
{
	if (!len)
		return true;
	const char *end = s + len;
	while (s < end) {
		const char *nul = memchr(s, '\0', (size_t)(end - s));
		size_t n = nul ? (size_t)(nul - s) : (size_t)(end - s);
		if (!g_utf8_validate_len(s, n, NULL))
			return false;
		s += n + (nul != NULL);
	}
	return true;
}

bool fuzz_skip_known(void)
{
	static int skip = -1;
	if (skip < 0) {
		const char *env = getenv("FUZZ_SKIP_KNOWN");
		skip = env && *env == '1';
	}
	return skip;
}

bool fuzz_known_meta_null(json_object *md)
{
	json_object *props = NULL;

	if (!json_object_is_type(md, json_type_object))
		return false;
	if (json_object_object_get_ex(md, "properties", &props) && props)
		return false;
	json_object_object_foreach(md, key, val) {
		(void)key;
		if (!val)
			return true;
	}
	return false;
}

bool fuzz_has_nonfinite(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_double: {
		double d = json_object_get_double(v);
		return d != d || d - d != 0;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (fuzz_has_nonfinite(json_object_array_get_idx(v, i)))
				return true;
		return false;
	case json_type_object: {
		json_object_object_foreach(v, key, val) {
			(void)key;
			if (fuzz_has_nonfinite(val))
				return true;
		}
		return false;
	}
	default:
		return false;
	}
}
