/* Unit tests: JWKS parsing and JWT verification.  Keys are generated here,
 * the JWKS is written from their parameters and tokens are signed with EVP
 * directly, so that the tests can also make malformed and hostile ones. */
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "jwtmint.h"

#include <errno.h>
#include <glib.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"
#define COGNITO_ISS "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
#define COGNITO_CLIENT "1example23456789"
#define NOW ((gint64)1800000000)

/* Made once: RSA key generation is slow, under valgrind even more. */
static EVP_PKEY *rsa_key, *rsa_key2, *ec_key, *ec_key2;

static char *b64url(const void *data, size_t len)
{
	return jwtmint_b64url(data, len);
}

static char *b64url_str(const char *text)
{
	return b64url(text, strlen(text));
}

static char *jwk_of(EVP_PKEY *k, const char *kid, const char *extra)
{
	return jwtmint_jwk(k, kid, extra);
}

static int jwks_try(const char *doc, struct jwks **set, GError **err)
{
	int r = jwks_parse(doc, strlen(doc), set, err);
	g_assert_cmpuint(ERR_peek_error(), ==, 0);
	return r;
}

static struct jwks *jwks_of(const char *doc)
{
	struct jwks *set = NULL;
	GError *err = NULL;
	int r = jwks_try(doc, &set, &err);
	g_assert_no_error(err);
	g_assert_cmpint(r, ==, 0);
	return set;
}

static char *sign_raw(EVP_PKEY *k, const EVP_MD *md, const char *header, const char *payload)
{
	return jwtmint_sign(k, md, header, payload);
}

/* A token of HEADER.PAYLOAD with SIG as its third part, or two parts. */
static char *unsigned_token(const char *header, const char *payload, const char *sig)
{
	g_autofree char *h = b64url_str(header), *p = b64url_str(payload);
	return sig ? g_strdup_printf("%s.%s.%s", h, p, sig) : g_strdup_printf("%s.%s", h, p);
}

/* The claims of a good token for ISS/AUD; tests edit them with with(). */
static json_object *claims(void)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "iss", json_object_new_string(ISS));
	json_object_object_add(o, "aud", json_object_new_string(AUD));
	json_object_object_add(o, "sub", json_object_new_string("user-1"));
	json_object_object_add(o, "exp", json_object_new_int64(NOW + 3600));
	json_object_object_add(o, "iat", json_object_new_int64(NOW - 10));
	json_object_object_add(o, "preferred_username", json_object_new_string("ada"));
	json_object_object_add(o, "email", json_object_new_string("ada@example.org"));
	return o;
}

/* O with KEY set to VAL, or removed when VAL is NULL. */
static json_object *with(json_object *o, const char *key, json_object *val)
{
	if (val)
		json_object_object_add(o, key, val);
	else
		json_object_object_del(o, key);
	return o;
}

static char *mint_alg(EVP_PKEY *k, const char *alg, const char *kid, json_object *payload)
{
	return jwtmint_token_alg(k, alg, kid, payload);
}

static char *mint(EVP_PKEY *k, const char *kid, json_object *payload)
{
	return jwtmint_token(k, kid, payload);
}

/* Shorthands: the "lab" issuer's RSA key r1, and good claims but one. */
static char *rs(json_object *payload)
{
	return mint(rsa_key, "r1", payload);
}

static json_object *claims_with(const char *key, json_object *val)
{
	return with(claims(), key, val);
}

static json_object *claims_int(const char *key, gint64 val)
{
	return with(claims(), key, json_object_new_int64(val));
}

struct fx {
	struct jwt_issuer *is[2];
};

static void fx_setup(struct fx *f, gconstpointer data)
{
	g_autofree char *r1 = jwk_of(rsa_key, "r1", ",\"use\":\"sig\",\"alg\":\"RS256\"");
	g_autofree char *e1 = jwk_of(ec_key, "e1", ",\"use\":\"sig\",\"alg\":\"ES256\"");
	g_autofree char *c1 = jwk_of(rsa_key2, "c1", "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s,%s]}", r1, e1);
	g_autofree char *cdoc = g_strdup_printf("{\"keys\":[%s]}", c1);
	struct jwks *set;

	f->is[0] = jwt_issuer_new("lab", ISS, AUD);
	set = jwks_of(doc);
	jwt_issuer_set_jwks(f->is[0], set);
	jwks_unref(set);

	f->is[1] = jwt_issuer_new("cognito", COGNITO_ISS, COGNITO_CLIENT);
	f->is[1]->token_use = g_strdup("id");
	set = jwks_of(cdoc);
	jwt_issuer_set_jwks(f->is[1], set);
	jwks_unref(set);
}

static void fx_teardown(struct fx *f, gconstpointer data)
{
	jwt_issuer_free(f->is[0]);
	jwt_issuer_free(f->is[1]);
}


/* Verifies TOKEN (freed) at NOW against both issuers and checks the
 * verdict and the issuer reported. */
