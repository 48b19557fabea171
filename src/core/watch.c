#include "core/watch.h"

#include <errno.h>
#include <string.h>

/* An index entry.  Plain: something a peer has (filter.h's anchors),
 * for joins.  Reading: a property (or the tags) a filter reads together
 * with one of its anchors (A_ANY: it has none), for updates: a change of
 * READ to a peer that has the anchor.  Stored entries own their bytes;
 * lookups point into a peer's metadata. */
enum anchor_kind { A_ROLE, A_TAG, A_KEY, A_STRING, A_BOOL, A_ANY };
enum read_kind { READ_NONE, READ_PROP, READ_TAGS };

struct anchor {
	guint hash;
	enum anchor_kind kind;
	enum read_kind reads;
	struct meta_str key, value, read;
};

/* A filter reading more than this times its anchors is filed, for
 * updates, under its reads alone (A_ANY): its entries stay few. */
#define READING_ENTRIES_MAX 64

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
	a->reads = READ_NONE;
	/* "", not NULL, where there is none: memcpy and memcmp take no NULL */
	a->key = (struct meta_str){ key ? key : "", key_len };
	a->value = (struct meta_str){ value ? value : "", value_len };
	a->read = (struct meta_str){ "", 0 };
	/* the separator keeps ("ab","c") apart from ("a","bc") */
	a->hash = fnv(fnv(fnv(2166136261u ^ kind, a->key.ptr, key_len), "\xff", 1), a->value.ptr, value_len);
}

/* A becomes the entry of a change of READ (a property; NULL: the tags)
 * to a peer that has A. */
static void anchor_reading(struct anchor *a, const struct meta_str *read)
{
	a->reads = read ? READ_PROP : READ_TAGS;
	if (read)
		a->read = *read;
	a->hash = fnv(fnv(a->hash ^ ((guint)a->reads << 8), "\xfe", 1), a->read.ptr, a->read.len);
}

static guint anchor_hash(gconstpointer p)
{
	return ((const struct anchor *)p)->hash;
}

static gboolean anchor_equal(gconstpointer pa, gconstpointer pb)
{
	const struct anchor *a = pa, *b = pb;
	return a->kind == b->kind && a->reads == b->reads && a->key.len == b->key.len &&
	       a->value.len == b->value.len && a->read.len == b->read.len &&
	       memcmp(a->key.ptr, b->key.ptr, a->key.len) == 0 &&
	       memcmp(a->value.ptr, b->value.ptr, a->value.len) == 0 &&
	       memcmp(a->read.ptr, b->read.ptr, a->read.len) == 0;
}

/* A stored copy of A, in one allocation. */
static struct anchor *anchor_dup(const struct anchor *a)
{
	struct anchor *d = g_malloc(sizeof *d + a->key.len + a->value.len + a->read.len + 1);
	char *text = (char *)(d + 1);

