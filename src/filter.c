#include "filter.h"

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
	const char *key;
	GArray *conds; /* of struct filter_cond */
};

/* NULL members are criteria the query did not give. */
struct filter {
	json_object *root; /* keeps every borrowed string and value alive */
	GPtrArray *roles; /* const char *, any of them */
	GPtrArray *tags;
	bool tags_all;    /* $all: every tag, else any */
	GArray *props; /* of struct filter_prop */
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
		g_ptr_array_unref(f->roles);
	if (f->tags)
		g_ptr_array_unref(f->tags);
	json_object_put(f->root);
	g_free(f);
}

/* Appends each string of ARR to OUT; false if ARR holds anything else. */
static bool collect_strings(json_object *arr, GPtrArray *out)
{
	if (!json_object_is_type(arr, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *s = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(s, json_type_string))
			return false;
		g_ptr_array_add(out, (gpointer)json_object_get_string(s));
	}
	return true;
}

static int compile_role(struct filter *f, json_object *role, char **why)
{
	f->roles = g_ptr_array_new();
	if (json_object_is_type(role, json_type_string))
		g_ptr_array_add(f->roles, (gpointer)json_object_get_string(role));
	else if (!collect_strings(role, f->roles)) {
		*why = g_strdup("filters.role must be a string or an array of strings");
		return -EINVAL;
	}
	return 0;
}

static int compile_tags(struct filter *f, json_object *tags, char **why)
{
	f->tags = g_ptr_array_new();
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

static int compile_cond(const char *key, const char *opname, json_object *operand,
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
			meta_value_from_json(json_object_array_get_idx(operand, j), &c->list[j]);
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
	meta_value_from_json(operand, &c->value);
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
		struct filter_prop p = { .key = key,
					 .conds = g_array_new(FALSE, TRUE, sizeof(struct filter_cond)) };
		g_array_append_val(f->props, p);
		if (!is_operator_object(val)) {
			struct filter_cond c = { .op = OP_EQ };
			meta_value_from_json(val, &c.value);
			g_array_append_val(p.conds, c);
			continue;
		}
		json_object_object_foreach(val, opname, operand) {
			struct filter_cond c = { 0 };
			int r = compile_cond(key, opname, operand, &c, why);
			g_array_append_val(p.conds, c);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int filter_compile(json_object *filters, struct filter **out, char **why)
{
	struct filter *f = g_new0(struct filter, 1);
	json_object *v;
	int r = 0;

	f->root = json_object_get(filters);
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

static bool list_contains(const struct filter_cond *c, const struct meta_value *v)
{
	for (size_t i = 0; i < c->n_list; i++)
		if (meta_value_equal(&c->list[i], v))
			return true;
	return false;
}

/* A missing property behaves as null for equality and fails every
 * ordering, so it matches only $exists:false, $ne, $nin and null. */
static bool cond_match(const struct filter_cond *c, const struct meta_value *v)
{
	static const struct meta_value null_value = { .type = META_NULL };
	const struct meta_value *x = v ? v : &null_value;
	int cmp;

	switch (c->op) {
	case OP_EQ:
		return meta_value_equal(x, &c->value);
	case OP_NE:
		return !meta_value_equal(x, &c->value);
	case OP_GT:
		return v && meta_value_compare(v, &c->value, &cmp) && cmp > 0;
	case OP_GTE:
		return v && meta_value_compare(v, &c->value, &cmp) && cmp >= 0;
	case OP_LT:
		return v && meta_value_compare(v, &c->value, &cmp) && cmp < 0;
	case OP_LTE:
		return v && meta_value_compare(v, &c->value, &cmp) && cmp <= 0;
	case OP_IN:
		return list_contains(c, x);
	case OP_NIN:
		return !list_contains(c, x);
	case OP_EXISTS:
		return (v != NULL) == c->value.b;
	}
	return false;
}

bool filter_match(const struct filter *f, const char *role, const struct meta *m)
{
	if (f->roles) {
		guint i;
		for (i = 0; i < f->roles->len; i++) {
			const char *want = g_ptr_array_index(f->roles, i);
			if (role[0] == want[0] && strcmp(role, want) == 0)
				break;
		}
		if (i == f->roles->len)
			return false;
	}
	if (f->tags && !f->tags_all) {
		guint i;
		for (i = 0; i < f->tags->len; i++)
			if (meta_has_tag(m, g_ptr_array_index(f->tags, i)))
				break;
		if (i == f->tags->len)
			return false;
	} else if (f->tags) {
		for (guint i = 0; i < f->tags->len; i++)
			if (!meta_has_tag(m, g_ptr_array_index(f->tags, i)))
				return false;
	}
	if (f->props) {
		for (guint i = 0; i < f->props->len; i++) {
			const struct filter_prop *p = &g_array_index(f->props, struct filter_prop, i);
			const struct meta_value *v = meta_find_prop(m, p->key);
			for (guint j = 0; j < p->conds->len; j++)
				if (!cond_match(&g_array_index(p->conds, struct filter_cond, j), v))
					return false;
		}
	}
	return true;
}
