/* auth: the configured JWT issuers and their key sets (PROTOCOL.md 6).
 * Key sets come from a file (read at start and on reload) or from the
 * issuer's URL (fetched on the loop, refreshed periodically and on an
 * unknown kid).  Who may register where is the router's policy. */
#pragma once

#include "config.h"
#include "jwt.h"

#include <glib.h>
#include <stdbool.h>

struct auth;

struct auth *auth_new(void);
void auth_free(struct auth *a);
/* Builds the issuers of CFG and reads their jwks_file key sets; an issuer
 * whose jwks_url did not change keeps the key set it has.  On error
 * (-EINVAL with ERR) nothing changes. */
int auth_configure(struct auth *a, const struct config *cfg, GError **err);

unsigned auth_n_issuers(const struct auth *a);
/* Verifies TOKEN; on success *NAME is the [issuer NAME] that vouches. */
int auth_verify(struct auth *a, const char *token, gint64 now, struct jwt_claims *claims,
		enum jwt_error *why, const char **name);
/* "jwt:NAME:SUB", who a verified token speaks for. */
char *auth_principal(const char *issuer_name, const struct jwt_claims *claims);
/* The issuer name of a "jwt:NAME:SUB" principal, or NULL. */
char *auth_principal_issuer(const char *principal);
/* True when every issuer has a key set (for /ready). */
bool auth_keys_loaded(const struct auth *a);
