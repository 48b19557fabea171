#include "core/meta.h"

#include "util/config.h"
#include "util/json.h"
#include "util/msgbuf.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline bool is_private(const char *key)
{
	return key[0] == '_';
}

/* Orders by length, then bytes: a lookup reads bytes only when the
 * lengths agree. */
static int order_str(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* A double that is a whole number in int64's range is written as that
 * integer, so 1.0 and 1 read the same; else the shortest text that reads
 * back as the same double. */
static bool double_as_int(double d, int64_t *out)
{
	if (!(d >= -0x1p63 && d < 0x1p63) || d != trunc(d))
		return false;
	*out = (int64_t)d;
	return true;
}

/* Hand-written: printf would dominate the canonical text of a long array
 * of numbers. */
static void canon_u64(GString *out, char tag, uint64_t u, bool neg, char end)
{
	char buf[24], *p = buf + sizeof buf;
	*--p = end;
	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (neg)
		*--p = '-';
	*--p = tag;
	g_string_append_len(out, p, buf + sizeof buf - p);
}

static void canon_int(GString *out, int64_t i)
{
	canon_u64(out, 'i', i < 0 ? 0 - (uint64_t)i : (uint64_t)i, i < 0, ';');
}

static void canon_str(GString *out, const char *s, size_t len)
{
	canon_u64(out, 's', len, false, ':');
	g_string_append_len(out, s, (gssize)len);
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The canonical text of O: a prefix code, so equal texts mean equal JSON.
 * n t f, i<integer>; d<double>; s<len>:<bytes>, [values], {key value...}
 * with keys sorted.  NULL is JSON null. */
static void canon(json_object *o, GString *out)
{
	int64_t i;
	double d;

	switch (json_object_get_type(o)) {
	case json_type_null:
		g_string_append_c(out, 'n');
		break;
	case json_type_boolean:
		g_string_append_c(out, json_object_get_boolean(o) ? 't' : 'f');
		break;
	case json_type_int:
		i = json_object_get_int64(o);
		if (i == INT64_MAX) /* json-c keeps positive values up to 2^64 - 1 */
			canon_u64(out, 'i', json_object_get_uint64(o), false, ';');
		else
			canon_int(out, i);
		break;
	case json_type_double:
		d = json_object_get_double(o);
		if (double_as_int(d, &i)) {
			canon_int(out, i);
		} else {
			char buf[G_ASCII_DTOSTR_BUF_SIZE];
			for (int prec = 15; prec <= 17; prec++) {
				char fmt[8];
				snprintf(fmt, sizeof fmt, "%%.%dg", prec);
				g_ascii_formatd(buf, sizeof buf, fmt, d);
				if (g_ascii_strtod(buf, NULL) == d)
					break;
			}
			g_string_append_printf(out, "d%s;", buf);
		}
		break;
	case json_type_string:
		canon_str(out, json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(o);
		g_string_append_c(out, '[');
		for (size_t k = 0; k < n; k++)
			canon(json_object_array_get_idx(o, k), out);
		g_string_append_c(out, ']');
		break;
	}
	case json_type_object: {
		size_t n = (size_t)json_object_object_length(o), k = 0;
		const char **keys = g_new(const char *, n ? n : 1);
		json_object_object_foreach(o, key, val) {
			(void)val;
			keys[k++] = key;
		}
		qsort(keys, n, sizeof *keys, cmp_keys);
		g_string_append_c(out, '{');
		for (k = 0; k < n; k++) {
			json_object *v = NULL;
			json_object_object_get_ex(o, keys[k], &v);
			canon_str(out, keys[k], strlen(keys[k]));
			canon(v, out);
		}
		g_string_append_c(out, '}');
		g_free(keys);
		break;
	}
	}
}

/* FNV-1a: quick, and a collision only costs a memcmp that discovery pays
 * for in work units. */
static uint64_t hash_text(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t k = 0; k < len; k++)
		h = (h ^ (unsigned char)s[k]) * 0x100000001b3u;
	return h;
}

/* Fills V for O; a complex value's canonical text is appended to TEXT and
 * V's pointer left for the caller to set (its offset is TEXT's length
 * before the call). */
static void value_from_json(json_object *o, struct meta_value *v, GString *text)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		v->type = META_NULL;
		break;
	case json_type_boolean:
		v->type = META_BOOL;
		v->b = json_object_get_boolean(o);
		break;
	case json_type_int:
		v->type = META_INT;
		v->i = json_object_get_int64(o);
		break;
	case json_type_double:
		v->type = META_DOUBLE;
		v->d = json_object_get_double(o);
		break;
	case json_type_string:
		v->type = META_STRING;
		v->s.ptr = json_object_get_string(o);
		v->s.len = (size_t)json_object_get_string_len(o);
		break;
	default: {
		size_t at = text->len;
		canon(o, text);
		v->type = META_COMPLEX;
		v->c.text = NULL;
		v->c.len = text->len - at;
		v->c.hash = hash_text(text->str + at, v->c.len);
		break;
	}
	}
}

