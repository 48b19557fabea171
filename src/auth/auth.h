/* auth: the configured JWT issuers and their key sets (docs/protocol.md,
 * "Authentication and rooms").
 * Key sets come from a file (read at start and on reload) or from the
 * issuer's URL: fetched on the loop once auth_start_fetching is called,
 * refreshed every jwks_refresh seconds, and on an unknown kid (at most
 * once per jwks_refresh_min seconds).  Who may register where is the
 * router's policy. */
#pragma once

#include "util/config.h"
#include "auth/jwt.h"

#include <glib.h>
#include <stdbool.h>
#include <uv.h>

struct auth;
struct auth_wait;
struct fetch_client;

/* config_load() and then what an [issuer NAME] means, which config.c does
 * not know: the Cognito shorthand filled in, issuer and audience, one of
 * jwks_url (one fetch_url_check() accepts) and jwks_file, algorithms
 * libjwt may use, each issuer named once.  The daemon's way to read its
 * configuration (start, --check-config, reload); on failure nothing is
 * returned and ERR names the file, the group and the key. */
int auth_load_config(const char *path, const struct config_overrides *ov, struct config **out,
		     GError **err);

struct auth *auth_new(void);
/* Cancels fetches in flight; waiters are not called. */
void auth_free(struct auth *a);
/* Builds the issuers of CFG and reads their jwks_file key sets; an issuer
 * whose jwks_url (and CA file) did not change keeps the key set it has,
 * a new URL is fetched at once.  On error (-EINVAL with ERR) nothing
 * changes. */
int auth_configure(struct auth *a, const struct config *cfg, GError **err);
/* From now on key sets are fetched with FC, on LOOP.  Without this (as in
 * --check-config) URL issuers have no keys. */
void auth_start_fetching(struct auth *a, uv_loop_t *loop, struct fetch_client *fc);
/* Cancels fetches and timers, before FC and the loop go (shutdown). */
void auth_stop_fetching(struct auth *a);

unsigned auth_n_issuers(const struct auth *a);
/* Whether every register needs a credential (a JWT or an API key).  The
 * configuration alone decides: [server] require_auth, or any [issuer].
 * Never the API keys that exist, so minting, expiring or revoking one
 * cannot switch authentication on or off. */
bool auth_required(const struct auth *a);
/* Verifies TOKEN; on success *NAME is the [issuer NAME] that vouches.  On
 * JWT_UNKNOWN_KID *NAME is the issuer the token names, and its key set is
 * refetched unless that was done less than jwks_refresh_min ago. */
int auth_verify(struct auth *a, const char *token, gint64 now, struct jwt_claims *claims,
		enum jwt_error *why, const char **name);

typedef void (*auth_keys_fn)(void *data);
/* When issuer NAME's key set is being fetched: 0, and FN(DATA) runs on the
 * loop once that fetch has ended, whatever its outcome (or when a reload
 * drops the issuer); *OUT cancels it.  -EAGAIN when nothing is in flight. */
int auth_await_keys(struct auth *a, const char *name, auth_keys_fn fn, void *data,
		    struct auth_wait **out);
void auth_wait_cancel(struct auth_wait *w);

/* "jwt:NAME:SUB", who a verified token speaks for. */
char *auth_principal(const char *issuer_name, const struct jwt_claims *claims);
/* The issuer name of a "jwt:NAME:SUB" principal, or NULL. */
char *auth_principal_issuer(const char *principal);
/* Whether PRINCIPAL's issuer is one of CFG's (an account key outlives
 * the removal of its issuer, and is refused then). */
bool auth_principal_issuer_configured(const struct config *cfg, const char *principal);
/* True when every issuer has a key set; safe from any thread (/ready). */
bool auth_keys_loaded(const struct auth *a);
