#include "auth/pubkeys.h"

#include "core/jscan.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <string.h>

struct pubkeys {
	GPtrArray *all;      /* of struct store_pubkey, in publication order */
	GHashTable *counts;  /* account -> keys it has (GUINT_TO_POINTER) */
};

struct pubkeys *pubkeys_new(void)
{
	struct pubkeys *pk = g_new0(struct pubkeys, 1);
	pk->all = g_ptr_array_new_with_free_func((GDestroyNotify)store_pubkey_free);
	pk->counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	return pk;
}

void pubkeys_free(struct pubkeys *pk)
{
	if (!pk)
		return;
	g_ptr_array_unref(pk->all);
	g_hash_table_unref(pk->counts);
	g_free(pk);
}

unsigned pubkeys_count(struct pubkeys *pk, const char *account)
{
	return GPOINTER_TO_UINT(g_hash_table_lookup(pk->counts, account));
}

static void count(struct pubkeys *pk, const char *account)
{
	g_hash_table_replace(pk->counts, g_strdup(account),
			     GUINT_TO_POINTER(pubkeys_count(pk, account) + 1));
}

void pubkeys_load(struct pubkeys *pk, GPtrArray *records)
{
	for (guint i = 0; i < records->len; i++) {
		struct store_pubkey *k = g_ptr_array_index(records, i);
		/* Only what this version would have accepted. */
		if (!k->account || !k->public_key || pubkeys_decode(k->public_key, NULL) < 0)
			continue;
		g_ptr_array_add(pk->all, k);
		records->pdata[i] = NULL;
		count(pk, k->account);
	}
}

