/* jwks: a JSON Web Key Set (RFC 7517) turned into OpenSSL public keys.
 *
 * Keeps the keys a JWT can be verified with here (RSA for RS256, EC P-256
 * for ES256, "use" absent or "sig") and skips every other key.  Each key
 * also carries its SubjectPublicKeyInfo PEM, the form libjwt 1.x takes.
 * A set is immutable and reference counted: a verification holds a
 * reference while a refresh swaps a new set in.  No I/O. */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <openssl/types.h>
#include <stddef.h>

#define JWKS_MAX_KEYS 64
#define JWKS_MAX_DEPTH 16

enum jwks_kty { JWKS_RSA, JWKS_EC_P256 };

struct jwks_key {
	char *kid; /* NULL when the JWK has none (only in a one-key set) */
	enum jwks_kty kty;
	EVP_PKEY *pkey;
	char *pem; /* "-----BEGIN PUBLIC KEY-----..." */
	size_t pem_len;
};

struct jwks {
	gatomicrefcount refs;
	size_t n_skipped; /* keys left out as unsupported */
	size_t n_keys;
	struct jwks_key keys[];
};

#define JWKS_ERROR jwks_error_quark()
GQuark jwks_error_quark(void);

/* Parses the JWKS document TEXT (LEN bytes) into a set with one
 * reference.  Fails with -EINVAL and ERR (code EINVAL) saying what is
 * wrong and in which key when the document is malformed, a usable-looking
 * key is broken, kids repeat, a key lacks a kid in a set of several, or no
 * key is usable. */
int jwks_parse(const char *text, size_t len, struct jwks **out, GError **err);
struct jwks *jwks_ref(struct jwks *set);
void jwks_unref(struct jwks *set);

/* The key named KID; with KID NULL, the only key of a one-key set that
 * has no kid.  NULL when there is none. */
const struct jwks_key *jwks_lookup(const struct jwks *set, const char *kid);

/* JOSE helpers the jwt module shares. */
/* Decodes base64url (RFC 7515 section 2; trailing '=' tolerated) into a
 * new buffer, NUL-terminated for convenience.  NULL when IN is empty or
 * holds anything else. */
guint8 *jwks_b64url_decode(const char *in, size_t len, size_t *out_len);
/* Parses exactly LEN bytes as one strict UTF-8 JSON object no deeper than
 * DEPTH; NULL otherwise. */
json_object *jwks_json_object(const char *text, size_t len, int depth);
/* An optional string member of O: 0 with *OUT NULL when absent, -EINVAL
 * when it is not a string or hides a NUL (C code would see a shorter
 * string than the one signed). */
int jwks_json_string(json_object *o, const char *name, const char **out);
