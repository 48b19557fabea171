/* jwt: verifies a bearer JWT (RS256 or ES256) against configured issuers.
 *
 * Everything libjwt 1.10 leaves to its caller is done here: the header's
 * alg is pinned before any signature check, the key is chosen by kid from
 * the issuer's JWKS, and exp, nbf, iat, iss, aud (or client_id) and
 * token_use are checked.  Token text is never logged or kept.  No I/O. */
#pragma once

#include "auth/jwks.h"

#include <glib.h>
#include <stddef.h>

#define JWT_MAX_TOKEN_BYTES 16384
#define JWT_DEFAULT_LEEWAY 60

/* Bits of jwt_issuer.algorithms. */
#define JWT_ALLOW_RS256 (1u << 0)
#define JWT_ALLOW_ES256 (1u << 1)

struct jwt_issuer {
	char *name; /* the config group, [issuer NAME] */
	char *issuer; /* matched exactly against iss */
	char *audience; /* in aud, or equal to client_id when aud is absent */
	char *token_use; /* NULL: not checked */
	unsigned algorithms; /* JWT_ALLOW_* */
	unsigned leeway; /* seconds */
	struct jwks *jwks; /* current key set, one reference; NULL until loaded */
};

/* An issuer accepting RS256 and ES256 with the default leeway. */
struct jwt_issuer *jwt_issuer_new(const char *name, const char *issuer, const char *audience);
void jwt_issuer_free(struct jwt_issuer *is);
/* Takes a reference to SET (may be NULL) and drops the one to the old set;
 * a verification in progress keeps its own. */
void jwt_issuer_set_jwks(struct jwt_issuer *is, struct jwks *set);
/* Parses "RS256;ES256" (';' or ',' separated) into JWT_ALLOW_* bits. */
int jwt_algorithms_parse(const char *text, unsigned *out);

/* What a Cognito user pool stands for. */
struct jwt_issuer_spec {
	char *issuer;
	char *jwks_url;
	char *audience;
	char *token_use;
};

/* Fills OUT for the pool (issuer https://cognito-idp.REGION.amazonaws.com/
 * POOL, its /.well-known/jwks.json, audience APP_CLIENT_ID, token_use
 * "id").  -EINVAL with *WHY when a value does not look like AWS's. */
int jwt_issuer_cognito(const char *region, const char *user_pool_id, const char *app_client_id,
		       struct jwt_issuer_spec *out, const char **why);
void jwt_issuer_spec_clear(struct jwt_issuer_spec *spec);

enum jwt_error {
	JWT_OK = 0,
	JWT_MALFORMED,
	JWT_BAD_ALGORITHM,
	JWT_UNKNOWN_KID,
	JWT_BAD_SIGNATURE,
	JWT_EXPIRED,
	JWT_NOT_YET_VALID,
	JWT_ISSUED_IN_FUTURE,
	JWT_BAD_ISSUER,
	JWT_BAD_AUDIENCE,
	JWT_BAD_TOKEN_USE,
	JWT_MISSING_EXP,
	JWT_MISSING_SUB,
	JWT__COUNT
};

/* A stable short name for logs and metrics ("expired", "bad_algorithm"). */
const char *jwt_error_name(enum jwt_error e);
/* The reason the protocol sends: "Token expired" or "Invalid token". */
const char *jwt_error_reason(enum jwt_error e);

struct jwt_claims {
	char *sub;
	char *iss;
	gint64 exp;
	char *username; /* cognito:username, else preferred_username; may be NULL */
	char *email; /* may be NULL */
};

void jwt_claims_clear(struct jwt_claims *c);

/* Verifies TOKEN at NOW (seconds since the epoch) against ISSUERS.
 * Returns 0 with OUT filled, or -EACCES with *WHY saying why.  *MATCHED
 * (may be NULL) is the issuer named by iss once known, also on failure:
 * on JWT_UNKNOWN_KID the caller may refresh that issuer's JWKS and retry. */
int jwt_verify(const char *token, struct jwt_issuer *const *issuers, size_t n_issuers, gint64 now,
	       struct jwt_claims *out, enum jwt_error *why, const struct jwt_issuer **matched);