int pubkeys_decode(const char *text, uint8_t out[PUBKEYS_KEY_BYTES])
{
	char std[PUBKEYS_KEY_TEXT + 2];
	gsize n = 0;

	if (!text || strlen(text) != PUBKEYS_KEY_TEXT ||
	    strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
		    PUBKEYS_KEY_TEXT)
		return -EINVAL;
	for (size_t i = 0; i < PUBKEYS_KEY_TEXT; i++)
		std[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
	std[PUBKEYS_KEY_TEXT] = '=';
	std[PUBKEYS_KEY_TEXT + 1] = '\0';
	g_autofree guchar *raw = g_base64_decode(std, &n);
	if (n != PUBKEYS_KEY_BYTES)
		return -EINVAL;
	/* Canonical: the unused low bits of the last character are zero, so
	 * one key has one text (and re-posting it is recognised). */
	g_autofree char *again = g_base64_encode(raw, n);
	if (memcmp(again, std, PUBKEYS_KEY_TEXT) != 0)
		return -EINVAL;
	if (out)
		memcpy(out, raw, PUBKEYS_KEY_BYTES);
	return 0;
}

int pubkeys_parse_request(const char *body, size_t len, char **key, char **device,
			  const char **why)
{
	json_tokener *tok = json_tokener_new_ex(4);
	json_object *o = NULL, *v;
	int r = -EINVAL;

	*key = *device = NULL;
	/* RFC 8259 only (json-c alone would take NaN), and a small object. */
	if (len <= INT_MAX && jscan_check(body, len, 4, 64, NULL, NULL) == JSCAN_OK)
		o = json_tokener_parse_ex(tok, body, (int)len);
	size_t end = o ? json_tokener_get_parse_end(tok) : 0;
	while (end < len && strchr(" \t\r\n", body[end]) && body[end])
		end++; /* whitespace may follow the object */
	if (!o || end != len || !json_object_is_type(o, json_type_object)) {
		*why = "the body must be a JSON object";
		goto out;
	}
	if (!json_object_object_get_ex(o, "public_key", &v) || !json_object_is_type(v, json_type_string)) {
		*why = "public_key (a string) is required";
		goto out;
	}
	/* (A string holding \u0000 is longer than C reads it: refused.) */
	if ((size_t)json_object_get_string_len(v) != strlen(json_object_get_string(v)) ||
	    pubkeys_decode(json_object_get_string(v), NULL) < 0) {
		*why = "public_key must be the base64url (unpadded) of a 32-byte Ed25519 key";
		goto out;
	}
	*key = g_strdup(json_object_get_string(v));
	const char *dev = "";
	if (json_object_object_get_ex(o, "device_name", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string)) {
			*why = "device_name must be a string";
			goto out;
		}
		dev = json_object_get_string(v);
		if ((size_t)json_object_get_string_len(v) != strlen(dev)) {
			*why = "device_name must not hold \\u0000";
			goto out;
		}
	}
	if (strlen(dev) > PUBKEYS_DEVICE_NAME_MAX || !g_utf8_validate(dev, -1, NULL)) {
		*why = "device_name must be UTF-8 of at most 128 bytes";
		goto out;
	}
	*device = g_strdup(dev);
	r = 0;
out:
	if (r < 0)
		g_clear_pointer(key, g_free);
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int pubkeys_add(struct pubkeys *pk, const char *account, const char *username, const char *key,
		const char *device, unsigned max, int64_t now, const struct store_pubkey **out)
{
	for (guint i = 0; i < pk->all->len; i++) {
		struct store_pubkey *k = g_ptr_array_index(pk->all, i);
		if (strcmp(k->account, account) != 0 || strcmp(k->public_key, key) != 0)
			continue;
		/* An account key names no user: the name a JWT gave stays. */
		if (!username)
			username = k->username;
		if (g_strcmp0(k->device_name, device) == 0 && g_strcmp0(k->username, username) == 0)
			return PUBKEYS_UNCHANGED;
		g_free(k->device_name);
		k->device_name = g_strdup(device);
		if (username != k->username) {
			g_free(k->username);
			k->username = g_strdup(username);
		}
		*out = k;
		return PUBKEYS_UPDATED;
	}
	if (max && pubkeys_count(pk, account) >= max)
		return -EDQUOT;
	struct store_pubkey *k = g_new0(struct store_pubkey, 1);
	k->account = g_strdup(account);
	k->public_key = g_strdup(key);
	k->device_name = g_strdup(device);
	k->username = g_strdup(username);
	k->created_at = now;
	g_ptr_array_add(pk->all, k);
	count(pk, account);
	*out = k;
	return PUBKEYS_ADDED;
}

void pubkeys_remove(struct pubkeys *pk, const char *account, const char *key)
{
	for (guint i = 0; i < pk->all->len; i++) {
		struct store_pubkey *k = g_ptr_array_index(pk->all, i);
		if (strcmp(k->account, account) != 0 || strcmp(k->public_key, key) != 0)
			continue;
		unsigned n = pubkeys_count(pk, account);
		if (n > 1)
			g_hash_table_replace(pk->counts, g_strdup(account), GUINT_TO_POINTER(n - 1));
		else
			g_hash_table_remove(pk->counts, account);
		g_ptr_array_remove_index(pk->all, i); /* keeps the order */
		return;
	}
}

/* The issuer part of "jwt:ISSUER:SUB", its length in *LEN; NULL if none. */
static const char *issuer_of(const char *principal, size_t *len)
{
	if (!principal || !g_str_has_prefix(principal, "jwt:"))
		return NULL;
	const char *name = principal + 4, *end = strchr(name, ':');
	if (!end)
		return NULL;
	*len = (size_t)(end - name);
	return name;
}

bool pubkeys_account_may_use(const struct store_room *room, const char *account,
			     const struct pubkeys_members *m)
{
	size_t mine_len = 0, creator_len = 0;
	const char *mine = issuer_of(account, &mine_len);

	if (!mine)
		return false;
	if (room->created_by && strcmp(room->created_by, account) == 0)
		return true;
	if (m && m->is_member(m->data, room->id, account))
		return true;
	if (!room->open_to_issuer)
		return false;
	const char *creator = issuer_of(room->created_by, &creator_len);
	return !creator || (creator_len == mine_len && memcmp(creator, mine, mine_len) == 0);
}

bool pubkeys_key_may_use(const struct store_room *room, const struct store_key *key,
			 const struct pubkeys_members *m)
{
	if (key->room_id)
		return strcmp(key->room_id, room->id) == 0;
	return key->account && pubkeys_account_may_use(room, key->account, m);
}

static void add_entry(json_object *list, const struct store_pubkey *k)
{
	json_object *e = json_object_new_object();
	const char *sub = strchr(k->account + 4, ':');
	json_object_object_add(e, "public_key", json_object_new_string(k->public_key));
	json_object_object_add(e, "username",
			       json_object_new_string(k->username ? k->username : sub ? sub + 1 : ""));
	json_object_object_add(e, "device_name", json_object_new_string(k->device_name ? k->device_name : ""));
	json_object_array_add(list, e);
}

char *pubkeys_authorized_json(struct pubkeys *pk, const struct store_room *room,
			      const struct pubkeys_members *m, unsigned limit, bool *truncated)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	unsigned n = 0;

	*truncated = false;
	/* Two passes: the creator's keys first, so a limit never hides them. */
	for (int pass = 0; pass < 2 && !*truncated; pass++)
		for (guint i = 0; i < pk->all->len; i++) {
			const struct store_pubkey *k = g_ptr_array_index(pk->all, i);
			bool creator = room->created_by && strcmp(k->account, room->created_by) == 0;
			if (creator != (pass == 0) || (!creator && !pubkeys_account_may_use(room, k->account, m)))
				continue;
			if (limit && n >= limit) {
				*truncated = true;
				break;
			}
			add_entry(list, k);
			n++;
		}
	json_object_object_add(o, "authorized_keys", list);
	char *text = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}