static void expect_at(struct fx *f, char *token, gint64 now, enum jwt_error want,
		      const struct jwt_issuer *want_matched)
{
	struct jwt_claims c;
	enum jwt_error why = JWT__COUNT;
	const struct jwt_issuer *matched = (const void *)&why;
	int r = jwt_verify(token, f->is, G_N_ELEMENTS(f->is), now, &c, &why, &matched);

	g_assert_cmpstr(jwt_error_name(why), ==, jwt_error_name(want));
	g_assert_cmpint(r, ==, want == JWT_OK ? 0 : -EACCES);
	g_assert_true(matched == want_matched);
	/* Nothing left in OpenSSL's error queue for the TLS code to trip on. */
	g_assert_cmpuint(ERR_peek_error(), ==, 0);
	if (want != JWT_OK)
		g_assert_null(c.sub);
	jwt_claims_clear(&c);
	g_free(token);
}

/* For tokens that name the "lab" issuer. */
static void expect(struct fx *f, char *token, enum jwt_error want)
{
	expect_at(f, token, NOW, want, f->is[0]);
}

/* For tokens refused before their issuer is known. */
static void expect_early(struct fx *f, char *token, enum jwt_error want)
{
	expect_at(f, token, NOW, want, NULL);
}

static void test_valid_rs256(struct fx *f, gconstpointer data)
{
	g_autofree char *t = rs(claims());
	struct jwt_claims c;
	enum jwt_error why;
	const struct jwt_issuer *matched = NULL;

	g_assert_cmpint(jwt_verify(t, f->is, 2, NOW, &c, &why, &matched), ==, 0);
	g_assert_cmpint(why, ==, JWT_OK);
	g_assert_true(matched == f->is[0]);
	g_assert_cmpstr(c.sub, ==, "user-1");
	g_assert_cmpstr(c.iss, ==, ISS);
	g_assert_cmpint(c.exp, ==, NOW + 3600);
	g_assert_cmpstr(c.username, ==, "ada");
	g_assert_cmpstr(c.email, ==, "ada@example.org");
	jwt_claims_clear(&c);
	g_assert_null(c.sub);
	/* MATCHED is optional. */
	g_assert_cmpint(jwt_verify(t, f->is, 2, NOW, &c, &why, NULL), ==, 0);
	jwt_claims_clear(&c);
}

static void test_valid_es256(struct fx *f, gconstpointer data)
{
	json_object *p = claims();

	expect(f, mint(ec_key, "e1", claims()), JWT_OK);
	/* typ "JWT" in any case is fine. */
	expect(f, sign_raw(ec_key, EVP_sha256(), "{\"kid\":\"e1\",\"alg\":\"ES256\",\"typ\":\"jwt\"}",
			   json_object_to_json_string(p)),
	       JWT_OK);
	json_object_put(p);
}

static void test_expired(struct fx *f, gconstpointer data)
{
	expect(f, rs(claims_int("exp", NOW - 61)), JWT_EXPIRED);
	/* now < exp + leeway, so exp + leeway == now is too late. */
	expect(f, rs(claims_int("exp", NOW - 60)), JWT_EXPIRED);
	expect(f, rs(claims_int("exp", 0)), JWT_EXPIRED);
	expect(f, rs(claims_int("exp", -5)), JWT_EXPIRED);
	expect(f, mint(ec_key, "e1", claims_with("exp", json_object_new_double(NOW - 100.5))), JWT_EXPIRED);
	g_assert_cmpstr(jwt_error_reason(JWT_EXPIRED), ==, "Token expired");
}

static void test_leeway(struct fx *f, gconstpointer data)
{
	expect(f, rs(claims_int("exp", NOW - 59)), JWT_OK);
	f->is[0]->leeway = 0;
	expect(f, rs(claims_int("exp", NOW)), JWT_EXPIRED);
	expect(f, rs(claims_int("exp", NOW + 1)), JWT_OK);
}

static void test_not_yet_valid(struct fx *f, gconstpointer data)
{
	expect(f, rs(claims_int("nbf", NOW + 61)), JWT_NOT_YET_VALID);
	expect(f, rs(claims_int("nbf", NOW + 60)), JWT_OK);
	expect(f, rs(claims_with("nbf", json_object_new_string("soon"))), JWT_MALFORMED);
}

static void test_issued_in_future(struct fx *f, gconstpointer data)
{
	expect(f, rs(claims_int("iat", NOW + 61)), JWT_ISSUED_IN_FUTURE);
	expect(f, rs(claims_int("iat", NOW + 60)), JWT_OK);
	expect(f, rs(claims_with("iat", json_object_new_boolean(1))), JWT_MALFORMED);
}

static void test_bad_issuer(struct fx *f, gconstpointer data)
{
	expect_early(f, rs(claims_with("iss", json_object_new_string(ISS "/"))), JWT_BAD_ISSUER);
	expect_early(f, rs(claims_with("iss", NULL)), JWT_BAD_ISSUER);
	expect_early(f, rs(claims_with("iss", json_object_new_int(1))), JWT_BAD_ISSUER);
	/* A NUL cannot cut the comparison short. */
	expect_early(f, rs(claims_with("iss",
						 json_object_new_string_len(ISS "\0x", sizeof ISS + 1))),
		     JWT_BAD_ISSUER);
	/* The right key but another issuer's token: no issuer trusts it. */
	expect_early(f, rs(claims_with("iss", json_object_new_string("https://evil.example"))),
		     JWT_BAD_ISSUER);
	g_assert_cmpstr(jwt_error_reason(JWT_BAD_ISSUER), ==, "Invalid token");
}

