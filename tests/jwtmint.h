/* Token minting for the tests: keys made here, JWKs written from their
 * parameters, and JWS signatures made with EVP directly (so tests can
 * also make malformed and hostile tokens). */
#pragma once

#include <json-c/json.h>
#include <openssl/evp.h>
#include <stddef.h>

char *jwtmint_b64url(const void *data, size_t len);
/* A key parameter (OSSL_PKEY_PARAM_*), big-endian, left-padded to PAD
 * bytes (0: minimal), base64url. */
char *jwtmint_param(EVP_PKEY *k, const char *name, int pad);
/* The public JWK of K; EXTRA adds members (",\"use\":\"sig\""). */
char *jwtmint_jwk(EVP_PKEY *k, const char *kid, const char *extra);
/* {"keys":[A, B]}: a key set of A (KID_A) and, unless B is NULL, B. */
char *jwtmint_key_set(EVP_PKEY *a, const char *kid_a, EVP_PKEY *b, const char *kid_b);
/* HEADER.PAYLOAD signed as JWS does: PKCS#1 v1.5 for RSA, R||S for ECDSA. */
char *jwtmint_sign(EVP_PKEY *k, const EVP_MD *md, const char *header, const char *payload);
/* A token with header {"alg":ALG,"kid":KID,"typ":"JWT"}; takes PAYLOAD. */
char *jwtmint_token_alg(EVP_PKEY *k, const char *alg, const char *kid, json_object *payload);
/* The same with the algorithm K's type calls for (RS256, ES256). */
char *jwtmint_token(EVP_PKEY *k, const char *kid, json_object *payload);
/* The claims of a valid token: ISS, AUD, SUB, issued 5 s ago, expiring
 * in 600 s.  Add to or change them before signing. */
json_object *jwtmint_claims(const char *iss, const char *aud, const char *sub);
/* A key set file holding K's public JWK as KID, in a directory of its
 * own; jwtmint_jwks_file_remove() removes both and frees the path. */
char *jwtmint_jwks_file(EVP_PKEY *k, const char *kid);
void jwtmint_jwks_file_remove(char *path);
