#include "daemon/audit.h"

#include "util/log.h"

struct audit_entry {
	gint64 time;
	char *action, *actor, *object, *room;
};

struct audit {
	unsigned capacity;
	GQueue entries; /* of struct audit_entry, newest at the head */
};

static void entry_free(struct audit_entry *e)
{
	g_free(e->action);
	g_free(e->actor);
	g_free(e->object);
	g_free(e->room);
	g_free(e);
}

struct audit *audit_new(unsigned capacity)
{
	struct audit *a = g_new0(struct audit, 1);
	a->capacity = capacity ? capacity : 1;
	g_queue_init(&a->entries);
	return a;
}

void audit_free(struct audit *a)
{
	if (!a)
		return;
	g_queue_clear_full(&a->entries, (GDestroyNotify)entry_free);
	g_free(a);
}

void audit_record(struct audit *a, const char *action, const char *actor, const char *object,
		  const char *room, gint64 now)
{
	struct log_fields f = { .room = room, .code = action, .actor = actor, .object = object };
	struct audit_entry *e;

	log_event(LOG_NOTICE, LOG_EVENT_ADMIN_ACTION, &f, "admin action %s on %s by %s", action, object,
		  actor);
	if (!a)
		return;
	e = g_new0(struct audit_entry, 1);
	e->time = now;
	e->action = g_strdup(action);
	e->actor = g_strdup(actor);
	e->object = g_strdup(object);
	e->room = g_strdup(room);
	g_queue_push_head(&a->entries, e);
	while (a->entries.length > a->capacity)
		entry_free(g_queue_pop_tail(&a->entries));
}

json_object *audit_to_json(const struct audit *a)
{
	json_object *list = json_object_new_array(), *o = json_object_new_object();

	for (GList *l = a ? a->entries.head : NULL; l; l = l->next) {
		const struct audit_entry *e = l->data;
		json_object *j = json_object_new_object();
		json_object_object_add(j, "time", json_object_new_int64(e->time));
		json_object_object_add(j, "action", json_object_new_string(e->action));
		json_object_object_add(j, "actor", json_object_new_string(e->actor));
		json_object_object_add(j, "object", json_object_new_string(e->object));
		json_object_object_add(j, "room", e->room ? json_object_new_string(e->room) : NULL);
		json_object_array_add(list, j);
	}
	json_object_object_add(o, "entries", list);
	return o;
}
