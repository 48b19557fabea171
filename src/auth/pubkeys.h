/* pubkeys: the Ed25519 public keys accounts publish for peer
 * authentication (sleap-rtc's POST /api/auth/public-keys), and which of
 * them a room's peers may trust (GET /api/rooms/{id}/authorized-keys).
 * Decisions and the in-memory table only: no I/O.  The caller verifies
 * credentials and writes what pubkeys_add returns to the store. */
#pragma once

#include "store/store.h"

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define PUBKEYS_KEY_BYTES 32       /* a raw Ed25519 public key */
#define PUBKEYS_KEY_TEXT 43        /* its base64url, unpadded */
#define PUBKEYS_DEVICE_NAME_MAX 128 /* bytes of UTF-8 */

struct pubkeys;

struct pubkeys *pubkeys_new(void);
void pubkeys_free(struct pubkeys *pk);
/* Takes the records (struct store_pubkey) of store_load_pubkeys(). */
void pubkeys_load(struct pubkeys *pk, GPtrArray *records);

/* TEXT is the base64url of exactly PUBKEYS_KEY_BYTES, unpadded and
 * canonical: 0 and OUT (may be NULL), else -EINVAL. */
int pubkeys_decode(const char *text, uint8_t out[PUBKEYS_KEY_BYTES]);

/* A publication's body {"public_key": str, "device_name": str}: 0 with
 * *KEY and *DEVICE (g_free), or -EINVAL with *WHY. */
int pubkeys_parse_request(const char *body, size_t len, char **key, char **device,
			  const char **why);

enum { PUBKEYS_ADDED, PUBKEYS_UNCHANGED, PUBKEYS_UPDATED };
/* ACCOUNT ("jwt:ISSUER:SUB") publishes KEY from DEVICE.  PUBKEYS_ADDED,
 * or PUBKEYS_UPDATED (it had the key, under another device or user
 * name): *OUT is the record to store; PUBKEYS_UNCHANGED: it had that key
 * as it is; -EDQUOT: it has MAX keys (0: no limit).  USERNAME NULL: not
 * known (an account key has none): a known key keeps the one it has. */
int pubkeys_add(struct pubkeys *pk, const char *account, const char *username, const char *key,
		const char *device, unsigned max, int64_t now, const struct store_pubkey **out);
/* Takes back an addition that could not be stored. */
void pubkeys_remove(struct pubkeys *pk, const char *account, const char *key);
unsigned pubkeys_count(struct pubkeys *pk, const char *account);

/* Whether ACCOUNT was added to ROOM_ID by the operator (room members:
 * rooms_is_member, wired by keyapi.c); NULL: no members. */
struct pubkeys_members {
	bool (*is_member)(void *data, const char *room_id, const char *account);
	void *data;
};

/* Whether ACCOUNT may use ROOM with a JWT or an account key, as
 * registration admits it without the room token: it created the room,
 * or the room is open to its issuer (to every issuer when its creator is
 * not a JWT account), or it is a member (M may be NULL). */
bool pubkeys_account_may_use(const struct store_room *room, const char *account,
			     const struct pubkeys_members *m);
/* Whether API key KEY (valid now: rooms_check_key) may be used for ROOM:
 * a room's key for its room only, an account key wherever its account
 * may go (pubkeys_account_may_use). */
bool pubkeys_key_may_use(const struct store_room *room, const struct store_key *key,
			 const struct pubkeys_members *m);

/* {"authorized_keys":[{"public_key","username","device_name"}...]}: the
 * keys of the accounts that may use ROOM, the creator's first, at most
 * LIMIT (0: no limit); *TRUNCATED when some were left out. */
char *pubkeys_authorized_json(struct pubkeys *pk, const struct store_room *room,
			      const struct pubkeys_members *m, unsigned limit, bool *truncated);
