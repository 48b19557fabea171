#include "auth/jwt.h"

/* libjwt's header: src/ is on the quote path only, so this is not ours. */
#include <jwt.h>

#include <errno.h>
#include <math.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <string.h>

#define JWT_MAX_DEPTH 32
#define B64URL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static const char *const error_names[JWT__COUNT] = {
	[JWT_OK] = "ok",
	[JWT_MALFORMED] = "malformed",
	[JWT_BAD_ALGORITHM] = "bad_algorithm",
	[JWT_UNKNOWN_KID] = "unknown_kid",
	[JWT_BAD_SIGNATURE] = "bad_signature",
	[JWT_EXPIRED] = "expired",
	[JWT_NOT_YET_VALID] = "not_yet_valid",
	[JWT_ISSUED_IN_FUTURE] = "issued_in_future",
	[JWT_BAD_ISSUER] = "bad_issuer",
	[JWT_BAD_AUDIENCE] = "bad_audience",
	[JWT_BAD_TOKEN_USE] = "bad_token_use",
	[JWT_MISSING_EXP] = "missing_exp",
	[JWT_MISSING_SUB] = "missing_sub",
};

const char *jwt_error_name(enum jwt_error e)
{
	return (unsigned)e < JWT__COUNT ? error_names[e] : "unknown";
}

const char *jwt_error_reason(enum jwt_error e)
{
	return e == JWT_EXPIRED ? "Token expired" : "Invalid token";
}

/* The algorithms we accept, each tied to the one key type it may use. */
struct alg {
	const char *name;
	unsigned bit;
	enum jwks_kty kty;
};

static const struct alg algs[] = {
	{ "RS256", JWT_ALLOW_RS256, JWKS_RSA },
	{ "ES256", JWT_ALLOW_ES256, JWKS_EC_P256 },
};

static const struct alg *find_alg(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(algs); i++)
		if (strcmp(algs[i].name, name) == 0)
			return &algs[i];
	return NULL;
}

int jwt_algorithms_parse(const char *text, unsigned *out)
{
	g_auto(GStrv) parts = g_strsplit_set(text, ";,", -1);
	unsigned bits = 0;

	for (char **p = parts; *p; p++) {
		const struct alg *a;
		g_strstrip(*p);
		if (!**p)
			continue;
		if (!(a = find_alg(*p)))
			return -EINVAL;
		bits |= a->bit;
	}
	if (!bits)
		return -EINVAL;
	*out = bits;
	return 0;
}

struct jwt_issuer *jwt_issuer_new(const char *name, const char *issuer, const char *audience)
{
	struct jwt_issuer *is = g_new0(struct jwt_issuer, 1);

	is->name = g_strdup(name);
	is->issuer = g_strdup(issuer);
	is->audience = g_strdup(audience);
	is->algorithms = JWT_ALLOW_RS256 | JWT_ALLOW_ES256;
	is->leeway = JWT_DEFAULT_LEEWAY;
	return is;
}

void jwt_issuer_free(struct jwt_issuer *is)
{
	if (!is)
		return;
	g_free(is->name);
	g_free(is->issuer);
	g_free(is->audience);
	g_free(is->token_use);
	jwks_unref(is->jwks);
	g_free(is);
}

void jwt_issuer_set_jwks(struct jwt_issuer *is, struct jwks *set)
{
	struct jwks *old = is->jwks;

	is->jwks = set ? jwks_ref(set) : NULL;
	jwks_unref(old);
}

#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define DIGITS "0123456789"

static bool made_of(const char *s, const char *set)
{
	size_t n = s ? strlen(s) : 0;
	return n > 0 && n <= 128 && strspn(s, set) == n;
}

int jwt_issuer_cognito(const char *region, const char *user_pool_id, const char *app_client_id,
		       struct jwt_issuer_spec *out, const char **why)
{
	size_t n;

	/* Region and pool go into URLs we fetch keys from: nothing but the
	 * characters AWS uses may get in. */
	if (!made_of(region, LOWER DIGITS "-")) {
		*why = "cognito_region must be a region name such as eu-west-1";
		return -EINVAL;
	}
	n = strlen(region);
	if (!user_pool_id || strncmp(user_pool_id, region, n) != 0 || user_pool_id[n] != '_' ||
	    !made_of(user_pool_id + n + 1, LOWER UPPER DIGITS)) {
		*why = "cognito_user_pool_id must be REGION_ followed by letters and digits";
		return -EINVAL;
	}
	if (!made_of(app_client_id, LOWER UPPER DIGITS "_+")) {
		*why = "cognito_app_client_id must be letters and digits";
		return -EINVAL;
	}
	out->issuer = g_strdup_printf("https://cognito-idp.%s.amazonaws.com/%s", region, user_pool_id);
	out->jwks_url = g_strconcat(out->issuer, "/.well-known/jwks.json", NULL);
	out->audience = g_strdup(app_client_id);
	out->token_use = g_strdup("id");
	return 0;
}

