#include "auth/jwks.h"

#include <errno.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <string.h>

#define P256_COORD 32
#define RSA_MIN_BITS 2048

G_DEFINE_QUARK(rtcsignald-jwks-error-quark, jwks_error)

guint8 *jwks_b64url_decode(const char *in, size_t len, size_t *out_len)
{
	if (len % 4 == 0)
		for (int pad = 0; pad < 2 && len > 0 && in[len - 1] == '='; pad++)
			len--;
	if (len == 0 || len % 4 == 1)
		return NULL;

	/* g_base64_decode skips characters outside its alphabet: check ours
	 * first, then translate to the standard alphabet with padding. */
	g_autofree char *std = g_malloc(len + 3);
	size_t i;
	for (i = 0; i < len; i++) {
		char c = in[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!g_ascii_isalnum(c))
			return NULL;
		std[i] = c;
	}
	while (i % 4)
		std[i++] = '=';
	std[i] = '\0';

	gsize n;
	guint8 *raw = g_base64_decode(std, &n);
	/* Room for a NUL so that callers may treat text as a C string. */
	raw = g_realloc(raw, n + 1);
	raw[n] = '\0';
	*out_len = n;
	return raw;
}

json_object *jwks_json_object(const char *text, size_t len, int depth)
{
	json_tokener *tok;
	json_object *o;
	size_t end;

	if (len > INT_MAX)
		return NULL;
	tok = json_tokener_new_ex(depth);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len); /* NULL unless complete */
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);

	/* Files end with a newline: trailing blanks are fine, nothing else. */
	while (o && end < len &&
	       (text[end] == ' ' || text[end] == '\t' || text[end] == '\r' || text[end] == '\n'))
		end++;
	if (o && (end != len || !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

int jwks_json_string(json_object *o, const char *name, const char **out)
{
	json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return -EINVAL;
	*out = json_object_get_string(v);
	return 0;
}

/* A required base64url member, decoded. */
static guint8 *get_b64(json_object *o, const char *name, size_t *len)
{
	const char *s;

	if (jwks_json_string(o, name, &s) < 0 || !s)
		return NULL;
	return jwks_b64url_decode(s, strlen(s), len);
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY_CTX *check = NULL;
	EVP_PKEY *pkey = NULL;

	if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
	/* fromdata takes the numbers as given: make OpenSSL vet them. */
	if (pkey && (!(check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) ||
		     EVP_PKEY_public_check(check) != 1)) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

/* The build_* functions return 0 with *OUT set, 1 for a key to skip, or
 * -EINVAL with *WHAT saying what is wrong. */
static int build_rsa(json_object *jwk, EVP_PKEY **out, const char **what)
{
	size_t n_len = 0, e_len = 0;
	g_autofree guint8 *n_raw = get_b64(jwk, "n", &n_len);
	g_autofree guint8 *e_raw = get_b64(jwk, "e", &e_len);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *n = NULL, *e = NULL;
	int r = -EINVAL;

	*what = "n and e must be base64url strings";
	if (!n_raw || !e_raw || n_len > INT_MAX || e_len > INT_MAX)
		goto out;
	n = BN_bin2bn(n_raw, (int)n_len, NULL);
	e = BN_bin2bn(e_raw, (int)e_len, NULL);
	*what = "not a valid RSA public key";
	if (!bld || !n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    !(*out = from_params("RSA", bld)))
		goto out;
	r = 0;
	if (EVP_PKEY_get_bits(*out) < RSA_MIN_BITS) {
		EVP_PKEY_free(*out);
		*out = NULL;
		r = 1;
	}
out:
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

static int build_ec(json_object *jwk, EVP_PKEY **out, const char **what)
{
	unsigned char point[1 + 2 * P256_COORD];
	size_t x_len = 0, y_len = 0;
	const char *crv;
	g_autofree guint8 *x = NULL, *y = NULL;
	OSSL_PARAM_BLD *bld;
	int r = -EINVAL;

	if (jwks_json_string(jwk, "crv", &crv) < 0 || !crv) {
		*what = "crv must be a string";
		return -EINVAL;
	}
	if (strcmp(crv, "P-256") != 0)
		return 1;
	x = get_b64(jwk, "x", &x_len);
	y = get_b64(jwk, "y", &y_len);
	if (!x || !y || x_len != P256_COORD || y_len != P256_COORD) {
		*what = "x and y must be 32-byte base64url coordinates";
		return -EINVAL;
	}
	/* The uncompressed SEC1 point: 0x04 || x || y. */
	point[0] = 0x04;
	memcpy(point + 1, x, P256_COORD);
	memcpy(point + 1 + P256_COORD, y, P256_COORD);

	*what = "not a point on P-256";
	bld = OSSL_PARAM_BLD_new();
	if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point) &&
	    (*out = from_params("EC", bld)))
		r = 0;
	OSSL_PARAM_BLD_free(bld);
	return r;
}

static char *to_pem(EVP_PKEY *pkey, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL, *data;
	long n;

	if (bio && PEM_write_bio_PUBKEY(bio, pkey) == 1 && (n = BIO_get_mem_data(bio, &data)) > 0) {
		pem = g_strndup(data, (gsize)n);
		*len = (size_t)n;
	}
	BIO_free(bio);
	return pem;
}

static int key_fail(GError **err, size_t idx, const char *kid, const char *what)
{
	if (kid) {
		g_autofree char *esc = g_strescape(kid, NULL);
		g_set_error(err, JWKS_ERROR, EINVAL, "keys[%zu] (kid \"%.64s\"): %s", idx, esc, what);
	} else {
		g_set_error(err, JWKS_ERROR, EINVAL, "keys[%zu]: %s", idx, what);
	}
	return -EINVAL;
}

/* 0 with KEY filled, 1 for a key we do not use, -EINVAL with ERR set. */
static int parse_key(json_object *jwk, size_t idx, struct jwks_key *key, GError **err)
{
	const char *kty, *kid, *use, *alg, *what = NULL;
	EVP_PKEY *pkey = NULL;
	int r;

	if (!json_object_is_type(jwk, json_type_object))
		return key_fail(err, idx, NULL, "not an object");
	if (jwks_json_string(jwk, "kid", &kid) < 0)
		return key_fail(err, idx, NULL, "kid must be a string");
	if (jwks_json_string(jwk, "kty", &kty) < 0 || !kty)
		return key_fail(err, idx, kid, "kty must be a string");
	if (jwks_json_string(jwk, "use", &use) < 0 || jwks_json_string(jwk, "alg", &alg) < 0)
		return key_fail(err, idx, kid, "use and alg must be strings");
	if (use && strcmp(use, "sig") != 0)
		return 1;

	/* Each key type serves exactly one of the algorithms we accept. */
	if (strcmp(kty, "RSA") == 0) {
		if (alg && strcmp(alg, "RS256") != 0)
			return 1;
		key->kty = JWKS_RSA;
		r = build_rsa(jwk, &pkey, &what);
	} else if (strcmp(kty, "EC") == 0) {
		if (alg && strcmp(alg, "ES256") != 0)
			return 1;
		key->kty = JWKS_EC_P256;
		r = build_ec(jwk, &pkey, &what);
	} else {
		return 1;
	}
	if (r == 0 && !(key->pem = to_pem(pkey, &key->pem_len))) {
		what = "cannot write it as PEM";
		r = -EINVAL;
	}
	if (r != 0) {
		/* Leave no stale error behind for the TLS code on this thread. */
		ERR_clear_error();
		EVP_PKEY_free(pkey);
		return r < 0 ? key_fail(err, idx, kid, what) : r;
	}
	key->pkey = pkey;
	key->kid = g_strdup(kid);
	return 0;
}

static int check_kids(const struct jwks *set, GError **err)
{
	for (size_t i = 0; i < set->n_keys; i++) {
		const char *kid = set->keys[i].kid;
		if (!kid) {
			if (set->n_keys == 1)
				return 0;
			g_set_error(err, JWKS_ERROR, EINVAL,
				    "every key needs a kid when the set has several usable keys");
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(kid, set->keys[j].kid) == 0) {
				g_autofree char *esc = g_strescape(kid, NULL);
				g_set_error(err, JWKS_ERROR, EINVAL, "kid \"%.64s\" names two keys", esc);
				return -EINVAL;
			}
	}
	return 0;
}

int jwks_parse(const char *text, size_t len, struct jwks **out, GError **err)
{
	json_object *root = jwks_json_object(text, len, JWKS_MAX_DEPTH), *keys;
	struct jwks *set = NULL;
	size_t n;
	int r = -EINVAL;

	if (!root) {
		g_set_error(err, JWKS_ERROR, EINVAL, "not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(root, "keys", &keys) ||
	    !json_object_is_type(keys, json_type_array)) {
		g_set_error(err, JWKS_ERROR, EINVAL, "no \"keys\" array");
		goto out;
	}
	n = json_object_array_length(keys);
	if (n > JWKS_MAX_KEYS) {
		g_set_error(err, JWKS_ERROR, EINVAL, "%zu keys, more than %d", n, JWKS_MAX_KEYS);
		goto out;
	}

	set = g_malloc0(sizeof *set + n * sizeof(struct jwks_key));
	g_atomic_ref_count_init(&set->refs);
	for (size_t i = 0; i < n; i++) {
		r = parse_key(json_object_array_get_idx(keys, i), i, &set->keys[set->n_keys], err);
		if (r < 0)
			goto out;
		if (r == 0)
			set->n_keys++;
		else
			set->n_skipped++;
	}
	r = -EINVAL;
	if (set->n_keys == 0) {
		g_set_error(err, JWKS_ERROR, EINVAL, "no usable key (%zu skipped: RS256 and ES256 only)",
			    set->n_skipped);
		goto out;
	}
	r = check_kids(set, err);
	if (r < 0)
		goto out;
	*out = g_steal_pointer(&set);
out:
	jwks_unref(set);
	json_object_put(root);
	return r;
}

struct jwks *jwks_ref(struct jwks *set)
{
	g_atomic_ref_count_inc(&set->refs);
	return set;
}

void jwks_unref(struct jwks *set)
{
	if (!set || !g_atomic_ref_count_dec(&set->refs))
		return;
	for (size_t i = 0; i < set->n_keys; i++) {
		g_free(set->keys[i].kid);
		EVP_PKEY_free(set->keys[i].pkey);
		g_free(set->keys[i].pem);
	}
	g_free(set);
}

const struct jwks_key *jwks_lookup(const struct jwks *set, const char *kid)
{
	if (!set)
		return NULL;
	if (!kid)
		return set->n_keys == 1 && !set->keys[0].kid ? &set->keys[0] : NULL;
	for (size_t i = 0; i < set->n_keys; i++)
		if (set->keys[i].kid && strcmp(set->keys[i].kid, kid) == 0)
			return &set->keys[i];
	return NULL;
}
