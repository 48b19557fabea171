#include "meta.h"

#include "config.h"
#include "msgbuf.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

static inline bool is_private(const char *key)
{
	return key[0] == '_';
}

void meta_value_from_json(json_object *o, struct meta_value *v)
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
	default:
		v->type = META_COMPLEX;
		v->complex = o;
		break;
	}
}

static inline bool is_number(const struct meta_value *v)
{
	return v->type == META_INT || v->type == META_DOUBLE;
}

static inline double as_double(const struct meta_value *v)
{
	return v->type == META_INT ? (double)v->i : v->d;
}

static bool json_deep_equal(json_object *a, json_object *b)
{
	enum json_type ta = json_object_get_type(a), tb = json_object_get_type(b);

	if (ta == json_type_array && tb == json_type_array) {
		size_t n = json_object_array_length(a);
		if (n != json_object_array_length(b))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!json_deep_equal(json_object_array_get_idx(a, i),
					     json_object_array_get_idx(b, i)))
				return false;
		return true;
	}
	if (ta == json_type_object && tb == json_type_object) {
		if (json_object_object_length(a) != json_object_object_length(b))
			return false;
		json_object_object_foreach(a, key, va) {
			json_object *vb;
			if (!json_object_object_get_ex(b, key, &vb) || !json_deep_equal(va, vb))
				return false;
		}
		return true;
	}
	if (ta == json_type_array || ta == json_type_object || tb == json_type_array ||
	    tb == json_type_object)
		return false;

	struct meta_value va, vb;
	meta_value_from_json(a, &va);
	meta_value_from_json(b, &vb);
	return meta_value_equal(&va, &vb);
}

bool meta_value_equal(const struct meta_value *a, const struct meta_value *b)
{
	if (is_number(a) && is_number(b)) {
		if (a->type == META_INT && b->type == META_INT)
			return a->i == b->i;
		return as_double(a) == as_double(b);
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
		return json_deep_equal(a->complex, b->complex);
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

int meta_new(json_object *md, size_t max_bytes, struct meta **out, const char **why)
{
	json_object *empty = NULL, *pub = NULL, *tags = NULL, *props = NULL;
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

	/* Size the single block: arrays, then every string it holds. */
	bytes = full_len + 1 + (pub ? pub_len + 1 : 0);
	if (json_object_object_get_ex(md, "tags", &tags) && tags) {
		n_tags = json_object_array_length(tags);
		for (size_t i = 0; i < n_tags; i++)
			bytes += (size_t)json_object_get_string_len(json_object_array_get_idx(tags, i)) + 1;
	}
	props = props_of(md);
	if (props) {
		json_object_object_foreach(props, key, val) {
			if (is_private(key))
				continue;
			n_props++;
			bytes += strlen(key) + 1;
			if (json_object_is_type(val, json_type_string))
				bytes += (size_t)json_object_get_string_len(val) + 1;
		}
	}

	struct meta *m = g_malloc(sizeof *m + n_props * sizeof(struct meta_prop) +
				  n_tags * sizeof(char *) + bytes);
	m->n_props = n_props;
	m->props = (struct meta_prop *)m->data;
	m->n_tags = n_tags;
	m->tags = (const char **)(m->props + n_props);
	char *p = (char *)(m->tags + n_tags);

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
		COPY(m->tags[i], json_object_get_string(t), (size_t)json_object_get_string_len(t));
	}
	size_t i = 0;
	if (props) {
		json_object_object_foreach(props, key, val) {
			if (is_private(key))
				continue;
			struct meta_prop *mp = &m->props[i++];
			COPY(mp->key, key, strlen(key));
			meta_value_from_json(val, &mp->value);
			if (mp->value.type == META_STRING)
				COPY(mp->value.s.ptr, mp->value.s.ptr, mp->value.s.len);
			else if (mp->value.type == META_COMPLEX)
				json_object_get(mp->value.complex);
		}
	}
#undef COPY
	*out = m;
	r = 0;
out:
	json_object_put(pub);
	json_object_put(empty);
	return r;
}

void meta_free(struct meta *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_props; i++)
		if (m->props[i].value.type == META_COMPLEX)
			json_object_put(m->props[i].value.complex);
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

/* Discovery compares every peer's keys and tags: the first byte settles
 * most of them without a call. */
static inline bool same_str(const char *a, const char *b)
{
	return a[0] == b[0] && strcmp(a, b) == 0;
}

const struct meta_value *meta_find_prop(const struct meta *m, const char *key)
{
	for (size_t i = 0; i < m->n_props; i++)
		if (same_str(m->props[i].key, key))
			return &m->props[i].value;
	return NULL;
}

bool meta_has_tag(const struct meta *m, const char *tag)
{
	for (size_t i = 0; i < m->n_tags; i++)
		if (same_str(m->tags[i], tag))
			return true;
	return false;
}
