/* JWT verification (src/auth/jwt.c) and JWK sets (src/auth/jwks.c).  The first
 * input byte picks the mode:
 *   's' HEADER %% PAYLOAD  both JSON texts (any bytes), signed here with
 *        the issuer's EC key: the header's and the claims' checks run
 *        past the signature.  An accepted token must say alg ES256 and
 *        carry iss, aud (or client_id), exp, nbf, iat and sub as the
 *        rules want;
 *   't' TOKEN            verified as given;
 *   'k' JWKS             jwks_parse; every key found by its kid, and a
 *        token signed with our key never verifies against the set (it
 *        cannot hold our key);
 *   'b' TEXT             jwks_b64url_decode against GLib's base64.
 * Time is fixed (FUZZ_NOW), so a run replays exactly. */
#include "fuzz.h"

#include "auth/jwks.h"
#include "auth/jwt.h"
#include "jwtmint.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <string.h>

#define FUZZ_NOW 1700000000

static EVP_PKEY *signing_key;
static struct jwt_issuer *issuer;

static void setup(void)
{
	GError *err = NULL;
	struct jwks *set;

	fuzz_quiet();
	signing_key = EVP_EC_gen("P-256");
	g_assert_nonnull(signing_key);
	g_autofree char *jwk = jwtmint_jwk(signing_key, "k1", "");
	g_autofree char *jwk_text = g_strdup_printf("{\"keys\":[%s]}", jwk);
	if (jwks_parse(jwk_text, strlen(jwk_text), &set, &err) < 0)
		g_error("%s", err->message);
	issuer = jwt_issuer_new("test", "https://issuer.test", "rtc");
	jwt_issuer_set_jwks(issuer, set);
	jwks_unref(set);
}

static json_object *oracle(const char *text, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	bool ok = json_tokener_get_error(tok) == json_tokener_success &&
		  json_tokener_get_parse_end(tok) == len;
	json_tokener_free(tok);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static bool str_is(json_object *o, const char *name, const char *want)
{
	json_object *v;
	return json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string) &&
	       (size_t)json_object_get_string_len(v) == strlen(want) &&
	       strcmp(json_object_get_string(v), want) == 0;
}

static bool date_ok(json_object *o, const char *name, bool need, int sign)
{
	json_object *v;
	if (!json_object_object_get_ex(o, name, &v))
		return !need;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return false;
	double d = json_object_get_double(v);
	/* exp: later than now - leeway; nbf, iat: not after now + leeway */
	return sign > 0 ? d > FUZZ_NOW - JWT_DEFAULT_LEEWAY : d <= FUZZ_NOW + JWT_DEFAULT_LEEWAY;
}

static void accepted(const char *hdr, size_t hlen, const char *pay, size_t plen,
		     const struct jwt_claims *c)
{
	json_object *h = oracle(hdr, hlen), *p = oracle(pay, plen), *aud;
	if (!h || !p)
		goto out; /* json-c alone cannot judge it */
	if (!str_is(h, "alg", "ES256"))
		fuzz_fail("a token accepted whose header does not say ES256: %.*s", (int)hlen, hdr);
	if (!str_is(p, "iss", "https://issuer.test"))
		fuzz_fail("a token accepted with another iss: %.*s", (int)plen, pay);
	bool aud_ok = false;
	if (json_object_object_get_ex(p, "aud", &aud)) {
		if (json_object_is_type(aud, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(aud); i++) {
				json_object *a = json_object_array_get_idx(aud, i);
				aud_ok |= json_object_is_type(a, json_type_string) &&
					  strcmp(json_object_get_string(a), "rtc") == 0 &&
					  json_object_get_string_len(a) == 3;
			}
		} else {
			aud_ok = str_is(p, "aud", "rtc");
		}
	} else {
		aud_ok = str_is(p, "client_id", "rtc");
	}
	if (!aud_ok)
		fuzz_fail("a token accepted for another audience: %.*s", (int)plen, pay);
	if (!date_ok(p, "exp", true, 1) || !date_ok(p, "nbf", false, -1) || !date_ok(p, "iat", false, -1))
		fuzz_fail("a token accepted outside its time: %.*s", (int)plen, pay);
	if (!c->sub || !*c->sub || !str_is(p, "sub", c->sub))
		fuzz_fail("accepted, with sub %s: %.*s", c->sub, (int)plen, pay);
out:
	json_object_put(h);
	json_object_put(p);
}