char *meta_value_from_json(json_object *o, struct meta_value *v)
{
	enum json_type t0 = json_object_get_type(o);
	if (t0 != json_type_array && t0 != json_type_object) {
		value_from_json(o, v, NULL); /* a scalar: nothing to write */
		return NULL;
	}
	GString *text = g_string_new(NULL);
	value_from_json(o, v, text);
	char *t = g_string_free(text, FALSE);
	v->c.text = t;
	return t;
}

static inline bool is_number(const struct meta_value *v)
{
	return v->type == META_INT || v->type == META_DOUBLE;
}

static inline double as_double(const struct meta_value *v)
{
	return v->type == META_INT ? (double)v->i : v->d;
}

bool meta_value_equal(const struct meta_value *a, const struct meta_value *b)
{
	int64_t i;

	if (is_number(a) && is_number(b)) {
		if (a->type == META_INT && b->type == META_INT)
			return a->i == b->i;
		if (a->type == META_DOUBLE && b->type == META_DOUBLE)
			return a->d == b->d;
		/* By value, exactly, as the canonical text of composites has it. */
		const struct meta_value *n = a->type == META_INT ? a : b, *d = a->type == META_INT ? b : a;
		return double_as_int(d->d, &i) && i == n->i;
	}
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case META_NULL:
		return true;
	case META_BOOL:
		return a->b == b->b;
	case META_STRING:
		return a->s.len == b->s.len && memcmp(a->s.ptr, b->s.ptr, a->s.len) == 0;
	case META_COMPLEX:
		return a->c.hash == b->c.hash && a->c.len == b->c.len &&
		       memcmp(a->c.text, b->c.text, a->c.len) == 0;
	default:
		return false;
	}
}

bool meta_value_compare(const struct meta_value *a, const struct meta_value *b, int *cmp)
{
	if (is_number(a) && is_number(b)) {
		if (a->type == META_INT && b->type == META_INT)
			*cmp = (a->i > b->i) - (a->i < b->i);
		else {
			double x = as_double(a), y = as_double(b);
			*cmp = (x > y) - (x < y);
		}
		return true;
	}
	if (a->type == META_STRING && b->type == META_STRING) {
		size_t n = MIN(a->s.len, b->s.len);
		int r = memcmp(a->s.ptr, b->s.ptr, n);
		*cmp = r != 0 ? (r > 0) - (r < 0) : (a->s.len > b->s.len) - (a->s.len < b->s.len);
		return true;
	}
	return false;
}

static int check_shape(json_object *md, const char **why)
{
	json_object *tags, *props;

	if (!json_object_is_type(md, json_type_object)) {
		*why = "metadata must be an object";
		return -EINVAL;
	}
	if (json_object_object_get_ex(md, "tags", &tags) && tags) {
		if (!json_object_is_type(tags, json_type_array)) {
			*why = "metadata.tags must be an array of strings";
			return -EINVAL;
		}
		for (size_t i = 0; i < json_object_array_length(tags); i++)
			if (!json_object_is_type(json_object_array_get_idx(tags, i), json_type_string)) {
				*why = "metadata.tags must be an array of strings";
				return -EINVAL;
			}
	}
	if (json_object_object_get_ex(md, "properties", &props) && props &&
	    !json_object_is_type(props, json_type_object)) {
		*why = "metadata.properties must be an object";
		return -EINVAL;
	}
	return 0;
}

/* MD's "properties" when it is an object, else NULL (absent or null). */
static json_object *props_of(json_object *md)
{
	json_object *props = NULL;
	if (!json_object_object_get_ex(md, "properties", &props) ||
	    !json_object_is_type(props, json_type_object))
		return NULL;
	return props;
}

/* The public view of MD: a new object sharing MD's values, or NULL when
 * nothing in MD is private (the public view is then MD itself).  A value
 * may be NULL (JSON null): it is copied as such, never walked. */