static void test_audience(struct fx *f, gconstpointer data)
{
	json_object *list = json_object_new_array();
	json_object_array_add(list, json_object_new_string("other"));
	json_object_array_add(list, json_object_new_int(7));
	json_object_array_add(list, json_object_new_string(AUD));

	expect(f, rs(claims_with("aud", json_object_new_string("other"))), JWT_BAD_AUDIENCE);
	expect(f, rs(claims_with("aud", json_object_get(list))), JWT_OK);
	json_object_array_del_idx(list, 2, 1);
	expect(f, rs(claims_with("aud", list)), JWT_BAD_AUDIENCE);
	expect(f, rs(claims_with("aud", json_object_new_array())), JWT_BAD_AUDIENCE);
	expect(f, rs(claims_with("aud", json_object_new_int(1))), JWT_BAD_AUDIENCE);
	expect(f, rs(claims_with("aud", NULL)), JWT_BAD_AUDIENCE);
	/* client_id stands in only when aud is absent. */
	json_object *client = json_object_new_string(AUD);
	expect(f, rs(with(claims_with("aud", NULL), "client_id", json_object_get(client))), JWT_OK);
	expect(f, rs(with(claims_with("aud", json_object_new_string("other")), "client_id", client)),
	       JWT_BAD_AUDIENCE);
}

static json_object *cognito_claims(const char *token_use)
{
	json_object *o = with(claims_with("iss", json_object_new_string(COGNITO_ISS)), "aud", NULL);
	json_object_object_add(o, "client_id", json_object_new_string(COGNITO_CLIENT));
	json_object_object_add(o, "cognito:username", json_object_new_string("ada-c"));
	if (token_use)
		json_object_object_add(o, "token_use", json_object_new_string(token_use));
	return o;
}

static void test_cognito(struct fx *f, gconstpointer data)
{
	g_autofree char *t = mint(rsa_key2, "c1", cognito_claims("id"));
	struct jwt_claims c;
	enum jwt_error why;
	const struct jwt_issuer *matched = NULL;

	g_assert_cmpint(jwt_verify(t, f->is, 2, NOW, &c, &why, &matched), ==, 0);
	g_assert_true(matched == f->is[1]);
	g_assert_cmpstr(c.iss, ==, COGNITO_ISS);
	g_assert_cmpstr(c.username, ==, "ada-c"); /* before preferred_username */
	jwt_claims_clear(&c);

	expect_at(f, mint(rsa_key2, "c1", cognito_claims("access")), NOW, JWT_BAD_TOKEN_USE, f->is[1]);
	expect_at(f, mint(rsa_key2, "c1", cognito_claims(NULL)), NOW, JWT_BAD_TOKEN_USE, f->is[1]);
	expect_at(f, mint(rsa_key2, "c1", with(cognito_claims("id"), "token_use", json_object_new_int(1))), NOW,
		  JWT_BAD_TOKEN_USE, f->is[1]);
	expect_at(f, mint(rsa_key2, "c1", with(cognito_claims("id"), "client_id", json_object_new_string("x"))),
		  NOW, JWT_BAD_AUDIENCE, f->is[1]);
	/* An issuer's key does not verify another issuer's tokens. */
	expect_at(f, mint(rsa_key, "r1", cognito_claims("id")), NOW, JWT_UNKNOWN_KID, f->is[1]);
	expect_at(f, mint(rsa_key, "c1", cognito_claims("id")), NOW, JWT_BAD_SIGNATURE, f->is[1]);
	/* token_use is not checked where none is configured. */
	expect(f, rs(claims_with("token_use", json_object_new_string("access"))), JWT_OK);
}

static void test_missing_exp(struct fx *f, gconstpointer data)
{
	expect(f, rs(claims_with("exp", NULL)), JWT_MISSING_EXP);
	expect(f, rs(claims_with("exp", json_object_new_string("1900000000"))), JWT_MISSING_EXP);
	expect(f, rs(claims_with("exp", json_object_new_null())), JWT_MISSING_EXP);
	/* NumericDate may have a fraction, and may be far away. */
	expect(f, rs(claims_with("exp", json_object_new_double(NOW + 0.5))), JWT_OK);
	expect(f, rs(claims_with("exp", json_object_new_double(1e300))), JWT_OK);
	expect(f, rs(claims_int("exp", G_MAXINT64)), JWT_OK);
}

static void test_missing_sub(struct fx *f, gconstpointer data)
{
	expect(f, rs(claims_with("sub", NULL)), JWT_MISSING_SUB);
	expect(f, rs(claims_with("sub", json_object_new_string(""))), JWT_MISSING_SUB);
	expect(f, rs(claims_with("sub", json_object_new_int(5))), JWT_MALFORMED);
	/* "admin\0x" must not become "admin".  libjwt's JSON parser refuses
	 * the NUL before our claim check does, so only refusal is certain. */
	g_autofree char *nul = rs(claims_with("sub", json_object_new_string_len("admin\0x", 7)));
	struct jwt_claims c;
	enum jwt_error why;
	g_assert_cmpint(jwt_verify(nul, f->is, 2, NOW, &c, &why, NULL), ==, -EACCES);
	g_assert_null(c.sub);
	/* Display claims are optional: a bad one is left out. */
	g_autofree char *t = rs(claims_with("email", json_object_new_int(1)));
	g_assert_cmpint(jwt_verify(t, f->is, 2, NOW, &c, &why, NULL), ==, 0);
	g_assert_null(c.email);
	jwt_claims_clear(&c);
}

