#include "core/watch.h"

#include <errno.h>
#include <string.h>

/* An index entry: something a peer has (filter.h's anchors).  Stored
 * entries own their bytes; lookups point into a peer's metadata. */
enum anchor_kind {
	A_ROLE, A_TAG, A_KEY, A_STRING, A_BOOL, /* anchors: what a peer must have */
	R_PROP, R_TAGS,                         /* what a filter reads */
};

struct anchor {
	guint hash;
	enum anchor_kind kind;
	struct meta_str key, value;
};

struct watch_room {
	struct room *room;
	GHashTable *index;   /* struct anchor -> GPtrArray of struct watch */
	GPtrArray *presence; /* presence subscriptions */
	GPtrArray *anywhere; /* filter watches with no anchor */
	unsigned n_watches;  /* presence subscriptions too */
	guint seen, members; /* the current marks (watch.mark, watch.member) */
};

static guint fnv(guint h, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

static void anchor_init(struct anchor *a, enum anchor_kind kind, const char *key, size_t key_len,
			const char *value, size_t value_len)
{
	a->kind = kind;
	/* "", not NULL, where there is none: memcpy and memcmp take no NULL */
	a->key = (struct meta_str){ key ? key : "", key_len };
	a->value = (struct meta_str){ value ? value : "", value_len };
	/* the separator keeps ("ab","c") apart from ("a","bc") */
	a->hash = fnv(fnv(fnv(2166136261u ^ kind, key, key_len), "\xff", 1), value, value_len);
}

static guint anchor_hash(gconstpointer p)
{
	return ((const struct anchor *)p)->hash;
}

static gboolean anchor_equal(gconstpointer pa, gconstpointer pb)
{
	const struct anchor *a = pa, *b = pb;
	return a->kind == b->kind && a->key.len == b->key.len && a->value.len == b->value.len &&
	       memcmp(a->key.ptr, b->key.ptr, a->key.len) == 0 &&
	       memcmp(a->value.ptr, b->value.ptr, a->value.len) == 0;
}

/* A stored copy of A, in one allocation. */
static struct anchor *anchor_dup(const struct anchor *a)
{
	struct anchor *d = g_malloc(sizeof *d + a->key.len + a->value.len + 1);
	char *text = (char *)(d + 1);

	*d = *a;
	memcpy(text, a->key.ptr, a->key.len);
	memcpy(text + a->key.len, a->value.ptr, a->value.len);
	d->key.ptr = text;
	d->value.ptr = text + a->key.len;
	return d;
}

static void bool_text(bool b, const char **text, size_t *len)
{
	*text = b ? "1" : "0";
	*len = 1;
}

/* Files W under A. */
static void file(struct watch *w, const struct anchor *a)
{
	GHashTable *index = w->wr->index;
	struct anchor *stored;
	GPtrArray *list;

	if (!g_hash_table_lookup_extended(index, a, (gpointer *)&stored, (gpointer *)&list)) {
		stored = anchor_dup(a);
		list = g_ptr_array_new();
		g_hash_table_insert(index, stored, list);
	}
	/* $in ["a","a"] names one entry twice: filed once */
	for (guint i = 0; i < list->len; i++)
		if (g_ptr_array_index(list, i) == w)
			return;
	g_ptr_array_add(list, w);
	g_ptr_array_add(w->filed, stored);
}

static void file_under(enum filter_anchor kind, const struct meta_str *key, const struct meta_value *v,
		       void *data)
{
	struct anchor a;

	switch (kind) {
	case FILTER_ANCHOR_ROLE:
		anchor_init(&a, A_ROLE, key->ptr, key->len, NULL, 0);
		break;
	case FILTER_ANCHOR_TAG:
		anchor_init(&a, A_TAG, key->ptr, key->len, NULL, 0);
		break;
	case FILTER_ANCHOR_KEY:
		anchor_init(&a, A_KEY, key->ptr, key->len, NULL, 0);
		break;
	case FILTER_ANCHOR_VALUE:
		if (v->type == META_STRING) {
			anchor_init(&a, A_STRING, key->ptr, key->len, v->s.ptr, v->s.len);
		} else {
			const char *t;
			size_t n;
			bool_text(v->b, &t, &n);
			anchor_init(&a, A_BOOL, key->ptr, key->len, t, n);
		}
		break;
	}
	file(data, &a);
}

static void file_reader(const struct meta_str *key, void *data)
{
	struct anchor a;

	if (key)
		anchor_init(&a, R_PROP, key->ptr, key->len, NULL, 0);
	else
		anchor_init(&a, R_TAGS, NULL, 0, NULL, 0);
	file(data, &a);
}

struct watch *watch_add(struct room *room, void *owner, const struct peer *self, const char *id,
			struct filter *filter)
{
	struct watch_room *wr = room->watches;
	struct watch *w = g_new0(struct watch, 1);

	if (!wr) {
		wr = g_new0(struct watch_room, 1);
		wr->room = room;
		wr->index = g_hash_table_new_full(anchor_hash, anchor_equal, g_free,
						  (GDestroyNotify)g_ptr_array_unref);
		wr->presence = g_ptr_array_new();
		wr->anywhere = g_ptr_array_new();
		room->watches = wr;
	}
	w->id = g_strdup(id);
	w->owner = owner;
	w->self = self;
	w->filter = filter;
	w->wr = wr;
	w->filed = g_ptr_array_new();
	wr->n_watches++;
	if (!filter) {
		g_ptr_array_add(wr->presence, w);
		return w;
	}
	w->anchored = filter_anchors(filter, file_under, w);
	if (!w->anchored)
		g_ptr_array_add(wr->anywhere, w);
	filter_reads(filter, file_reader, w);
	return w;
}

int watch_fill(struct watch *w)
{
	struct room *room = w->wr->room;
	struct peer *p, *q;

	filter_rearm(w->filter); /* one budget for the room, as a discover's */
	ROOM_FOREACH_PEER(room, p) {
		if (p != w->self && filter_match(w->filter, p->role, p->meta))
			watch_hold(w, p);
		if (filter_exhausted(w->filter)) {
			ROOM_FOREACH_PEER(room, q)
				watch_release(w, q);
			return -E2BIG;
		}
	}
	return 0;
}

void watch_remove(struct watch *w)
{
	struct watch_room *wr = w->wr;
	struct peer *p;

	if (w->filter) {
		ROOM_FOREACH_PEER(wr->room, p)
			watch_release(w, p);
	}
	if (!w->filter)
		g_ptr_array_remove_fast(wr->presence, w);
	else if (!w->anchored)
		g_ptr_array_remove_fast(wr->anywhere, w);
	for (guint i = 0; i < w->filed->len; i++) {
		struct anchor *a = g_ptr_array_index(w->filed, i);
		GPtrArray *list = g_hash_table_lookup(wr->index, a);
		g_ptr_array_remove_fast(list, w);
		if (list->len == 0)
			g_hash_table_remove(wr->index, a);
	}
	if (--wr->n_watches == 0) {
		wr->room->watches = NULL;
		g_hash_table_unref(wr->index);
		g_ptr_array_unref(wr->presence);
		g_ptr_array_unref(wr->anywhere);
		g_free(wr);
	}
	g_ptr_array_unref(w->filed);
	filter_free(w->filter);
	g_free(w->id);
	g_free(w);
}

unsigned watch_room_count(const struct room *room)
{
	return room->watches ? room->watches->n_watches : 0;
}

/* Marks the watches of LIST seen, adding those not seen yet to OUT
 * (NULL: marks only). */
static void collect(struct watch_room *wr, GPtrArray *list, GPtrArray *out)
{
	for (guint i = 0; list && i < list->len; i++) {
		struct watch *w = g_ptr_array_index(list, i);
		if (w->mark != wr->seen) {
			w->mark = wr->seen;
			if (out)
				g_ptr_array_add(out, w);
		}
	}
}

static void lookup(struct watch_room *wr, enum anchor_kind kind, const char *key, size_t key_len,
		   const char *value, size_t value_len, GPtrArray *out)
{
	struct anchor a;

	anchor_init(&a, kind, key, key_len, value, value_len);
	collect(wr, g_hash_table_lookup(wr->index, &a), out);
}

/* The filter watches filed under something a peer of ROLE with
 * metadata M has, or under nothing. */
static void collect_anchored(struct watch_room *wr, const char *role, const struct meta *m,
			     GPtrArray *out)
{
	collect(wr, wr->anywhere, out);
	lookup(wr, A_ROLE, role, strlen(role), NULL, 0, out);
	for (size_t i = 0; i < m->n_tags; i++)
		lookup(wr, A_TAG, m->tags[i].ptr, m->tags[i].len, NULL, 0, out);
	for (size_t i = 0; i < m->n_props; i++) {
		const struct meta_prop *mp = &m->props[i];
		lookup(wr, A_KEY, mp->key.ptr, mp->key.len, NULL, 0, out);
		if (mp->value.type == META_STRING) {
			lookup(wr, A_STRING, mp->key.ptr, mp->key.len, mp->value.s.ptr, mp->value.s.len, out);
		} else if (mp->value.type == META_BOOL) {
			const char *t;
			size_t n;
			bool_text(mp->value.b, &t, &n);
			lookup(wr, A_BOOL, mp->key.ptr, mp->key.len, t, n, out);
		}
	}
}

void watch_candidates(const struct peer *p, GPtrArray *out)
{
	struct watch_room *wr = p->room->watches;

	if (!wr)
		return;
	wr->seen++;
	collect(wr, wr->presence, out);
	collect_anchored(wr, p->role, p->meta, out);
}

static bool tags_equal(const struct meta *a, const struct meta *b)
{
	if (a->n_tags != b->n_tags)
		return false;
	for (size_t i = 0; i < a->n_tags; i++)
		if (a->tags[i].len != b->tags[i].len || memcmp(a->tags[i].ptr, b->tags[i].ptr, a->tags[i].len))
			return false;
	return true;
}

/* Orders keys as meta does: by length, then bytes. */
static int key_cmp(const struct meta_str *a, const struct meta_str *b)
{
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return memcmp(a->ptr, b->ptr, a->len);
}

void watch_readers(const struct peer *p, const struct meta *old, const struct meta *new,
		   GPtrArray *out)
{
	struct watch_room *wr = p->room->watches;
	g_autoptr(GPtrArray) read = g_ptr_array_new();
	size_t i = 0, j = 0;

	if (!wr)
		return;
	wr->seen++;
	if (!tags_equal(old, new))
		lookup(wr, R_TAGS, NULL, 0, NULL, 0, read);
	/* both ordered: one walk finds the keys added, removed or changed */
	while (i < old->n_props || j < new->n_props) {
		const struct meta_prop *a = i < old->n_props ? &old->props[i] : NULL;
		const struct meta_prop *b = j < new->n_props ? &new->props[j] : NULL;
		int cmp = !a ? 1 : !b ? -1 : key_cmp(&a->key, &b->key);
		const struct meta_prop *changed = NULL;
		if (cmp < 0) {
			changed = a;
			i++;
		} else if (cmp > 0) {
			changed = b;
			j++;
		} else {
			if (a->value.type != b->value.type || !meta_value_equal(&a->value, &b->value))
				changed = a;
			i++;
			j++;
		}
		if (changed)
			lookup(wr, R_PROP, changed->key.ptr, changed->key.len, NULL, 0, read);
	}
	if (!read->len)
		return;
	/* Of those, the ones whose set holds P, and those P can enter: a
	 * watch that needs "status":"available" cannot, while P stays busy. */
	wr->seen++;
	collect_anchored(wr, p->role, new, NULL);
	for (guint k = 0; k < read->len; k++) {
		struct watch *w = g_ptr_array_index(read, k);
		if (w->mark == wr->seen || watch_marked(w))
			g_ptr_array_add(out, w);
	}
}

void watch_presence(const struct peer *p, GPtrArray *out)
{
	struct watch_room *wr = p->room->watches;

	if (wr)
		g_ptr_array_extend(out, wr->presence, NULL, NULL);
}

bool watch_matches(struct watch *w, const char *role, const struct meta *m, bool *lost)
{
	bool match;

	*lost = false;
	if (!w->filter)
		return true;
	filter_rearm(w->filter);
	match = filter_match(w->filter, role, m);
	*lost = filter_exhausted(w->filter);
	return match && !*lost;
}

bool watch_holds(const struct watch *w, const struct peer *p)
{
	for (guint i = 0; p->watches_in && i < p->watches_in->len; i++)
		if (g_ptr_array_index(p->watches_in, i) == w)
			return true;
	return false;
}

void watch_hold(struct watch *w, struct peer *p)
{
	if (!p->watches_in)
		p->watches_in = g_ptr_array_new();
	g_ptr_array_add(p->watches_in, w);
}

void watch_release(struct watch *w, struct peer *p)
{
	if (p->watches_in && g_ptr_array_remove_fast(p->watches_in, w) && p->watches_in->len == 0)
		g_clear_pointer(&p->watches_in, g_ptr_array_unref);
}

void watch_mark_members(struct peer *p)
{
	struct watch_room *wr = p->room->watches;

	if (!wr)
		return;
	wr->members++;
	for (guint i = 0; p->watches_in && i < p->watches_in->len; i++)
		((struct watch *)g_ptr_array_index(p->watches_in, i))->member = wr->members;
}

bool watch_marked(const struct watch *w)
{
	return w->member == w->wr->members;
}
