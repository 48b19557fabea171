/* Metadata: meta_new and a chain of meta_merge (docs/protocol.md,
 * "register" and "update_metadata").
 * Each result is checked against a model of the rules: the full text is
 * the metadata, the public view is it without the keys starting with '_'
 * (top level and properties), the index holds exactly the public
 * properties and the tags, and every text is JSON a client can parse.
 *
 * And memory: what a struct meta keeps once the parsed tree is gone is at
 * most META_KEPT_FACTOR times its text plus META_KEPT_SLACK (finding 4:
 * 16 KiB of [{},{},...] kept 4.2 MB per peer).
 *
 * Input: records separated by a "%%" line: the metadata, then updates.
 * A leading byte '0'-'3' (optional) picks max_metadata_bytes: 64, 512,
 * 16384 (the default), 1 MiB. */
#include "fuzz.h"

#include "core/protocol.h"
#include "core/meta.h"

#include <string.h>

#define MAX_RECORDS 8
#define META_KEPT_FACTOR 16
#define META_KEPT_SLACK 65536

/* max_json_depth's default */
#define JSON_DEPTH 32

static json_tokener *tok;

static json_object *parse(const struct fuzz_rec *r)
{
	/* As the daemon parses: through the protocol's gate (RFC 8259, UTF-8,
	 * bounds), so that json-c never abandons a text part way, which in
	 * json-c 0.16 leaves a half-read \u escape for the next one. */
	static const struct protocol_limits lim = { JSON_DEPTH, SIZE_MAX };
	return protocol_parse_object(tok, &lim, r->p, r->len);
}

static bool is_private(const char *key)
{
	return key[0] == '_';
}

/* The model's public view: a deep copy without private keys. */
static json_object *model_public(json_object *md)
{
	json_object *pub = json_object_new_object();
	json_object_object_foreach(md, key, val) {
		if (is_private(key))
			continue;
		if (strcmp(key, "properties") == 0 && json_object_is_type(val, json_type_object)) {
			json_object *p = json_object_new_object();
			json_object_object_foreach(val, pkey, pval)
				if (!is_private(pkey))
					json_object_object_add(p, pkey, json_object_get(pval));
			json_object_object_add(pub, key, p);
		} else {
			json_object_object_add(pub, key, json_object_get(val));
		}
	}
	return pub;
}

static json_object *reparse(const char *what, const char *text, size_t len)
{
	fuzz_check_output(what, text, len);
	if (strlen(text) != len)
		fuzz_fail("%s: length %zu, text %zu bytes", what, len, strlen(text));
	json_tokener *t = json_tokener_new_ex(1001);
	json_object *o = json_tokener_parse_ex(t, text, (int)len);
	json_tokener_free(t);
	return o;
}

static void check(const struct meta *m, json_object *md)
{
	json_object *full = reparse("full_json", m->full_json, m->full_len);
	json_object *pub = reparse("public_json", m->public_json, m->public_len);
	json_object *want = model_public(md);
	json_object *props = NULL, *tags = NULL;

	if (!json_object_equal(full, md))
		fuzz_fail("full_json is not the metadata: %s", m->full_json);
	if (!json_object_equal(pub, want))
		fuzz_fail("public_json %s, want %s", m->public_json,
			  json_object_to_json_string_ext(want, JSON_C_TO_STRING_PLAIN));
	size_t n_props = 0;
	if (json_object_object_get_ex(md, "properties", &props) &&
	    json_object_is_type(props, json_type_object)) {
		json_object_object_foreach(props, key, val) {
			const struct meta_value *v = meta_find_prop(m, key);
			if (is_private(key)) {
				if (v)
					fuzz_fail("private property %s indexed", key);
				continue;
			}
			n_props++;
			struct meta_value want_v;
			char *want_text = meta_value_from_json(val, &want_v);
			if (!v || !meta_value_equal(v, &want_v))
				fuzz_fail("property %s: index differs", key);
			g_free(want_text);
		}
	}
	if (m->n_props != n_props)
		fuzz_fail("%zu properties indexed, %zu public", m->n_props, n_props);
	size_t n_tags = json_object_object_get_ex(md, "tags", &tags) && tags
				? json_object_array_length(tags)
				: 0;
	if (m->n_tags != n_tags)
		fuzz_fail("%zu tags indexed, %zu given", m->n_tags, n_tags);
	for (size_t i = 0; i < n_tags; i++) {
		json_object *t = json_object_array_get_idx(tags, i);
		uint64_t work = 0;
		/* by length: a tag may hold \u0000 */
		if (!meta_lookup_tag(m, json_object_get_string(t), (size_t)json_object_get_string_len(t),
				     &work))
			fuzz_fail("tag %zu not indexed", i);
	}
	json_object_put(full);
	json_object_put(pub);
	json_object_put(want);
}