void jwt_issuer_spec_clear(struct jwt_issuer_spec *spec)
{
	g_clear_pointer(&spec->issuer, g_free);
	g_clear_pointer(&spec->jwks_url, g_free);
	g_clear_pointer(&spec->audience, g_free);
	g_clear_pointer(&spec->token_use, g_free);
}

void jwt_claims_clear(struct jwt_claims *c)
{
	g_clear_pointer(&c->sub, g_free);
	g_clear_pointer(&c->iss, g_free);
	g_clear_pointer(&c->username, g_free);
	g_clear_pointer(&c->email, g_free);
	c->exp = 0;
}

/* The libjwt part, kept to this function for the move to libjwt 3.  It
 * checks the signature of TOKEN with KEY; then, since 1.x verifies with
 * whatever alg the header names, that the alg it used is the one pinned. */
static enum jwt_error check_signature(const char *token, const struct jwks_key *key,
				      const struct alg *alg)
{
	jwt_t *jwt = NULL;
	const char *used;
	enum jwt_error e = JWT_BAD_SIGNATURE;

	/* libjwt 1.10 writes and reads a byte past a malloc(0) when it decodes
	 * an empty signature part: never hand it one. */
	if (strrchr(token, '.')[1] == '\0')
		return JWT_BAD_SIGNATURE;
	if (jwt_decode(&jwt, token, (const unsigned char *)key->pem, (int)key->pem_len) == 0) {
		used = jwt_alg_str(jwt_get_alg(jwt));
		e = used && strcmp(used, alg->name) == 0 ? JWT_OK : JWT_BAD_ALGORITHM;
	}
	jwt_free(jwt);
	/* A failed verify leaves OpenSSL errors queued on this thread, where
	 * the TLS code would take them for its own. */
	ERR_clear_error();
	return e;
}

static json_object *decode_segment(const char *seg, size_t len)
{
	size_t n;
	g_autofree guint8 *raw = jwks_b64url_decode(seg, len, &n);

	return raw ? jwks_json_object((const char *)raw, n, JWT_MAX_DEPTH) : NULL;
}

/* Splits TOKEN into header.payload.signature and decodes the first two. */
static enum jwt_error decode(const char *token, json_object **header, json_object **payload)
{
	size_t len = strnlen(token, JWT_MAX_TOKEN_BYTES + 1);
	const char *dot1, *dot2, *sig;

	if (len > JWT_MAX_TOKEN_BYTES)
		return JWT_MALFORMED;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2)
		return JWT_MALFORMED;
	/* libjwt's base64 decoder skips junk: keep it away from the signature. */
	sig = dot2 + 1;
	if (strspn(sig, B64URL_CHARS) != len - (size_t)(sig - token))
		return JWT_MALFORMED;
	*header = decode_segment(token, (size_t)(dot1 - token));
	*payload = decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	return *header && *payload ? JWT_OK : JWT_MALFORMED;
}

static enum jwt_error check_header(json_object *h, const struct alg **alg, const char **kid)
{
	const char *name, *typ;

	if (jwks_json_string(h, "alg", &name) < 0 || !name || !(*alg = find_alg(name)))
		return JWT_BAD_ALGORITHM;
	if (jwks_json_string(h, "kid", kid) < 0 || jwks_json_string(h, "typ", &typ) < 0)
		return JWT_MALFORMED;
	/* libjwt 1.10 refuses any other typ (at+jwt...): say so, rather than
	 * "bad signature". */
	if (typ && g_ascii_strcasecmp(typ, "JWT") != 0)
		return JWT_MALFORMED;
	/* Extensions we do not know must not be ignored (RFC 7515 4.1.11). */
	if (json_object_object_get_ex(h, "crit", NULL))
		return JWT_MALFORMED;
	return JWT_OK;
}

/* V is a string equal to S, embedded NULs included. */
static bool str_eq(json_object *v, const char *s)
{
	size_t n = strlen(s);
	return json_object_is_type(v, json_type_string) &&
	       (size_t)json_object_get_string_len(v) == n && memcmp(json_object_get_string(v), s, n) == 0;
}

/* A NumericDate: 1 with *OUT set, 0 when absent, -EINVAL when not a number. */
static int get_date(json_object *o, const char *name, gint64 *out)
{
	json_object *v;
	double d;

	if (!json_object_object_get_ex(o, name, &v))
		return 0;
	switch (json_object_get_type(v)) {
	case json_type_int:
		*out = json_object_get_int64(v); /* saturates */
		return 1;
	case json_type_double:
		d = json_object_get_double(v);
		if (!isfinite(d))
			return -EINVAL;
		*out = d >= 9.2e18 ? G_MAXINT64 : d <= -9.2e18 ? G_MININT64 : (gint64)d;
		return 1;
	default:
		return -EINVAL;
	}
}

static enum jwt_error check_audience(json_object *p, const char *audience)
{
	json_object *aud, *client_id;