static void test_alg_none(struct fx *f, gconstpointer data)
{
	json_object *p = claims();
	const char *payload = json_object_to_json_string(p);
	g_autofree char *fake = b64url_str("signature");

	expect_early(f, unsigned_token("{\"alg\":\"none\"}", payload, ""), JWT_BAD_ALGORITHM);
	expect_early(f, unsigned_token("{\"alg\":\"none\",\"kid\":\"r1\"}", payload, fake), JWT_BAD_ALGORITHM);
	expect_early(f, unsigned_token("{\"alg\":\"None\",\"kid\":\"r1\"}", payload, ""), JWT_BAD_ALGORITHM);
	expect_early(f, unsigned_token("{\"kid\":\"r1\"}", payload, ""), JWT_BAD_ALGORITHM);
	expect_early(f, unsigned_token("{\"alg\":null,\"kid\":\"r1\"}", payload, ""), JWT_BAD_ALGORITHM);
	/* Two segments are not a JWS at all. */
	expect_early(f, unsigned_token("{\"alg\":\"none\"}", payload, NULL), JWT_MALFORMED);
	/* RS256 with the signature left off never reaches a valid verdict. */
	expect(f, unsigned_token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", payload, ""), JWT_BAD_SIGNATURE);
	json_object_put(p);
}

/* The classic confusion: HS256 keyed with the RSA public key PEM, which
 * libjwt 1.10 would accept if we let the header choose. */
static void test_hs256_with_public_key(struct fx *f, gconstpointer data)
{
	const struct jwks_key *key = jwks_lookup(f->is[0]->jwks, "r1");
	json_object *p = claims();
	g_autofree char *h = b64url_str("{\"alg\":\"HS256\",\"kid\":\"r1\",\"typ\":\"JWT\"}");
	g_autofree char *pl = b64url_str(json_object_to_json_string(p));
	g_autofree char *input = g_strdup_printf("%s.%s", h, pl);
	guint8 mac[EVP_MAX_MD_SIZE];
	size_t mac_len = 0;

	g_assert_nonnull(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->pem, key->pem_len,
				   (guint8 *)input, strlen(input), mac, sizeof mac, &mac_len));
	g_autofree char *sig = b64url(mac, mac_len);
	expect_early(f, g_strdup_printf("%s.%s", input, sig), JWT_BAD_ALGORITHM);
	json_object_put(p);
}

static void test_other_algorithms(struct fx *f, gconstpointer data)
{
	json_object *p = claims();
	const char *payload = json_object_to_json_string(p);

	/* Properly signed, but with algorithms we do not accept. */
	expect_early(f, sign_raw(rsa_key, EVP_sha384(), "{\"alg\":\"RS384\",\"kid\":\"r1\"}", payload),
		     JWT_BAD_ALGORITHM);
	expect_early(f, sign_raw(rsa_key, EVP_sha512(), "{\"alg\":\"RS512\",\"kid\":\"r1\"}", payload),
		     JWT_BAD_ALGORITHM);
	expect_early(f, sign_raw(ec_key, EVP_sha384(), "{\"alg\":\"ES384\",\"kid\":\"e1\"}", payload),
		     JWT_BAD_ALGORITHM);
	expect_early(f, sign_raw(rsa_key, EVP_sha256(), "{\"alg\":\"rs256\",\"kid\":\"r1\"}", payload),
		     JWT_BAD_ALGORITHM);
	expect_early(f, sign_raw(rsa_key, EVP_sha256(), "{\"alg\":\"PS256\",\"kid\":\"r1\"}", payload),
		     JWT_BAD_ALGORITHM);

	/* Accepted in general, but not by this issuer. */
	f->is[0]->algorithms = JWT_ALLOW_RS256;
	expect(f, mint(ec_key, "e1", claims()), JWT_BAD_ALGORITHM);
	expect(f, rs(claims()), JWT_OK);
	json_object_put(p);
}

static void test_key_type(struct fx *f, gconstpointer data)
{
	/* The EC key's kid on an RS256 token, and the other way round. */
	expect(f, mint_alg(rsa_key, "RS256", "e1", claims()), JWT_BAD_ALGORITHM);
	expect(f, mint_alg(ec_key, "ES256", "r1", claims()), JWT_BAD_ALGORITHM);
}

static void test_unknown_kid(struct fx *f, gconstpointer data)
{
	expect(f, mint(rsa_key, "r9", claims()), JWT_UNKNOWN_KID);
	/* Without a kid, only a one-key set without kids will do. */
	expect(f, mint(rsa_key, NULL, claims()), JWT_UNKNOWN_KID);
	/* No JWKS loaded yet: the caller fetches it and retries. */
	jwt_issuer_set_jwks(f->is[0], NULL);
	expect(f, rs(claims()), JWT_UNKNOWN_KID);
}

static void test_single_key_without_kid(struct fx *f, gconstpointer data)
{
	g_autofree char *jwk = jwk_of(ec_key, NULL, "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s]}\n", jwk);
	struct jwks *set = jwks_of(doc);

	g_assert_null(set->keys[0].kid);
	jwt_issuer_set_jwks(f->is[0], set);
	jwks_unref(set);
	expect(f, mint(ec_key, NULL, claims()), JWT_OK);
	expect(f, mint(ec_key, "e1", claims()), JWT_UNKNOWN_KID);
}