/* The model of meta_merge (docs/protocol.md, "update_metadata"):
 * properties merged key by key, null removing; any other key replaced. */
static json_object *model_merge(json_object *cur, json_object *upd)
{
	json_object *out = NULL;
	json_object_deep_copy(cur, &out, NULL);
	json_object_object_foreach(upd, key, val) {
		if (strcmp(key, "properties") != 0) {
			json_object_object_add(out, key, json_object_get(val));
			continue;
		}
		json_object *props;
		if (!json_object_object_get_ex(out, "properties", &props) ||
		    !json_object_is_type(props, json_type_object)) {
			props = json_object_new_object();
			json_object_object_add(out, "properties", props);
		}
		json_object_object_foreach(val, pkey, pval) {
			if (!pval)
				json_object_object_del(props, pkey);
			else
				json_object_object_add(props, pkey, json_object_get(pval));
		}
	}
	return out;
}

/* What M keeps once the tree it was made from is gone (BEFORE: measured
 * before that tree was parsed). */
static void kept(const struct meta *m, size_t before)
{
	size_t now = fuzz_allocated_bytes();
	size_t bound = META_KEPT_FACTOR * (m->full_len + m->public_len) + META_KEPT_SLACK;
	if (now > before && now - before > bound)
		fuzz_fail("memory: a meta of %zu bytes of text keeps %zu bytes (bound %zu)", m->full_len,
			  now - before, bound);
}

static bool skip(json_object *md)
{
	/* NaN and Infinity are the protocol's to refuse (finding 7): the
	 * router harness checks that path. */
	return fuzz_has_nonfinite(md);
}

FUZZ_TARGET(meta)
{
	static const size_t limits[] = { 64, 512, 16384, 1 << 20 };
	struct fuzz_rec rec[MAX_RECORDS];
	size_t max_bytes = 16384;

	if (!tok) {
		fuzz_quiet();
		tok = json_tokener_new_ex(JSON_DEPTH + 1);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	}
	if (size && data[0] >= '0' && data[0] <= '3') {
		max_bytes = limits[data[0] - '0'];
		data++, size--;
	}
	size_t n = fuzz_split(data, size, rec, MAX_RECORDS);
	size_t before = fuzz_allocated_bytes();
	json_object *md = parse(&rec[0]);
	struct meta *m = NULL;
	const char *why = NULL;

	if ((!md && rec[0].len) || skip(md))
		goto out;
	if (meta_new(md, max_bytes, &m, &why) < 0) {
		if (!why)
			fuzz_fail("meta_new failed without a reason");
		goto out;
	}
	/* Without its tree (parsed again for the checks). */
	json_object_put(md);
	kept(m, before);
	md = parse(&rec[0]);
	json_object *cur = md ? NULL : json_object_new_object();
	if (md)
		json_object_deep_copy(md, &cur, NULL);
	check(m, cur);
	for (size_t i = 1; i < n; i++) {
		json_object *upd = parse(&rec[i]);
		struct meta *next = NULL;
		if (!upd || skip(upd)) {
			json_object_put(upd);
			continue;
		}
		json_object *props = NULL;
		bool valid = json_object_is_type(upd, json_type_object) &&
			     (!json_object_object_get_ex(upd, "properties", &props) ||
			      json_object_is_type(props, json_type_object));
		json_object *want = valid ? model_merge(cur, upd) : NULL;
		int rc = meta_merge(m, upd, max_bytes, &next, &why);
		if (rc == 0) {
			if (!want)
				fuzz_fail("meta_merge took a non-object or non-object properties");
			check(next, want);
			meta_free(m);
			m = next;
			json_object_put(cur);
			cur = want;
		} else {
			json_object_put(want);
		}
		json_object_put(upd);
	}
	json_object_put(cur);
out:
	meta_free(m);
	json_object_put(md);
	return 0;
}
