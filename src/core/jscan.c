#include "core/jscan.h"

#include <stdint.h>
#include <string.h>

struct scan {
	const char *p, *end;
	unsigned max_depth;
	size_t values, max_values;
	bool surrogates; /* take \u escapes of surrogates (jscan_check) */
	bool nul;        /* a string held \u0000 */
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && is_ws(*s->p))
		s->p++;
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The plain bytes from P on (none of '"', '\\', or below 0x20), counted
 * a block at a time: a whole block of them, or 0 when the block at P has
 * a special byte somewhere (the caller then looks byte by byte). */
#if defined(__SSE2__) && !defined(JSCAN_PORTABLE)
#include <emmintrin.h>
#define BLOCK 16
static size_t plain_block(const char *p)
{
	__m128i v = _mm_loadu_si128((const __m128i *)p);
	__m128i special = _mm_or_si128(
		_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
		/* unsigned v <= 0x1f */
		_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v));
	return _mm_movemask_epi8(special) ? 0 : BLOCK;
}
#else
#define BLOCK 8
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static size_t plain_block(const char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	uint64_t quote = v ^ (ONES * '"'), backslash = v ^ (ONES * '\\');
	/* Zero-byte and below-0x20 tests (may flag a plain byte after a special one). */
	return (((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((v - ONES * 0x20) & ~v)) &
			       HIGHS
		       ? 0
		       : BLOCK;
}
#endif

/* At the opening quote; leaves P after the closing one. */
static int scan_string(struct scan *s, bool *escaped)
{
	const char *p = s->p + 1;

	*escaped = false;
	for (;;) {
		/* The common run: plain characters, a block at a time. */
		size_t n;
		while (s->end - p >= BLOCK && (n = plain_block(p)))
			p += n;
		while (p < s->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
			p++;
		if (p >= s->end || (unsigned char)*p < 0x20)
			return -1;
		if (*p == '"')
			break;
		*escaped = true;
		if (++p >= s->end)
			return -1;
		if (*p == 'u') {
			int v = 0;
			if (s->end - p < 5)
				return -1;
			for (int i = 1; i <= 4; i++) {
				int h = hex(p[i]);
				if (h < 0)
					return -1;
				v = v << 4 | h;
			}
			if (v >= 0xd800 && v <= 0xdfff && !s->surrogates)
				return -1; /* surrogates: json-c's business */
			s->nul |= v == 0;
			p += 5;
		} else if (*p && strchr("\"\\/bfnrt", *p)) {
			p++;
		} else {
			return -1;
		}
	}
	s->p = p + 1;
	return 0;
}

static bool digits(struct scan *s)
{
	const char *start = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > start;
}

static int scan_number(struct scan *s)
{
	if (*s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (!digits(s))
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!digits(s))
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!digits(s))
			return -1;
	}
	return 0;
}

static int scan_literal(struct scan *s, const char *word, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int scan_value(struct scan *s, unsigned depth, enum jscan_kind *kind, bool *escaped);

/* At '{' or '['; DEPTH is the container's own level. */
static int scan_container(struct scan *s, unsigned depth, bool object)
{
	const char close = object ? '}' : ']';
	enum jscan_kind kind;
	bool escaped;

	if (depth > s->max_depth)
		return -1;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return 0;
	}
	for (;;) {
		if (object) {
			/* A key holding \u0000 is refused (jscan_check): the
			 * slow path says so. */
			s->nul = false;
			if (s->p >= s->end || *s->p != '"' || scan_string(s, &escaped) < 0 || s->nul)
				return -1;
			skip_ws(s);
			if (s->p >= s->end || *s->p != ':')
				return -1;
			s->p++;
			skip_ws(s);
		}
		if (scan_value(s, depth, &kind, &escaped) < 0)
			return -1;
		skip_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == close) {
			s->p++;
			return 0;
		}
		if (*s->p != ',')
			return -1;
		s->p++;
		skip_ws(s);
	}
}

/* A string, number or literal at P. */
static int scan_scalar(struct scan *s, enum jscan_kind *kind, bool *escaped)
{
	*escaped = false;
	switch (*s->p) {
	case '"':
		*kind = JSCAN_STRING;
		return scan_string(s, escaped);
	case 't':
		*kind = JSCAN_LITERAL;
		return scan_literal(s, "true", 4);
	case 'f':
		*kind = JSCAN_LITERAL;
		return scan_literal(s, "false", 5);
	case 'n':
		*kind = JSCAN_LITERAL;
		return scan_literal(s, "null", 4);
	default:
		*kind = JSCAN_NUMBER;
		return *s->p == '-' || (*s->p >= '0' && *s->p <= '9') ? scan_number(s) : -1;
	}
}

/* At the first character of a value inside a container of level DEPTH. */
static int scan_value(struct scan *s, unsigned depth, enum jscan_kind *kind, bool *escaped)
{
	*escaped = false;
	if (s->p >= s->end || ++s->values > s->max_values)
		return -1;
	if (*s->p == '{' || *s->p == '[') {
		bool object = *s->p == '{';
		*kind = object ? JSCAN_OBJECT : JSCAN_ARRAY;
		return scan_container(s, depth + 1, object);
	}
	return scan_scalar(s, kind, escaped);
}