/* TOKEN with its part number I replaced by REPLACEMENT. */
static char *replace_part(char *token, int i, const char *replacement)
{
	g_auto(GStrv) parts = g_strsplit(token, ".", -1);
	g_free(token);
	g_free(parts[i]);
	parts[i] = g_strdup(replacement);
	return g_strjoinv(".", parts);
}

static void test_tampered(struct fx *f, gconstpointer data)
{
	json_object *p = with(claims(), "sub", json_object_new_string("admin"));
	g_autofree char *evil = b64url_str(json_object_to_json_string(p));
	g_autofree char *other = mint(rsa_key2, "r1", claims());
	g_auto(GStrv) other_parts = g_strsplit(other, ".", -1);
	char *t;

	expect(f, replace_part(rs(claims()), 1, evil), JWT_BAD_SIGNATURE);
	expect(f, replace_part(mint(ec_key, "e1", claims()), 1, evil), JWT_BAD_SIGNATURE);
	/* Signed by a key that is not the one its kid names. */
	expect(f, g_strdup(other), JWT_BAD_SIGNATURE);
	expect(f, mint(ec_key2, "e1", claims()), JWT_BAD_SIGNATURE);
	/* Another token's signature. */
	expect(f, replace_part(rs(claims()), 2, other_parts[2]), JWT_BAD_SIGNATURE);
	/* One signature character changed. */
	t = mint(ec_key, "e1", claims());
	char *last = t + strlen(t) - 2;
	*last = *last == 'A' ? 'B' : 'A';
	expect(f, t, JWT_BAD_SIGNATURE);
	json_object_put(p);
}

/* Signatures of every short length, to catch libjwt misreading them
 * (run under valgrind: an empty one used to overrun a heap block). */
static void test_short_signatures(struct fx *f, gconstpointer data)
{
	g_autofree char *good = rs(claims());
	static const char *const sigs[] = {
		"", "A", "AA", "AAA", "AAAA", "AAAAA", "_", "-_", "AA_-A", "AAAAAAAA",
	};

	for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++) {
		expect(f, replace_part(g_strdup(good), 2, sigs[i]), JWT_BAD_SIGNATURE);
		expect(f, replace_part(mint(ec_key, "e1", claims()), 2, sigs[i]), JWT_BAD_SIGNATURE);
	}
}

static void test_malformed(struct fx *f, gconstpointer data)
{
	json_object *p = claims();
	const char *payload = json_object_to_json_string(p);
	g_autofree char *good = rs(claims());
	g_autofree char *big = g_strnfill(JWT_MAX_TOKEN_BYTES + 1, 'A');
	struct jwt_claims c;
	enum jwt_error why;

	expect_early(f, g_strdup(""), JWT_MALFORMED);
	expect_early(f, g_strdup("garbage"), JWT_MALFORMED);
	expect_early(f, g_strdup("a.b"), JWT_MALFORMED);
	expect_early(f, g_strdup(".."), JWT_MALFORMED);
	expect_early(f, g_strdup("...."), JWT_MALFORMED);
	expect_early(f, g_strdup_printf("%s.x", good), JWT_MALFORMED);
	expect_early(f, g_strdup_printf("%s==", good), JWT_MALFORMED);
	expect_early(f, g_strdup_printf("%s ", good), JWT_MALFORMED);
	expect_early(f, g_strdup_printf(" %s", good), JWT_MALFORMED);
	expect_early(f, g_strdup(big), JWT_MALFORMED);
	/* Truncated: in the payload, then in the signature. */
	expect_early(f, g_strndup(good, strchr(good, '.') - good + 10), JWT_MALFORMED);
	expect(f, g_strndup(good, strlen(good) - 10), JWT_BAD_SIGNATURE);
	/* Not base64url, not JSON, not an object. */
	expect_early(f, replace_part(g_strdup(good), 0, "e30*"), JWT_MALFORMED);
	expect_early(f, replace_part(g_strdup(good), 0, "e30+"), JWT_MALFORMED);
	expect_early(f, replace_part(g_strdup(good), 0, "ew"), JWT_MALFORMED);
	expect_early(f, unsigned_token("[\"RS256\"]", payload, "AAAA"), JWT_MALFORMED);
	expect_early(f, unsigned_token("{\"alg\":\"RS256\"} x", payload, "AAAA"), JWT_MALFORMED);
	expect_early(f, unsigned_token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "[1]", "AAAA"), JWT_MALFORMED);
	expect_early(f, unsigned_token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "{\"iss\":\"\xff\"}", "AAAA"),
		     JWT_MALFORMED);
	expect_early(f, unsigned_token("{\"alg\":\"RS256\",\"kid\":1}", payload, "AAAA"), JWT_MALFORMED);
	/* Header parameters libjwt 1.10 would refuse or ignore. */
	expect_early(f, sign_raw(rsa_key, EVP_sha256(), "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"at+jwt\"}",
				 payload),
		     JWT_MALFORMED);
	expect_early(f, sign_raw(rsa_key, EVP_sha256(),
				 "{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"exp\"]}", payload),
		     JWT_MALFORMED);
	g_assert_cmpint(jwt_verify(NULL, f->is, 2, NOW, &c, &why, NULL), ==, -EACCES);
	g_assert_cmpint(why, ==, JWT_MALFORMED);
	json_object_put(p);
}