static json_object *public_view(json_object *md)
{
	json_object *props = props_of(md);
	bool any_private = false;

	json_object_object_foreach(md, key, val) {
		(void)val;
		any_private |= is_private(key);
	}
	if (props) {
		json_object_object_foreach(props, pkey, pval) {
			(void)pval;
			any_private |= is_private(pkey);
		}
	}
	if (!any_private)
		return NULL;

	json_object *pub = json_object_new_object();
	json_object_object_foreach(md, key2, val2) {
		if (is_private(key2))
			continue;
		if (props && strcmp(key2, "properties") == 0) {
			json_object *p = json_object_new_object();
			json_object_object_foreach(props, pkey, pval)
				if (!is_private(pkey))
					json_object_object_add(p, pkey, json_object_get(pval));
			json_object_object_add(pub, key2, p);
		} else {
			json_object_object_add(pub, key2, json_object_get(val2));
		}
	}
	return pub;
}

static int cmp_props(const void *a, const void *b)
{
	const struct meta_prop *x = a, *y = b;
	return order_str(x->key.ptr, x->key.len, y->key.ptr, y->key.len);
}

static int cmp_tags(const void *a, const void *b)
{
	const struct meta_str *x = a, *y = b;
	return order_str(x->ptr, x->len, y->ptr, y->len);
}

int meta_new(json_object *md, size_t max_bytes, struct meta **out, const char **why)
{
	json_object *empty = NULL, *pub = NULL, *tags = NULL, *props;
	GString *ctext = NULL;
	struct meta_value *vals = NULL;
	const char *full_text, *pub_text;
	size_t full_len, pub_len, n_tags = 0, n_props = 0, bytes;
	int r;

	if (!md)
		md = empty = json_object_new_object();
	r = check_shape(md, why);
	if (r < 0)
		goto out;

	full_text = json_object_to_json_string_length(md, JSON_FLAGS, &full_len);
	if (full_len > max_bytes) {
		*why = "metadata is too large";
		r = -EMSGSIZE;
		goto out;
	}
	pub = public_view(md);
	if (pub)
		pub_text = json_object_to_json_string_length(pub, JSON_FLAGS, &pub_len);
	else
		pub_text = full_text, pub_len = full_len;

	/* Size the single block: arrays, then every string it holds, the
	 * canonical texts of composite values last. */
	bytes = full_len + 1 + (pub ? pub_len + 1 : 0);
	if (json_object_object_get_ex(md, "tags", &tags) && tags) {
		n_tags = json_object_array_length(tags);
		for (size_t i = 0; i < n_tags; i++)
			bytes += (size_t)json_object_get_string_len(json_object_array_get_idx(tags, i)) + 1;
	}
	props = props_of(md);
	ctext = g_string_new(NULL);
	if (props) {
		vals = g_new(struct meta_value, (size_t)json_object_object_length(props) + 1);
		json_object_object_foreach(props, key, val) {
			if (is_private(key))
				continue;
			struct meta_value *v = &vals[n_props++];
			size_t at = ctext->len;
			value_from_json(val, v, ctext);
			bytes += strlen(key) + 1;
			if (v->type == META_STRING)
				bytes += v->s.len + 1;
			else if (v->type == META_COMPLEX)
				v->c.text = (const char *)(uintptr_t)at; /* an offset until copied */
		}
	}
	bytes += ctext->len;

	size_t total = sizeof(struct meta) + n_props * sizeof(struct meta_prop) +
		       n_tags * sizeof(struct meta_str) + bytes;
	struct meta *m = g_malloc(total);
	m->kept_bytes = total;
	m->n_props = n_props;
	m->props = (struct meta_prop *)m->data;
	m->n_tags = n_tags;
	struct meta_str *mtags = (struct meta_str *)(m->props + n_props);
	m->tags = mtags;
	char *p = (char *)(mtags + n_tags);

#define COPY(dst, src, len) \
	do { memcpy(p, src, len); p[len] = '\0'; dst = p; p += (len) + 1; } while (0)

	COPY(m->full_json, full_text, full_len);
	m->full_len = full_len;
	if (pub) {
		COPY(m->public_json, pub_text, pub_len);
	} else {
		m->public_json = m->full_json;
	}
	m->public_len = pub_len;
	for (size_t i = 0; i < n_tags; i++) {
		json_object *t = json_object_array_get_idx(tags, i);
		mtags[i].len = (size_t)json_object_get_string_len(t);
		COPY(mtags[i].ptr, json_object_get_string(t), mtags[i].len);
	}
	char *canon_base = (char *)m + total - ctext->len; /* the block's tail */
	memcpy(canon_base, ctext->str, ctext->len);
	size_t i = 0;
	if (props) {
		json_object_object_foreach(props, key, val) {
			(void)val;
			if (is_private(key))
				continue;
			struct meta_prop *mp = &m->props[i];
			mp->value = vals[i++];
			mp->key.len = strlen(key);
			COPY(mp->key.ptr, key, mp->key.len);
			if (mp->value.type == META_STRING)
				COPY(mp->value.s.ptr, mp->value.s.ptr, mp->value.s.len);
			else if (mp->value.type == META_COMPLEX)
				mp->value.c.text = canon_base + (uintptr_t)mp->value.c.text;
		}
	}
#undef COPY
	qsort(m->props, n_props, sizeof *m->props, cmp_props);
	qsort(mtags, n_tags, sizeof *mtags, cmp_tags);
	*out = m;
	r = 0;
out:
	g_free(vals);
	if (ctext)
		g_string_free(ctext, TRUE);
	json_object_put(pub);
	json_object_put(empty);
	return r;
}

