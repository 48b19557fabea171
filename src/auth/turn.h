/* turn: the "ice_servers" list sent in registered_auth.  With a shared
 * secret, TURN entries carry short-lived credentials in coturn's
 * use-auth-secret scheme: username "EXPIRY:PEER", credential
 * base64(HMAC-SHA1(secret, username)). */
#pragma once

#include "util/config.h"

#include <glib.h>

struct turn;

struct turn *turn_new(const struct config *cfg);
void turn_free(struct turn *t);
/* The JSON array for PEER_ID at NOW (seconds since the epoch); g_free. */
char *turn_ice_servers(const struct turn *t, const char *peer_id, gint64 now);