static void test_rotation(struct fx *f, gconstpointer data)
{
	g_autofree char *r1 = jwk_of(rsa_key, "r1", "");
	g_autofree char *r2 = jwk_of(rsa_key2, "r2", "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s,%s]}", r2, r1);
	g_autofree char *t = mint(rsa_key2, "r2", claims());
	struct jwks *old = jwks_ref(f->is[0]->jwks), *set = jwks_of(doc);

	expect(f, g_strdup(t), JWT_UNKNOWN_KID);
	jwt_issuer_set_jwks(f->is[0], set);
	jwks_unref(set);
	expect(f, g_strdup(t), JWT_OK);
	expect(f, rs(claims()), JWT_OK);
	/* Whoever still holds the old set can use it. */
	g_assert_nonnull(jwks_lookup(old, "r1"));
	g_assert_null(jwks_lookup(old, "r2"));
	jwks_unref(old);
}

static void test_no_issuers(void)
{
	g_autofree char *t = rs(claims());
	struct jwt_claims c;
	enum jwt_error why;
	g_assert_cmpint(jwt_verify(t, NULL, 0, NOW, &c, &why, NULL), ==, -EACCES);
	g_assert_cmpint(why, ==, JWT_BAD_ISSUER);
}

static void test_jwk_to_key(void)
{
	g_autofree char *r = jwk_of(rsa_key, "r1", ",\"use\":\"sig\",\"alg\":\"RS256\",\"key_ops\":[\"verify\"]");
	g_autofree char *e = jwk_of(ec_key, "e1", ",\"alg\":\"ES256\"");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s,%s]}", r, e);
	struct jwks *set = jwks_of(doc);

	g_assert_cmpuint(set->n_keys, ==, 2);
	g_assert_cmpuint(set->n_skipped, ==, 0);
	for (size_t i = 0; i < 2; i++) {
		const struct jwks_key *k = &set->keys[i];
		EVP_PKEY *want = i == 0 ? rsa_key : ec_key;
		g_assert_cmpint(k->kty, ==, i == 0 ? JWKS_RSA : JWKS_EC_P256);
		g_assert_cmpint(EVP_PKEY_eq(k->pkey, want), ==, 1);
		g_assert_cmpint(EVP_PKEY_eq(k->pkey, i == 0 ? rsa_key2 : ec_key2), ==, 0);
		/* The PEM libjwt gets is the same key. */
		g_assert_true(g_str_has_prefix(k->pem, "-----BEGIN PUBLIC KEY-----\n"));
		g_assert_cmpuint(strlen(k->pem), ==, k->pem_len);
		BIO *bio = BIO_new_mem_buf(k->pem, (int)k->pem_len);
		EVP_PKEY *back = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		g_assert_cmpint(EVP_PKEY_eq(back, want), ==, 1);
		EVP_PKEY_free(back);
		BIO_free(bio);
	}
	g_assert_true(jwks_lookup(set, "e1") == &set->keys[1]);
	g_assert_null(jwks_lookup(set, "e2"));
	g_assert_null(jwks_lookup(set, NULL));
	g_assert_null(jwks_lookup(NULL, "e1"));
	jwks_unref(set);
}

static void test_jwks_skipped(void)
{
	EVP_PKEY *small = EVP_RSA_gen(1024), *p384 = EVP_EC_gen("P-384");
	g_autofree char *good = jwk_of(rsa_key, "good", "");
	g_autofree char *enc = jwk_of(rsa_key2, "enc", ",\"use\":\"enc\"");
	g_autofree char *rs512 = jwk_of(rsa_key2, "rs512", ",\"alg\":\"RS512\"");
	g_autofree char *ec_rs = jwk_of(ec_key, "ec-rs", ",\"alg\":\"RS256\"");
	g_autofree char *weak = jwk_of(small, "weak", "");
	g_autofree char *x = jwtmint_param(p384, OSSL_PKEY_PARAM_EC_PUB_X, 48);
	g_autofree char *y = jwtmint_param(p384, OSSL_PKEY_PARAM_EC_PUB_Y, 48);
	g_autofree char *doc = g_strdup_printf(
		"{\"keys\":[{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0\"},%s,%s,%s,%s,%s,"
		"{\"kty\":\"EC\",\"kid\":\"p384\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\"},"
		"{\"kty\":\"OKP\",\"kid\":\"ed\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}],\"extra\":1}",
		enc, good, rs512, ec_rs, weak, x, y);
	struct jwks *set = jwks_of(doc);

	g_assert_cmpuint(set->n_keys, ==, 1);
	g_assert_cmpuint(set->n_skipped, ==, 7);
	g_assert_cmpstr(set->keys[0].kid, ==, "good");
	/* A skipped key shares a kid without harm; it is not looked up. */
	g_assert_null(jwks_lookup(set, "enc"));
	jwks_unref(set);
	EVP_PKEY_free(small);
	EVP_PKEY_free(p384);
}

