#include "core/filter.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

enum filter_op { OP_EQ, OP_NE, OP_GT, OP_GTE, OP_LT, OP_LTE, OP_IN, OP_NIN, OP_EXISTS };

static const struct {
	const char *name;
	enum filter_op op;
} op_names[] = {
	{ "$eq", OP_EQ }, { "$ne", OP_NE },   { "$gt", OP_GT },   { "$gte", OP_GTE },  { "$lt", OP_LT },
	{ "$lte", OP_LTE }, { "$in", OP_IN }, { "$nin", OP_NIN }, { "$exists", OP_EXISTS },
};

struct filter_cond {
	enum filter_op op;
	struct meta_value value; /* EQ..LTE; EXISTS uses value.b */
	size_t n_list;           /* IN, NIN */
	struct meta_value *list;
};

struct filter_prop {
	struct meta_str key;
	GArray *conds; /* of struct filter_cond */
};

/* NULL members are criteria the query did not give. */
struct filter {
	json_object *root; /* keeps every borrowed string alive */
	GPtrArray *texts;  /* canonical texts of composite operands */
	GArray *roles;     /* of struct meta_str, any of them */
	GArray *tags;      /* of struct meta_str */
	bool tags_all;     /* $all: every tag, else any */
	GArray *props;     /* of struct filter_prop */
	uint64_t budget, work;
	bool exhausted;
};

void filter_free(struct filter *f)
{
	if (!f)
		return;
	if (f->props) {
		for (guint i = 0; i < f->props->len; i++) {
			struct filter_prop *p = &g_array_index(f->props, struct filter_prop, i);
			for (guint j = 0; j < p->conds->len; j++)
				g_free(g_array_index(p->conds, struct filter_cond, j).list);
			g_array_unref(p->conds);
		}
		g_array_unref(f->props);
	}
	if (f->roles)
		g_array_unref(f->roles);
	if (f->tags)
		g_array_unref(f->tags);
	g_ptr_array_unref(f->texts);
	json_object_put(f->root);
	g_free(f);
}

static void value_of(struct filter *f, json_object *o, struct meta_value *v)
{
	char *text = meta_value_from_json(o, v);
	if (text)
		g_ptr_array_add(f->texts, text);
}

static struct meta_str str_of(json_object *s)
{
	return (struct meta_str){ json_object_get_string(s), (size_t)json_object_get_string_len(s) };
}

/* Appends each string of ARR to OUT; false if ARR holds anything else. */
static bool collect_strings(json_object *arr, GArray *out)
{
	if (!json_object_is_type(arr, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *s = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(s, json_type_string))
			return false;
		struct meta_str ms = str_of(s);
		g_array_append_val(out, ms);
	}
	return true;
}

static int compile_role(struct filter *f, json_object *role, char **why)
{
	f->roles = g_array_new(FALSE, FALSE, sizeof(struct meta_str));
	if (json_object_is_type(role, json_type_string)) {
		struct meta_str ms = str_of(role);
		g_array_append_val(f->roles, ms);
	} else if (!collect_strings(role, f->roles)) {
		*why = g_strdup("filters.role must be a string or an array of strings");
		return -EINVAL;
	}
	return 0;
}

static int compile_tags(struct filter *f, json_object *tags, char **why)
{
	f->tags = g_array_new(FALSE, FALSE, sizeof(struct meta_str));
	if (json_object_is_type(tags, json_type_array)) {
		if (collect_strings(tags, f->tags))
			return 0;
	} else if (json_object_is_type(tags, json_type_object) &&
		   json_object_object_length(tags) == 1) {
		json_object_object_foreach(tags, op, list) {
			if (strcmp(op, "$all") == 0)
				f->tags_all = true;
			else if (strcmp(op, "$any") != 0) {
				*why = g_strdup_printf("Unknown tags operator: %.64s", op);
				return -EINVAL;
			}
			if (collect_strings(list, f->tags))
				return 0;
		}
	}
	*why = g_strdup("filters.tags must be an array of strings, {\"$all\":[...]} or {\"$any\":[...]}");
	return -EINVAL;
}

