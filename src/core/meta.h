/* meta: a peer's metadata.
 *
 * Stored compactly, in one allocation: the serialized full metadata (for
 * merges and the owner's own view), the serialized public view (keys
 * starting with '_' removed, at the top level and in "properties"), and an
 * index of tags and public properties for discovery filters.  Arrays and
 * objects among the properties are kept as canonical text, not as json-c
 * trees, so what a peer keeps stays proportional to its metadata's size. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum meta_type { META_NULL, META_BOOL, META_INT, META_DOUBLE, META_STRING, META_COMPLEX };

struct meta_value {
	enum meta_type type;
	union {
		bool b;
		int64_t i;
		double d;
		struct {
			const char *ptr;
			size_t len;
		} s;
		/* An array or object: its canonical text (keys sorted, numbers
		 * by value), so deep equality is a hash check and one memcmp. */
		struct {
			const char *text;
			size_t len;
			uint64_t hash;
		} c;
	};
};

/* V borrows O's storage for a string.  For an array or object V gets its
 * canonical text, returned for the caller to g_free (NULL otherwise).  A
 * NULL O is JSON null. */
char *meta_value_from_json(json_object *o, struct meta_value *v);
/* JSON equality: numbers by value (1 == 1.0), arrays and objects deeply. */
bool meta_value_equal(const struct meta_value *a, const struct meta_value *b);
/* Orders two numbers or two strings (bytewise); false for any other pair. */
bool meta_value_compare(const struct meta_value *a, const struct meta_value *b, int *cmp);

/* Work as discovery counts it: one unit per comparison, plus one per
 * META_WORK_BYTES bytes a comparison may read. */
#define META_WORK_BYTES 64

struct meta_str {
	const char *ptr;
	size_t len;
};

struct meta_prop {
	struct meta_str key; /* first: lookups read either index as meta_str */
	struct meta_value value;
};

struct meta {
	const char *public_json;
	size_t public_len;
	const char *full_json; /* == public_json when nothing is private */
	size_t full_len;
	size_t n_tags;
	const struct meta_str *tags; /* ordered by length, then bytes */
	size_t n_props;
	struct meta_prop *props; /* public properties only, ordered by key as tags */
	size_t kept_bytes;       /* the whole allocation */
	char data[];
};

/* Builds metadata from MD (NULL means {}).  -EINVAL with *WHY for a bad
 * shape, -EMSGSIZE when its serialized size exceeds MAX_BYTES. */
int meta_new(json_object *md, size_t max_bytes, struct meta **out, const char **why);
/* Applies UPDATE to OLD with the merge rule: "properties" merged key by
 * key (null removes), "tags" replaced, any other key replaced. */
int meta_merge(const struct meta *old, json_object *update, size_t max_bytes,
	       struct meta **out, const char **why);
void meta_free(struct meta *m);

const struct meta_value *meta_find_prop(const struct meta *m, const char *key);
bool meta_has_tag(const struct meta *m, const char *tag);
/* The same for a KEY or TAG of LEN bytes, adding the work done to *WORK. */
const struct meta_value *meta_lookup_prop(const struct meta *m, const char *key, size_t len,
					  uint64_t *work);
bool meta_lookup_tag(const struct meta *m, const char *tag, size_t len, uint64_t *work);