static void test_jwks_errors(void)
{
	g_autofree char *r1 = jwk_of(rsa_key, "k", "");
	g_autofree char *r2 = jwk_of(rsa_key2, "k", "");
	g_autofree char *nokid = jwk_of(rsa_key2, NULL, "");
	g_autofree char *dup = g_strdup_printf("{\"keys\":[%s,%s]}", r1, r2);
	g_autofree char *missing_kid = g_strdup_printf("{\"keys\":[%s,%s]}", r1, nokid);
	g_autofree char *trailing = g_strdup_printf("{\"keys\":[%s]} x", r1);
	static const guint8 zero[32];
	g_autofree char *zeros = b64url(zero, sizeof zero); /* (0, 0) is not on P-256 */
	g_autoptr(GString) many = g_string_new("{\"keys\":[");
	g_autoptr(GString) deep = g_string_new("{\"keys\":[");
	for (int i = 0; i <= JWKS_MAX_KEYS; i++)
		g_string_append_printf(many, "%s{\"kty\":\"oct\"}", i ? "," : "");
	g_string_append(many, "]}");
	for (int i = 0; i < JWKS_MAX_DEPTH; i++)
		g_string_append(deep, "[");
	for (int i = 0; i < JWKS_MAX_DEPTH; i++)
		g_string_append(deep, "]");
	g_string_append(deep, "]}");
	g_autofree char *off_curve = g_strdup_printf(
		"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", zeros, zeros);

	const struct {
		const char *doc, *message;
	} cases[] = {
		{ "", "not a JSON object" },
		{ "[]", "not a JSON object" },
		{ "{\"keys\":[]", "not a JSON object" },
		{ trailing, "not a JSON object" },
		{ deep->str, "not a JSON object" },
		{ "{}", "no \"keys\" array" },
		{ "{\"keys\":{}}", "no \"keys\" array" },
		{ "{\"keys\":[]}", "no usable key (0 skipped" },
		{ "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}", "no usable key (1 skipped" },
		{ many->str, "65 keys, more than 64" },
		{ "{\"keys\":[1]}", "keys[0]: not an object" },
		{ "{\"keys\":[{\"kid\":1,\"kty\":\"RSA\"}]}", "keys[0]: kid must be a string" },
		{ "{\"keys\":[{\"kid\":\"a\\\"b\"}]}", "keys[0] (kid \"a\\\"b\"): kty must be a string" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"use\":7}]}", "keys[0]: use and alg must be strings" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "keys[0]: n and e must be base64url strings" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"a*b\",\"e\":\"AQAB\"}]}", "n and e must be base64url" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AAAA\",\"e\":\"AQAB\"}]}", "not a valid RSA public key" },
		{ "{\"keys\":[{\"kty\":\"EC\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}", "crv must be a string" },
		{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
		  "x and y must be 32-byte base64url coordinates" },
		{ off_curve, "not a point on P-256" },
		{ dup, "kid \"k\" names two keys" },
		{ missing_kid, "every key needs a kid" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct jwks *set = NULL;
		GError *err = NULL;
		g_test_message("case %zu: %s", i, cases[i].message);
		g_assert_cmpint(jwks_try(cases[i].doc, &set, &err), ==, -EINVAL);
		g_assert_null(set);
		g_assert_error(err, JWKS_ERROR, EINVAL);
		if (!strstr(err->message, cases[i].message))
			g_error("case %zu: \"%s\" lacks \"%s\"", i, err->message, cases[i].message);
		g_error_free(err);
	}
}

static void test_b64url(void)
{
	const struct {
		const char *in;
		const char *out; /* NULL: refused */
		size_t len;
	} cases[] = {
		{ "QUJD", "ABC", 3 }, { "QQ", "A", 1 }, { "QQ==", "A", 1 }, { "QUI", "AB", 2 },
		{ "-_-_", "\xfb\xff\xbf", 3 }, { "", NULL, 0 }, { "Q", NULL, 0 }, { "QQ=", NULL, 0 },
		{ "QQ===", NULL, 0 }, { "+/+/", NULL, 0 }, { "QU JD", NULL, 0 }, { "QUJD\n", NULL, 0 },
		{ "=", NULL, 0 }, { "QUJD====", NULL, 0 },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		size_t n = 0;
		g_autofree guint8 *raw = jwks_b64url_decode(cases[i].in, strlen(cases[i].in), &n);
		g_test_message("case %zu: \"%s\"", i, cases[i].in);
		if (!cases[i].out) {
			g_assert_null(raw);
			continue;
		}
		g_assert_nonnull(raw);
		g_assert_cmpmem(raw, n, cases[i].out, cases[i].len);
		g_assert_cmpint(raw[n], ==, 0);
	}
}

static void test_cognito_spec(void)
{
	struct jwt_issuer_spec spec = { 0 };
	const char *why = NULL;

	g_assert_cmpint(jwt_issuer_cognito("eu-west-1", "eu-west-1_AbC123", COGNITO_CLIENT, &spec, &why), ==, 0);
	g_assert_cmpstr(spec.issuer, ==, COGNITO_ISS);
	g_assert_cmpstr(spec.jwks_url, ==, COGNITO_ISS "/.well-known/jwks.json");
	g_assert_cmpstr(spec.audience, ==, COGNITO_CLIENT);
	g_assert_cmpstr(spec.token_use, ==, "id");
	jwt_issuer_spec_clear(&spec);
	g_assert_null(spec.issuer);

	const char *bad[][3] = {
		{ "EU-WEST-1", "EU-WEST-1_abc", "c" },
		{ "evil.example/x?", "evil.example/x?_abc", "c" },
		{ "", "_abc", "c" },
		{ NULL, "eu-west-1_abc", "c" },
		{ "eu-west-1", "us-east-1_abc", "c" },
		{ "eu-west-1", "eu-west-1_", "c" },
		{ "eu-west-1", "eu-west-1_a/../b", "c" },
		{ "eu-west-1", "eu-west-1", "c" },
		{ "eu-west-1", NULL, "c" },
		{ "eu-west-1", "eu-west-1_abc", "" },
		{ "eu-west-1", "eu-west-1_abc", "a b" },
		{ "eu-west-1", "eu-west-1_abc", NULL },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		why = NULL;
		g_assert_cmpint(jwt_issuer_cognito(bad[i][0], bad[i][1], bad[i][2], &spec, &why), ==, -EINVAL);
		g_assert_nonnull(why);
		g_assert_null(spec.issuer);
	}
}

static void test_algorithms_parse(void)
{
	unsigned bits = 0;

	g_assert_cmpint(jwt_algorithms_parse("RS256;ES256", &bits), ==, 0);
	g_assert_cmpuint(bits, ==, JWT_ALLOW_RS256 | JWT_ALLOW_ES256);
	g_assert_cmpint(jwt_algorithms_parse(" ES256 , ", &bits), ==, 0);
	g_assert_cmpuint(bits, ==, JWT_ALLOW_ES256);
	g_assert_cmpint(jwt_algorithms_parse("RS256;HS256", &bits), ==, -EINVAL);
	g_assert_cmpint(jwt_algorithms_parse("none", &bits), ==, -EINVAL);
	g_assert_cmpint(jwt_algorithms_parse(" ; ", &bits), ==, -EINVAL);
	g_assert_cmpuint(bits, ==, JWT_ALLOW_ES256);
}

static void test_error_names(void)
{
	static const char *const names[] = {
		"ok", "malformed", "bad_algorithm", "unknown_kid", "bad_signature", "expired",
		"not_yet_valid", "issued_in_future", "bad_issuer", "bad_audience", "bad_token_use",
		"missing_exp", "missing_sub",
	};
	G_STATIC_ASSERT(G_N_ELEMENTS(names) == JWT__COUNT);
	for (int e = 0; e < JWT__COUNT; e++) {
		g_assert_cmpstr(jwt_error_name(e), ==, names[e]);
		g_assert_cmpstr(jwt_error_reason(e), ==, e == JWT_EXPIRED ? "Token expired" : "Invalid token");
	}
	g_assert_cmpstr(jwt_error_name(JWT__COUNT), ==, "unknown");
}

static void test_issuer_defaults(void)
{
	struct jwt_issuer *is = jwt_issuer_new("lab", ISS, AUD);
	g_assert_cmpuint(is->leeway, ==, 60);
	g_assert_cmpuint(is->algorithms, ==, JWT_ALLOW_RS256 | JWT_ALLOW_ES256);
	g_assert_null(is->token_use);
	g_assert_null(is->jwks);
	jwt_issuer_free(is);
	jwt_issuer_free(NULL);
	jwks_unref(NULL);
}

#define ADD(path, fn) g_test_add(path, struct fx, NULL, fx_setup, fn, fx_teardown)

int main(int argc, char *argv[])
{
	int r;

	g_test_init(&argc, &argv, NULL);
	rsa_key = EVP_RSA_gen(2048);
	rsa_key2 = EVP_RSA_gen(2048);
	ec_key = EVP_EC_gen("P-256");
	ec_key2 = EVP_EC_gen("P-256");
	g_assert_true(rsa_key && rsa_key2 && ec_key && ec_key2);

	ADD("/jwt/valid/rs256", test_valid_rs256);
	ADD("/jwt/valid/es256", test_valid_es256);
	ADD("/jwt/claims/expired", test_expired);
	ADD("/jwt/claims/leeway", test_leeway);
	ADD("/jwt/claims/not-yet-valid", test_not_yet_valid);
	ADD("/jwt/claims/issued-in-future", test_issued_in_future);
	ADD("/jwt/claims/issuer", test_bad_issuer);
	ADD("/jwt/claims/audience", test_audience);
	ADD("/jwt/claims/cognito", test_cognito);
	ADD("/jwt/claims/missing-exp", test_missing_exp);
	ADD("/jwt/claims/missing-sub", test_missing_sub);
	ADD("/jwt/alg/none", test_alg_none);
	ADD("/jwt/alg/hs256-with-public-key", test_hs256_with_public_key);
	ADD("/jwt/alg/others", test_other_algorithms);
	ADD("/jwt/alg/key-type", test_key_type);
	ADD("/jwt/kid/unknown", test_unknown_kid);
	ADD("/jwt/kid/single-key-without-kid", test_single_key_without_kid);
	ADD("/jwt/signature/tampered", test_tampered);
	ADD("/jwt/signature/short", test_short_signatures);
	ADD("/jwt/malformed", test_malformed);
	ADD("/jwt/rotation", test_rotation);
	g_test_add_func("/jwt/no-issuers", test_no_issuers);
	g_test_add_func("/jwt/issuer-defaults", test_issuer_defaults);
	g_test_add_func("/jwt/algorithms-parse", test_algorithms_parse);
	g_test_add_func("/jwt/error-names", test_error_names);
	g_test_add_func("/jwt/cognito-spec", test_cognito_spec);
	g_test_add_func("/jwks/jwk-to-key", test_jwk_to_key);
	g_test_add_func("/jwks/skipped", test_jwks_skipped);
	g_test_add_func("/jwks/errors", test_jwks_errors);
	g_test_add_func("/jwks/b64url", test_b64url);
	r = g_test_run();

	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(rsa_key2);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(ec_key2);
	return r;
}