	*d = *a;
	memcpy(text, a->key.ptr, a->key.len);
	memcpy(text + a->key.len, a->value.ptr, a->value.len);
	memcpy(text + a->key.len + a->value.len, a->read.ptr, a->read.len);
	d->key.ptr = text;
	d->value.ptr = text + a->key.len;
	d->read.ptr = text + a->key.len + a->value.len;
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

/* Gathers the anchors of a filter into DATA, a GArray of struct anchor
 * pointing into the filter's own strings. */
static void gather_anchor(enum filter_anchor kind, const struct meta_str *key, const struct meta_value *v,
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
	GArray *anchors = data;
	g_array_append_val(anchors, a);
}

/* Gathers what a filter reads into DATA, a GArray of struct meta_str
 * (an empty ptr: the tags). */
static void gather_read(const struct meta_str *key, void *data)
{
	struct meta_str read = key ? *key : (struct meta_str){ NULL, 0 };
	GArray *reads = data;
	g_array_append_val(reads, read);
}

/* Files filter watch W for joins under its anchors, and for updates
 * under each thing it reads with each anchor. */
static void file_filter(struct watch *w)
{
	g_autoptr(GArray) anchors = g_array_new(FALSE, FALSE, sizeof(struct anchor));
	g_autoptr(GArray) reads = g_array_new(FALSE, FALSE, sizeof(struct meta_str));
	struct anchor any;

	w->anchored = filter_anchors(w->filter, gather_anchor, anchors);
	for (guint i = 0; i < anchors->len; i++)
		file(w, &g_array_index(anchors, struct anchor, i));
	filter_reads(w->filter, gather_read, reads);
	if (!w->anchored || reads->len * anchors->len > READING_ENTRIES_MAX) {
		anchor_init(&any, A_ANY, NULL, 0, NULL, 0);
		g_array_set_size(anchors, 0);
		g_array_append_val(anchors, any);
	}
	for (guint r = 0; r < reads->len; r++) {
		const struct meta_str *read = &g_array_index(reads, struct meta_str, r);
		for (guint i = 0; i < anchors->len; i++) {
			struct anchor a = g_array_index(anchors, struct anchor, i);
			anchor_reading(&a, read->ptr ? read : NULL);
			file(w, &a);
		}
	}
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
	file_filter(w);
	if (!w->anchored)
		g_ptr_array_add(wr->anywhere, w);
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

/* The watches filed under (KIND, KEY, VALUE), or with READ set under
 * the change of READ (a property; empty ptr: the tags) to a peer that
 * has it. */
static void lookup(struct watch_room *wr, const struct meta_str *read, enum anchor_kind kind,
		   const char *key, size_t key_len, const char *value, size_t value_len, GPtrArray *out)
{
	struct anchor a;

	anchor_init(&a, kind, key, key_len, value, value_len);
	if (read)
		anchor_reading(&a, read->ptr ? read : NULL);
	collect(wr, g_hash_table_lookup(wr->index, &a), out);
}

/* The filter watches filed under something a peer of ROLE with
 * metadata M has, or under nothing; with READ, those of them that read
 * READ (see lookup). */
static void collect_anchored(struct watch_room *wr, const struct meta_str *read, const char *role,
			     const struct meta *m, GPtrArray *out)
{
	if (read)
		lookup(wr, read, A_ANY, NULL, 0, NULL, 0, out);
	else
		collect(wr, wr->anywhere, out);
	lookup(wr, read, A_ROLE, role, strlen(role), NULL, 0, out);
	for (size_t i = 0; i < m->n_tags; i++)
		lookup(wr, read, A_TAG, m->tags[i].ptr, m->tags[i].len, NULL, 0, out);
	for (size_t i = 0; i < m->n_props; i++) {
		const struct meta_prop *mp = &m->props[i];
		lookup(wr, read, A_KEY, mp->key.ptr, mp->key.len, NULL, 0, out);
		if (mp->value.type == META_STRING) {
			lookup(wr, read, A_STRING, mp->key.ptr, mp->key.len, mp->value.s.ptr, mp->value.s.len, out);
		} else if (mp->value.type == META_BOOL) {
			const char *t;
			size_t n;
			bool_text(mp->value.b, &t, &n);
			lookup(wr, read, A_BOOL, mp->key.ptr, mp->key.len, t, n, out);
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
	collect_anchored(wr, NULL, p->role, p->meta, out);
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

/* What differs between OLD and NEW: the properties added, removed or
 * changed (into CHANGED, of struct meta_str), and whether the tags do. */
static bool meta_diff(const struct meta *old, const struct meta *new, GArray *changed)
{
	size_t i = 0, j = 0;

	/* both ordered: one walk */
	while (i < old->n_props || j < new->n_props) {
		const struct meta_prop *a = i < old->n_props ? &old->props[i] : NULL;
		const struct meta_prop *b = j < new->n_props ? &new->props[j] : NULL;
		int cmp = !a ? 1 : !b ? -1 : key_cmp(&a->key, &b->key);
		if (cmp < 0) {
			g_array_append_val(changed, a->key);
			i++;
		} else if (cmp > 0) {
			g_array_append_val(changed, b->key);
			j++;
		} else {
			if (a->value.type != b->value.type || !meta_value_equal(&a->value, &b->value))
				g_array_append_val(changed, a->key);
			i++;
			j++;
		}
	}
	return !tags_equal(old, new);
}

/* Whether W reads one of CHANGED, or the tags when TAGS. */
static bool reads_any(const struct watch *w, const GArray *changed, bool tags)
{
	for (guint i = 0; i < w->filed->len; i++) {
		const struct anchor *a = g_ptr_array_index(w->filed, i);
		if (a->reads == READ_TAGS && tags)
			return true;
		for (guint k = 0; a->reads == READ_PROP && k < changed->len; k++) {
			const struct meta_str *c = &g_array_index(changed, struct meta_str, k);
			if (c->len == a->read.len && memcmp(c->ptr, a->read.ptr, c->len) == 0)
				return true;
		}
	}
	return false;
}

void watch_readers(const struct peer *p, const struct meta *old, const struct meta *new,
		   GPtrArray *out)
{
	struct watch_room *wr = p->room->watches;
	g_autoptr(GArray) changed = g_array_new(FALSE, FALSE, sizeof(struct meta_str));
	const struct meta_str tags = { NULL, 0 };

	if (!wr)
		return;
	bool tags_changed = meta_diff(old, new, changed);
	if (!changed->len && !tags_changed)
		return;
	wr->seen++;
	/* the watches whose set holds P and read what changed */
	for (guint i = 0; p->watches_in && i < p->watches_in->len; i++) {
		struct watch *w = g_ptr_array_index(p->watches_in, i);
		if (w->mark != wr->seen && reads_any(w, changed, tags_changed)) {
			w->mark = wr->seen;
			g_ptr_array_add(out, w);
		}
	}
	/* and those that read it and P may enter: filed under the change
	 * with something P has.  A watch that needs "status":"available"
	 * is not among them while P stays busy. */
	if (g_hash_table_size(wr->index) == 0)
		return;
	for (guint k = 0; k < changed->len; k++)
		collect_anchored(wr, &g_array_index(changed, struct meta_str, k), p->role, new, out);
	if (tags_changed)
		collect_anchored(wr, &tags, p->role, new, out);
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
