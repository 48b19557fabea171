/* meta: a peer's metadata.
 *
 * Stored compactly, in one allocation: the serialized full metadata (for
 * merges and the owner's own view), the serialized public view (keys
 * starting with '_' removed, at the top level and in "properties"), and an
 * index of tags and public properties for discovery filters. */
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
		json_object *complex; /* array or object */
	};
};

/* V borrows O's storage. */
void meta_value_from_json(json_object *o, struct meta_value *v);
/* JSON equality: numbers by value (1 == 1.0), arrays and objects deeply. */
bool meta_value_equal(const struct meta_value *a, const struct meta_value *b);
/* Orders two numbers or two strings (bytewise); false for any other pair. */
bool meta_value_compare(const struct meta_value *a, const struct meta_value *b, int *cmp);

struct meta_prop {
	const char *key;
	struct meta_value value;
};

struct meta {
	const char *public_json;
	size_t public_len;
	const char *full_json; /* == public_json when nothing is private */
	size_t full_len;
	size_t n_tags;
	const char **tags;
	size_t n_props;
	struct meta_prop *props; /* public properties only */
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