static void signed_token(const struct fuzz_rec *hdr, const struct fuzz_rec *pay)
{
	/* jwtmint signs C strings */
	g_autofree char *h = g_strndup(hdr->p, hdr->len), *p = g_strndup(pay->p, pay->len);
	g_autofree char *token = jwtmint_sign(signing_key, EVP_sha256(), h, p);
	struct jwt_claims c;
	enum jwt_error why;
	const struct jwt_issuer *m;

	if (jwt_verify(token, &issuer, 1, FUZZ_NOW, &c, &why, &m) == 0)
		accepted(h, strlen(h), p, strlen(p), &c);
	else if (why == JWT_OK || why >= JWT__COUNT || !jwt_error_name(why) || c.sub)
		fuzz_fail("refused with reason %d", why);
	jwt_claims_clear(&c);
}

static void raw_token(const char *text, size_t len)
{
	g_autofree char *token = g_strndup(text, len);
	struct jwt_claims c;
	enum jwt_error why;

	if (jwt_verify(token, &issuer, 1, FUZZ_NOW, &c, &why, NULL) == 0)
		fuzz_fail("a token not signed here verified: %s", token);
	jwt_claims_clear(&c);
}

static void key_set(const char *text, size_t len)
{
	struct jwks *set = NULL;
	GError *err = NULL;

	if (jwks_parse(text, len, &set, &err) < 0) {
		if (!err || set)
			fuzz_fail("jwks_parse failed without a message");
		g_error_free(err);
		return;
	}
	if (!set->n_keys || set->n_keys > JWKS_MAX_KEYS)
		fuzz_fail("a set of %zu keys", set->n_keys);
	for (size_t i = 0; i < set->n_keys; i++) {
		const struct jwks_key *k = &set->keys[i];
		if (!k->pkey || !k->pem || strlen(k->pem) != k->pem_len)
			fuzz_fail("key %zu incomplete", i);
		if (jwks_lookup(set, k->kid) != k)
			fuzz_fail("key %zu not found by its kid", i);
	}
	/* Our token, against a set that cannot hold our key. */
	struct jwt_issuer *is = jwt_issuer_new("x", "https://issuer.test", "rtc");
	jwt_issuer_set_jwks(is, set);
	const char *kid = set->keys[0].kid;
	json_object *p = json_object_new_object();
	json_object_object_add(p, "iss", json_object_new_string("https://issuer.test"));
	json_object_object_add(p, "aud", json_object_new_string("rtc"));
	json_object_object_add(p, "sub", json_object_new_string("s"));
	json_object_object_add(p, "exp", json_object_new_int64(FUZZ_NOW + 60));
	g_autofree char *token = jwtmint_token_alg(signing_key, set->keys[0].kty == JWKS_RSA ? "RS256" : "ES256",
						   kid ? kid : "none", p);
	struct jwt_claims c;
	enum jwt_error why;
	if (jwt_verify(token, &is, 1, FUZZ_NOW, &c, &why, NULL) == 0)
		fuzz_fail("a token signed with our key verified against a fuzzed key set");
	jwt_claims_clear(&c);
	jwt_issuer_free(is);
	jwks_unref(set);
}

static void b64url(const char *text, size_t len)
{
	size_t n = 0;
	g_autofree guint8 *out = jwks_b64url_decode(text, len, &n);
	if (!out)
		return;
	/* The same bytes through GLib, from standard base64 with padding. */
	GString *std = g_string_new_len(text, (gssize)len);
	while (std->len && std->str[std->len - 1] == '=')
		g_string_truncate(std, std->len - 1);
	for (size_t i = 0; i < std->len; i++)
		if (std->str[i] == '-')
			std->str[i] = '+';
		else if (std->str[i] == '_')
			std->str[i] = '/';
		else if (!g_ascii_isalnum(std->str[i]))
			fuzz_fail("base64url decoded a text holding 0x%02x", (guint8)std->str[i]);
	if (std->len % 4 == 1)
		fuzz_fail("base64url decoded a length of 4k+1");
	while (std->len % 4)
		g_string_append_c(std, '=');
	gsize m;
	g_autofree guint8 *want = g_base64_decode(std->str, &m);
	if (m != n || memcmp(want, out, n) != 0)
		fuzz_fail("base64url decodes %.*s differently from GLib", (int)len, text);
	if (out[n] != '\0')
		fuzz_fail("base64url output not NUL-terminated");
	g_string_free(std, TRUE);
}

FUZZ_TARGET(jwt)
{
	struct fuzz_rec rec[2];

	if (!signing_key)
		setup();
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0]) {
	case 's':
		if (fuzz_split(data + 1, size - 1, rec, 2) == 2)
			signed_token(&rec[0], &rec[1]);
		break;
	case 't':
		raw_token(text, len);
		break;
	case 'k':
		key_set(text, len);
		break;
	case 'b':
		b64url(text, len);
		break;
	default:
		break;
	}
	return 0;
}