static bool is_operator_object(json_object *v)
{
	if (!json_object_is_type(v, json_type_object) || json_object_object_length(v) == 0)
		return false;
	json_object_object_foreach(v, key, val) {
		(void)val;
		if (key[0] != '$')
			return false;
	}
	return true;
}

static int compile_cond(struct filter *f, const char *key, const char *opname, json_object *operand,
			struct filter_cond *c, char **why)
{
	size_t i;

	for (i = 0; i < G_N_ELEMENTS(op_names); i++)
		if (strcmp(op_names[i].name, opname) == 0)
			break;
	if (i == G_N_ELEMENTS(op_names)) {
		*why = g_strdup_printf("Unknown filter operator: %.64s", opname);
		return -EINVAL;
	}
	c->op = op_names[i].op;
	switch (c->op) {
	case OP_IN:
	case OP_NIN:
		if (!json_object_is_type(operand, json_type_array)) {
			*why = g_strdup_printf("%s for property %.64s needs an array", opname, key);
			return -EINVAL;
		}
		c->n_list = json_object_array_length(operand);
		c->list = g_new(struct meta_value, c->n_list);
		for (size_t j = 0; j < c->n_list; j++)
			value_of(f, json_object_array_get_idx(operand, j), &c->list[j]);
		return 0;
	case OP_EXISTS:
		if (!json_object_is_type(operand, json_type_boolean)) {
			*why = g_strdup_printf("$exists for property %.64s needs true or false", key);
			return -EINVAL;
		}
		break;
	default:
		break;
	}
	value_of(f, operand, &c->value);
	return 0;
}