void meta_free(struct meta *m)
{
	g_free(m);
}

int meta_merge(const struct meta *old, json_object *update, size_t max_bytes,
	       struct meta **out, const char **why)
{
	json_object *cur, *props, *val;
	int r;

	if (!json_object_is_type(update, json_type_object)) {
		*why = "metadata must be an object";
		return -EINVAL;
	}
	if (json_object_object_get_ex(update, "properties", &val) &&
	    !json_object_is_type(val, json_type_object)) {
		*why = "metadata.properties must be an object";
		return -EINVAL;
	}

	/* Our own text, as deep as max_json_depth let it be: json-c's
	 * default depth (32) would refuse what a larger setting took in. */
	json_tokener *tok = json_tokener_new_ex(CONFIG_JSON_DEPTH_MAX + 1);
	cur = json_tokener_parse_ex(tok, old->full_json, (int)old->full_len);
	json_tokener_free(tok);
	if (!cur) {
		*why = "stored metadata cannot be read back";
		return -EINVAL;
	}
	json_object_object_foreach(update, key, uval) {
		if (strcmp(key, "properties") != 0) {
			json_object_object_add(cur, key, json_object_get(uval));
			continue;
		}
		props = props_of(cur);
		if (!props) {
			props = json_object_new_object();
			json_object_object_add(cur, "properties", props);
		}
		json_object_object_foreach(uval, pkey, pval) {
			if (pval == NULL)
				json_object_object_del(props, pkey);
			else
				json_object_object_add(props, pkey, json_object_get(pval));
		}
	}
	r = meta_new(cur, max_bytes, out, why);
	json_object_put(cur);
	return r;
}

/* Both indexes start each entry with a struct meta_str and are ordered
 * by length, then bytes: a short one is scanned (lengths compared first),
 * a long one searched by halves.  Each probe is one unit, plus the bytes it
 * compares when the lengths agree.  SIZE_MAX when absent. */
static size_t lookup(const void *base, size_t n, size_t stride, const char *key, size_t len,
		     uint64_t *work)
{
#define AT(k) ((const struct meta_str *)((const char *)base + (k) * stride))
	uint64_t bytes = len / META_WORK_BYTES;
	if (n <= 8) {
		for (size_t k = 0; k < n; k++) {
			const struct meta_str *e = AT(k);
			*work += 1;
			if (e->len == len) { /* the first byte settles most without a call */
				*work += bytes;
				if (len == 0 || (e->ptr[0] == key[0] && memcmp(e->ptr, key, len) == 0))
					return k;
			}
		}
		return SIZE_MAX;
	}
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct meta_str *e = AT(mid);
		int c = order_str(e->ptr, e->len, key, len);
		*work += 1 + (e->len == len ? bytes : 0);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
#undef AT
}

const struct meta_value *meta_lookup_prop(const struct meta *m, const char *key, size_t len,
					  uint64_t *work)
{
	size_t at = lookup(m->props, m->n_props, sizeof *m->props, key, len, work);
	return at == SIZE_MAX ? NULL : &m->props[at].value;
}

bool meta_lookup_tag(const struct meta *m, const char *tag, size_t len, uint64_t *work)
{
	return lookup(m->tags, m->n_tags, sizeof *m->tags, tag, len, work) != SIZE_MAX;
}

const struct meta_value *meta_find_prop(const struct meta *m, const char *key)
{
	uint64_t work = 0;
	return meta_lookup_prop(m, key, strlen(key), &work);
}

bool meta_has_tag(const struct meta *m, const char *tag)
{
	uint64_t work = 0;
	return meta_lookup_tag(m, tag, strlen(tag), &work);
}
