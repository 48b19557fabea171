#include "jwtmint.h"

#include <glib.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <string.h>
#include <unistd.h>

char *jwtmint_b64url(const void *data, size_t len)
{
	char *s = g_base64_encode(data, len);
	char *eq = strchr(s, '=');

	if (eq)
		*eq = '\0';
	g_strdelimit(s, "+", '-');
	g_strdelimit(s, "/", '_');
	return s;
}


char *jwtmint_param(EVP_PKEY *k, const char *name, int pad)
{
	BIGNUM *bn = NULL;
	g_assert_true(EVP_PKEY_get_bn_param(k, name, &bn));
	int n = pad ? pad : BN_num_bytes(bn);
	g_autofree guint8 *buf = g_malloc(n);
	g_assert_cmpint(BN_bn2binpad(bn, buf, n), ==, n);
	BN_free(bn);
	return jwtmint_b64url(buf, n);
}

char *jwtmint_jwk(EVP_PKEY *k, const char *kid, const char *extra)
{
	g_autofree char *kid_member = kid ? g_strdup_printf("\"kid\":\"%s\",", kid) : g_strdup("");

	if (EVP_PKEY_is_a(k, "RSA")) {
		g_autofree char *n = jwtmint_param(k, OSSL_PKEY_PARAM_RSA_N, 0);
		g_autofree char *e = jwtmint_param(k, OSSL_PKEY_PARAM_RSA_E, 0);
		return g_strdup_printf("{%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid_member, n,
				       e, extra);
	}
	g_autofree char *x = jwtmint_param(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
	g_autofree char *y = jwtmint_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
	return g_strdup_printf("{%s\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s}",
			       kid_member, x, y, extra);
}

char *jwtmint_sign(EVP_PKEY *k, const EVP_MD *md, const char *header, const char *payload)
{
	g_autofree char *h = jwtmint_b64url(header, strlen(header));
	g_autofree char *p = jwtmint_b64url(payload, strlen(payload));
	g_autofree char *input = g_strdup_printf("%s.%s", h, p);
	g_autofree char *sig_text = NULL;
	g_autofree guint8 *sig = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t len = 0;

	g_assert_cmpint(EVP_DigestSignInit(ctx, NULL, md, NULL, k), ==, 1);
	g_assert_cmpint(EVP_DigestSign(ctx, NULL, &len, (guint8 *)input, strlen(input)), ==, 1);
	sig = g_malloc(len);
	g_assert_cmpint(EVP_DigestSign(ctx, sig, &len, (guint8 *)input, strlen(input)), ==, 1);
	EVP_MD_CTX_free(ctx);
	if (EVP_PKEY_is_a(k, "EC")) {
		const guint8 *der = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, (long)len);
		guint8 rs[64];
		g_assert_nonnull(es);
		g_assert_cmpint(BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32), ==, 32);
		g_assert_cmpint(BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32), ==, 32);
		ECDSA_SIG_free(es);
		sig_text = jwtmint_b64url(rs, sizeof rs);
	} else {
		sig_text = jwtmint_b64url(sig, len);
	}
	return g_strdup_printf("%s.%s", input, sig_text);
}

char *jwtmint_token_alg(EVP_PKEY *k, const char *alg, const char *kid, json_object *payload)
{
	g_autofree char *header = kid ? g_strdup_printf("{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, kid)
				      : g_strdup_printf("{\"alg\":\"%s\"}", alg);
	char *t = jwtmint_sign(k, EVP_sha256(), header, json_object_to_json_string(payload));
	json_object_put(payload);
	return t;
}

char *jwtmint_token(EVP_PKEY *k, const char *kid, json_object *payload)
{
	return jwtmint_token_alg(k, EVP_PKEY_is_a(k, "EC") ? "ES256" : "RS256", kid, payload);
}

json_object *jwtmint_claims(const char *iss, const char *aud, const char *sub)
{
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "iss", json_object_new_string(iss));
	json_object_object_add(o, "aud", json_object_new_string(aud));
	json_object_object_add(o, "sub", json_object_new_string(sub));
	json_object_object_add(o, "exp", json_object_new_int64(now + 600));
	json_object_object_add(o, "iat", json_object_new_int64(now - 5));
	return o;
}

char *jwtmint_jwks_file(EVP_PKEY *k, const char *kid)
{
	g_autofree char *jwk = jwtmint_jwk(k, kid, "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s]}", jwk);
	g_autofree char *dir = g_dir_make_tmp("jwks-XXXXXX", NULL);
	char *path = g_build_filename(dir, "jwks.json", NULL);

	g_assert_true(g_file_set_contents(path, doc, -1, NULL));
	return path;
}

void jwtmint_jwks_file_remove(char *path)
{
	g_autofree char *dir = g_path_get_dirname(path);

	unlink(path);
	rmdir(dir);
	g_free(path);
}

char *jwtmint_key_set(EVP_PKEY *a, const char *kid_a, EVP_PKEY *b, const char *kid_b)
{
	g_autofree char *ja = jwtmint_jwk(a, kid_a, "");
	g_autofree char *jb = b ? jwtmint_jwk(b, kid_b, "") : NULL;
	return g_strdup_printf("{\"keys\":[%s%s%s]}", ja, jb ? "," : "", jb ? jb : "");
}