static int compile_props(struct filter *f, json_object *props, char **why)
{
	if (!json_object_is_type(props, json_type_object)) {
		*why = g_strdup("filters.properties must be an object");
		return -EINVAL;
	}
	f->props = g_array_new(FALSE, TRUE, sizeof(struct filter_prop));
	json_object_object_foreach(props, key, val) {
		struct filter_prop p = { .key = { key, strlen(key) },
					 .conds = g_array_new(FALSE, TRUE, sizeof(struct filter_cond)) };
		g_array_append_val(f->props, p);
		if (!is_operator_object(val)) {
			struct filter_cond c = { .op = OP_EQ };
			value_of(f, val, &c.value);
			g_array_append_val(p.conds, c);
			continue;
		}
		json_object_object_foreach(val, opname, operand) {
			struct filter_cond c = { 0 };
			int r = compile_cond(f, key, opname, operand, &c, why);
			g_array_append_val(p.conds, c);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int filter_compile(json_object *filters, uint64_t max_work, struct filter **out, char **why)
{
	struct filter *f = g_new0(struct filter, 1);
	json_object *v;
	int r = 0;

	f->root = json_object_get(filters);
	f->texts = g_ptr_array_new_with_free_func(g_free);
	f->budget = max_work;
	if (filters) {
		if (json_object_object_get_ex(filters, "role", &v) && v)
			r = compile_role(f, v, why);
		if (r == 0 && json_object_object_get_ex(filters, "tags", &v) && v)
			r = compile_tags(f, v, why);
		if (r == 0 && json_object_object_get_ex(filters, "properties", &v) && v)
			r = compile_props(f, v, why);
	}
	if (r < 0) {
		filter_free(f);
		return r;
	}
	*out = f;
	return 0;
}

bool filter_exhausted(const struct filter *f)
{
	return f->exhausted;
}

uint64_t filter_work(const struct filter *f)
{
	return f->work;
}

void filter_rearm(struct filter *f)
{
	f->work = 0;
	f->exhausted = false;
}

/* More anchors than this make an index entry per value not worth it. */
#define ANCHORS_MAX 32

static bool is_scalar_anchor(const struct meta_value *v)
{
	return v->type == META_STRING || v->type == META_BOOL;
}

/* What P's conditions require: VALUE anchors (an $eq or an $in of strings
 * and booleans), the KEY (any other condition that fails on a missing
 * property), or nothing.  Returns the kind and sets *COND. */
static int prop_anchor(const struct filter_prop *p, const struct filter_cond **cond)
{
	int best = -1;

	for (guint j = 0; j < p->conds->len; j++) {
		const struct filter_cond *c = &g_array_index(p->conds, struct filter_cond, j);
		bool all_scalar = c->n_list > 0 && c->n_list <= ANCHORS_MAX, any_null = false;
		switch (c->op) {
		case OP_EQ:
			if (is_scalar_anchor(&c->value)) {
				*cond = c;
				return FILTER_ANCHOR_VALUE;
			}
			if (c->value.type != META_NULL)
				best = FILTER_ANCHOR_KEY;
			break;
		case OP_IN:
			for (size_t i = 0; i < c->n_list; i++) {
				all_scalar &= is_scalar_anchor(&c->list[i]);
				any_null |= c->list[i].type == META_NULL;
			}
			if (all_scalar) {
				*cond = c;
				return FILTER_ANCHOR_VALUE;
			}
			if (!any_null)
				best = FILTER_ANCHOR_KEY; /* also []: matches nothing */
			break;
		case OP_GT:
		case OP_GTE:
		case OP_LT:
		case OP_LTE:
			best = FILTER_ANCHOR_KEY;
			break;
		case OP_EXISTS:
			if (c->value.b)
				best = FILTER_ANCHOR_KEY;
			break;
		default:
			break;
		}
	}
	return best;
}

bool filter_anchors(const struct filter *f, filter_anchor_fn fn, void *data)
{
	const struct filter_prop *key_prop = NULL, *value_prop = NULL;
	const struct filter_cond *value_cond = NULL;

	/* Of the values, the fewest: "status":"available" files a watch
	 * under one entry that a busy peer lacks, where an $in of models
	 * beside it would file it under entries every peer has. */
	for (guint i = 0; f->props && i < f->props->len; i++) {
		const struct filter_prop *p = &g_array_index(f->props, struct filter_prop, i);
		const struct filter_cond *c = NULL;
		int kind = prop_anchor(p, &c);
		if (kind == FILTER_ANCHOR_VALUE &&
		    (!value_cond || (c->op == OP_EQ ? 1 : c->n_list) < (value_cond->op == OP_EQ ? 1 : value_cond->n_list))) {
			value_prop = p;
			value_cond = c;
		}
		if (kind == FILTER_ANCHOR_KEY && !key_prop)
			key_prop = p;
	}
	if (value_cond) {
		if (value_cond->op == OP_EQ)
			fn(FILTER_ANCHOR_VALUE, &value_prop->key, &value_cond->value, data);
		for (size_t j = 0; value_cond->op == OP_IN && j < value_cond->n_list; j++)
			fn(FILTER_ANCHOR_VALUE, &value_prop->key, &value_cond->list[j], data);
		return true;
	}
	if (f->roles && f->roles->len > 0 && f->roles->len <= ANCHORS_MAX) {
		for (guint i = 0; i < f->roles->len; i++)
			fn(FILTER_ANCHOR_ROLE, &g_array_index(f->roles, struct meta_str, i), NULL, data);
		return true;
	}
	/* $all: any one of its tags will do; $any: each. */
	if (f->tags && f->tags->len > 0 && (f->tags_all || f->tags->len <= ANCHORS_MAX)) {
		for (guint i = 0; i < (f->tags_all ? 1 : f->tags->len); i++)
			fn(FILTER_ANCHOR_TAG, &g_array_index(f->tags, struct meta_str, i), NULL, data);
		return true;
	}
	if (key_prop) {
		fn(FILTER_ANCHOR_KEY, &key_prop->key, NULL, data);
		return true;
	}
	return false;
}

void filter_reads(const struct filter *f, filter_read_fn fn, void *data)
{
	for (guint i = 0; f->props && i < f->props->len; i++)
		fn(&g_array_index(f->props, struct filter_prop, i).key, data);
	if (f->tags)
		fn(NULL, data);
}

/* Counts UNITS; false once the budget is spent. */
static inline bool spend(struct filter *f, uint64_t units)
{
	f->work += units;
	if (f->work > f->budget)
		f->exhausted = true;
	return !f->exhausted;
}

/* What meta_value_equal(A, B) may read, in units beyond the one call. */
static inline uint64_t equal_cost(const struct meta_value *a, const struct meta_value *b)
{
	if (a->type != b->type)
		return 0;
	if (a->type == META_STRING && a->s.len == b->s.len)
		return a->s.len / META_WORK_BYTES;
	if (a->type == META_COMPLEX && a->c.hash == b->c.hash && a->c.len == b->c.len)
		return a->c.len / META_WORK_BYTES;
	return 0;
}

static bool equal(struct filter *f, const struct meta_value *a, const struct meta_value *b)
{
	return spend(f, 1 + equal_cost(a, b)) && meta_value_equal(a, b);
}

static bool ordered(struct filter *f, const struct meta_value *a, const struct meta_value *b, int *cmp)
{
	uint64_t cost = 1;
	if (a->type == META_STRING && b->type == META_STRING)
		cost += MIN(a->s.len, b->s.len) / META_WORK_BYTES;
	return spend(f, cost) && meta_value_compare(a, b, cmp);
}

static bool list_contains(struct filter *f, const struct filter_cond *c, const struct meta_value *v)
{
	for (size_t i = 0; i < c->n_list && !f->exhausted; i++)
		if (equal(f, &c->list[i], v))
			return true;
	return false;
}

/* A missing property behaves as null for equality and fails every
 * ordering, so it matches only $exists:false, $ne, $nin and null.  Over
 * budget, the answer is false (the caller sees filter_exhausted()). */
static bool cond_match(struct filter *f, const struct filter_cond *c, const struct meta_value *v)
{
	static const struct meta_value null_value = { .type = META_NULL };
	const struct meta_value *x = v ? v : &null_value;
	int cmp;

	switch (c->op) {
	case OP_EQ:
		return equal(f, x, &c->value);
	case OP_NE:
		return !equal(f, x, &c->value) && !f->exhausted;
	case OP_GT:
		return v && ordered(f, v, &c->value, &cmp) && cmp > 0;
	case OP_GTE:
		return v && ordered(f, v, &c->value, &cmp) && cmp >= 0;
	case OP_LT:
		return v && ordered(f, v, &c->value, &cmp) && cmp < 0;
	case OP_LTE:
		return v && ordered(f, v, &c->value, &cmp) && cmp <= 0;
	case OP_IN:
		return list_contains(f, c, x);
	case OP_NIN:
		return !list_contains(f, c, x) && !f->exhausted;
	case OP_EXISTS:
		return spend(f, 1) && (v != NULL) == c->value.b;
	}
	return false;
}

static bool role_match(struct filter *f, const char *role)
{
	size_t len = SIZE_MAX; /* measured once a first byte agrees */
	for (guint i = 0; i < f->roles->len; i++) {
		const struct meta_str *want = &g_array_index(f->roles, struct meta_str, i);
		if (!spend(f, 1))
			return false;
		if (want->len ? role[0] != want->ptr[0] : role[0] != '\0')
			continue;
		if (len == SIZE_MAX)
			len = strlen(role);
		if (want->len != len)
			continue;
		if (!spend(f, len / META_WORK_BYTES))
			return false;
		if (memcmp(want->ptr, role, len) == 0)
			return true;
	}
	return false;
}

static bool tags_match(struct filter *f, const struct meta *m)
{
	for (guint i = 0; i < f->tags->len; i++) {
		const struct meta_str *t = &g_array_index(f->tags, struct meta_str, i);
		uint64_t work = 0;
		bool has = meta_lookup_tag(m, t->ptr, t->len, &work);
		if (!spend(f, work + 1))
			return false;
		if (has != f->tags_all)
			return has; /* any: found one; all: one is missing */
	}
	return f->tags_all; /* all: none missing; any (or []): none found */
}

bool filter_match(struct filter *f, const char *role, const struct meta *m)
{
	if (f->exhausted)
		return false;
	if (f->roles && !role_match(f, role))
		return false;
	if (f->tags && !tags_match(f, m))
		return false;
	if (f->props) {
		for (guint i = 0; i < f->props->len; i++) {
			const struct filter_prop *p = &g_array_index(f->props, struct filter_prop, i);
			uint64_t work = 0;
			const struct meta_value *v = meta_lookup_prop(m, p->key.ptr, p->key.len, &work);
			if (!spend(f, work + 1))
				return false;
			for (guint j = 0; j < p->conds->len; j++)
				if (!cond_match(f, &g_array_index(p->conds, struct filter_cond, j), v))
					return false;
		}
	}
	return !f->exhausted;
}