	if (json_object_object_get_ex(p, "aud", &aud)) {
		if (json_object_is_type(aud, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(aud); i++)
				if (str_eq(json_object_array_get_idx(aud, i), audience))
					return JWT_OK;
			return JWT_BAD_AUDIENCE;
		}
		return str_eq(aud, audience) ? JWT_OK : JWT_BAD_AUDIENCE;
	}
	/* Cognito access tokens name their app client here instead. */
	if (json_object_object_get_ex(p, "client_id", &client_id) && str_eq(client_id, audience))
		return JWT_OK;
	return JWT_BAD_AUDIENCE;
}

static enum jwt_error check_claims(json_object *p, const struct jwt_issuer *is, gint64 now)
{
	gint64 exp = 0, nbf = 0, iat = 0, leeway = is->leeway;
	json_object *use;
	enum jwt_error e;
	int r;

	if (get_date(p, "exp", &exp) <= 0)
		return JWT_MISSING_EXP;
	/* now < exp + leeway, written so that no sum can overflow. */
	if (now - leeway >= exp)
		return JWT_EXPIRED;
	if ((r = get_date(p, "nbf", &nbf)) < 0)
		return JWT_MALFORMED;
	if (r > 0 && now + leeway < nbf)
		return JWT_NOT_YET_VALID;
	if ((r = get_date(p, "iat", &iat)) < 0)
		return JWT_MALFORMED;
	if (r > 0 && iat > now + leeway)
		return JWT_ISSUED_IN_FUTURE;
	if ((e = check_audience(p, is->audience)) != JWT_OK)
		return e;
	if (is->token_use &&
	    (!json_object_object_get_ex(p, "token_use", &use) || !str_eq(use, is->token_use)))
		return JWT_BAD_TOKEN_USE;
	return JWT_OK;
}

/* An optional display claim: NULL unless a clean string. */
static char *display_claim(json_object *p, const char *name)
{
	const char *s;
	return jwks_json_string(p, name, &s) == 0 ? g_strdup(s) : NULL;
}

static enum jwt_error fill_claims(json_object *p, const char *iss, gint64 exp,
				  struct jwt_claims *out)
{
	const char *sub;

	if (jwks_json_string(p, "sub", &sub) < 0)
		return JWT_MALFORMED;
	if (!sub || !*sub)
		return JWT_MISSING_SUB;
	out->sub = g_strdup(sub);
	out->iss = g_strdup(iss);
	out->exp = exp;
	out->username = display_claim(p, "cognito:username");
	if (!out->username)
		out->username = display_claim(p, "preferred_username");
	out->email = display_claim(p, "email");
	return JWT_OK;
}

static enum jwt_error verify(const char *token, struct jwt_issuer *const *issuers,
			     size_t n_issuers, gint64 now, struct jwt_claims *out,
			     const struct jwt_issuer **matched)
{
	json_object *header = NULL, *payload = NULL, *iss;
	const struct alg *alg = NULL;
	const struct jwt_issuer *is = NULL;
	const struct jwks_key *key;
	const char *kid = NULL;
	struct jwks *set = NULL;
	gint64 exp = 0;
	enum jwt_error e;

	if ((e = decode(token, &header, &payload)) != JWT_OK)
		goto out;
	/* Any alg but RS256 and ES256 stops here, before a key is touched. */
	if ((e = check_header(header, &alg, &kid)) != JWT_OK)
		goto out;

	e = JWT_BAD_ISSUER;
	if (!json_object_object_get_ex(payload, "iss", &iss))
		goto out;
	for (size_t i = 0; i < n_issuers && !is; i++)
		if (str_eq(iss, issuers[i]->issuer))
			is = issuers[i];
	if (!is)
		goto out;
	*matched = is;

	e = JWT_BAD_ALGORITHM;
	if (!(is->algorithms & alg->bit))
		goto out;
	/* Hold the set: a refresh may swap the issuer's while we use it. */
	set = is->jwks ? jwks_ref(is->jwks) : NULL;
	e = JWT_UNKNOWN_KID;
	if (!(key = jwks_lookup(set, kid)))
		goto out;
	e = JWT_BAD_ALGORITHM;
	if (key->kty != alg->kty)
		goto out;
	if ((e = check_signature(token, key, alg)) != JWT_OK)
		goto out;

	if ((e = check_claims(payload, is, now)) != JWT_OK)
		goto out;
	get_date(payload, "exp", &exp);
	e = fill_claims(payload, is->issuer, exp, out);
out:
	jwks_unref(set);
	json_object_put(header);
	json_object_put(payload);
	return e;
}

int jwt_verify(const char *token, struct jwt_issuer *const *issuers, size_t n_issuers, gint64 now,
	       struct jwt_claims *out, enum jwt_error *why, const struct jwt_issuer **matched)
{
	const struct jwt_issuer *is = NULL;

	memset(out, 0, sizeof *out);
	*why = token ? verify(token, issuers, n_issuers, now, out, &is) : JWT_MALFORMED;
	if (matched)
		*matched = is;
	return *why == JWT_OK ? 0 : -EACCES;
}