int jscan_object(const char *text, size_t len, unsigned max_depth, size_t max_values,
		 struct jscan_member *out, size_t max, size_t *n)
{
	struct scan s = { text, text + len, max_depth < JSCAN_MAX_DEPTH ? max_depth : JSCAN_MAX_DEPTH,
			  1, max_values, false, false };

	*n = 0;
	if (max_values < 1)
		return -1;
	if (len < 2 || text[0] != '{' || text[len - 1] != '}' || s.max_depth < 1)
		return -1;
	s.p++;
	skip_ws(&s);
	if (*s.p == '}')
		return s.p + 1 == s.end ? 0 : -1;
	for (;;) {
		struct jscan_member m;
		bool key_escaped;

		if (*n == max || s.p >= s.end || *s.p != '"')
			return -1;
		m.key = s.p + 1;
		/* An escaped key may spell one the caller looks for. */
		if (scan_string(&s, &key_escaped) < 0 || key_escaped)
			return -1;
		m.key_len = (size_t)(s.p - 1 - m.key);
		m.key_escaped = false;
		skip_ws(&s);
		if (s.p >= s.end || *s.p != ':')
			return -1;
		s.p++;
		skip_ws(&s);
		m.value = s.p;
		if (scan_value(&s, 1, &m.kind, &m.escaped) < 0)
			return -1;
		m.value_len = (size_t)(s.p - m.value);
		if (m.kind == JSCAN_STRING) {
			m.value++;
			m.value_len -= 2;
		}
		out[(*n)++] = m;
		skip_ws(&s);
		if (s.p >= s.end)
			return -1;
		if (*s.p == '}')
			return s.p + 1 == s.end ? 0 : -1;
		if (*s.p != ',')
			return -1;
		s.p++;
		skip_ws(&s);
	}
}

/* A key and its colon; the key into M when given.  A jscan_verdict. */
static int scan_key(struct scan *s, struct jscan_member *m)
{
	const char *key = s->p + 1;
	bool escaped;

	if (s->p >= s->end || *s->p != '"')
		return JSCAN_INVALID;
	s->nul = false;
	if (scan_string(s, &escaped) < 0)
		return JSCAN_INVALID;
	/* json-c keeps keys as C strings: "a\u0000b" would be "a". */
	if (s->nul)
		return JSCAN_NUL_KEY;
	if (m) {
		m->key = key;
		m->key_len = (size_t)(s->p - 1 - key);
		m->key_escaped = escaped;
	}
	skip_ws(s);
	if (s->p >= s->end || *s->p != ':')
		return JSCAN_INVALID;
	s->p++;
	skip_ws(s);
	return JSCAN_OK;
}

/* Without recursion: a message may nest as deep as the configuration
 * allows, and the kind of each open container is all there is to keep. */
int jscan_check(const char *text, size_t len, unsigned max_depth, size_t max_values,
		jscan_member_fn fn, void *data)
{
	struct scan s = { text, text + len, 0, 0, max_values, true, false };
	bool is_object[JSCAN_CHECK_DEPTH_MAX];
	struct jscan_member m = { 0 };
	unsigned depth = 0;
	int rc;

	if (max_depth > JSCAN_CHECK_DEPTH_MAX)
		max_depth = JSCAN_CHECK_DEPTH_MAX;
	skip_ws(&s);
	for (;;) {
		/* A value starts here. */
		bool member = depth == 1 && is_object[0];
		if (s.p >= s.end)
			return JSCAN_INVALID;
		if (++s.values > s.max_values)
			return JSCAN_TOO_MANY;
		if (member)
			m.value = s.p;
		if (*s.p == '{' || *s.p == '[') {
			bool object = *s.p == '{';
			if (depth >= max_depth)
				return JSCAN_TOO_DEEP;
			if (member) {
				m.kind = object ? JSCAN_OBJECT : JSCAN_ARRAY;
				m.escaped = false;
			}
			is_object[depth++] = object;
			s.p++;
			skip_ws(&s);
			if (s.p < s.end && *s.p == (object ? '}' : ']')) {
				s.p++;
				depth--;
			} else if (object) {
				goto key;
			} else {
				continue;
			}
		} else {
			enum jscan_kind kind;
			bool escaped;
			if (scan_scalar(&s, &kind, &escaped) < 0)
				return JSCAN_INVALID;
			if (member) {
				m.kind = kind;
				m.escaped = escaped;
			}
		}
		/* A value ended; so may the containers around it. */
		for (;;) {
			if (depth == 1 && is_object[0] && fn) {
				m.value_len = (size_t)(s.p - m.value);
				if (m.kind == JSCAN_STRING) {
					m.value++;
					m.value_len -= 2;
				}
				fn(&m, data);
			}
			skip_ws(&s);
			if (depth == 0)
				return s.p == s.end ? JSCAN_OK : JSCAN_INVALID;
			if (s.p >= s.end)
				return JSCAN_INVALID;
			if (*s.p == ',') {
				s.p++;
				skip_ws(&s);
				break;
			}
			if (*s.p != (is_object[depth - 1] ? '}' : ']'))
				return JSCAN_INVALID;
			s.p++;
			depth--;
		}
		if (!is_object[depth - 1])
			continue;
	key:
		if ((rc = scan_key(&s, depth == 1 ? &m : NULL)) < 0)
			return rc;
	}
}
