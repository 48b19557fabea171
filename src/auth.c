#include "auth.h"

#include "log.h"

#include <errno.h>
#include <string.h>

struct issuer {
	struct jwt_issuer *jwt;
	char *jwks_url; /* NULL: from a file */
};

struct auth {
	GPtrArray *issuers;      /* of struct issuer */
	GPtrArray *jwt_issuers;  /* the same, as jwt_verify wants them */
};

static void issuer_free(gpointer p)
{
	struct issuer *is = p;
	jwt_issuer_free(is->jwt);
	g_free(is->jwks_url);
	g_free(is);
}

struct auth *auth_new(void)
{
	struct auth *a = g_new0(struct auth, 1);
	a->issuers = g_ptr_array_new_with_free_func(issuer_free);
	a->jwt_issuers = g_ptr_array_new();
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	g_ptr_array_unref(a->jwt_issuers);
	g_ptr_array_unref(a->issuers);
	g_free(a);
}

static int read_jwks_file(const struct config_issuer *ci, struct jwks **out, GError **err)
{
	g_autofree char *text = NULL;
	gsize len;
	g_autoptr(GError) local = NULL;

	if (!g_file_get_contents(ci->jwks_file, &text, &len, &local) ||
	    jwks_parse(text, len, out, &local) < 0) {
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "[issuer %s] jwks_file %s: %s", ci->name, ci->jwks_file, local->message);
		return -EINVAL;
	}
	return 0;
}

static const struct issuer *find_by_url(const struct auth *a, const char *url)
{
	for (guint i = 0; url && i < a->issuers->len; i++) {
		const struct issuer *is = g_ptr_array_index(a->issuers, i);
		if (g_strcmp0(is->jwks_url, url) == 0)
			return is;
	}
	return NULL;
}

int auth_configure(struct auth *a, const struct config *cfg, GError **err)
{
	g_autoptr(GPtrArray) next = g_ptr_array_new_with_free_func(issuer_free);

	for (guint i = 0; i < cfg->issuers->len; i++) {
		const struct config_issuer *ci = g_ptr_array_index(cfg->issuers, i);
		struct issuer *is = g_new0(struct issuer, 1);
		struct jwks *keys = NULL;

		g_ptr_array_add(next, is);
		is->jwt = jwt_issuer_new(ci->name, ci->issuer, ci->audience);
		is->jwt->token_use = g_strdup(ci->token_use);
		if (ci->algorithms)
			jwt_algorithms_parse(ci->algorithms, &is->jwt->algorithms);
		is->jwks_url = g_strdup(ci->jwks_url);
		if (ci->jwks_file) {
			if (read_jwks_file(ci, &keys, err) < 0)
				return -EINVAL;
			jwt_issuer_set_jwks(is->jwt, keys);
			jwks_unref(keys);
		} else {
			const struct issuer *old = find_by_url(a, ci->jwks_url);
			if (old)
				jwt_issuer_set_jwks(is->jwt, old->jwt->jwks);
		}
	}
	g_ptr_array_unref(a->issuers);
	a->issuers = g_steal_pointer(&next);
	g_ptr_array_set_size(a->jwt_issuers, 0);
	for (guint i = 0; i < a->issuers->len; i++)
		g_ptr_array_add(a->jwt_issuers, ((struct issuer *)g_ptr_array_index(a->issuers, i))->jwt);
	return 0;
}

unsigned auth_n_issuers(const struct auth *a)
{
	return a->issuers->len;
}

int auth_verify(struct auth *a, const char *token, gint64 now, struct jwt_claims *claims,
		enum jwt_error *why, const char **name)
{
	const struct jwt_issuer *matched = NULL;
	int r = jwt_verify(token, (struct jwt_issuer *const *)a->jwt_issuers->pdata,
			   a->jwt_issuers->len, now, claims, why, &matched);
	*name = matched ? matched->name : NULL;
	return r;
}

char *auth_principal(const char *issuer_name, const struct jwt_claims *claims)
{
	return g_strdup_printf("jwt:%s:%s", issuer_name, claims->sub);
}

char *auth_principal_issuer(const char *principal)
{
	if (!principal || !g_str_has_prefix(principal, "jwt:"))
		return NULL;
	const char *name = principal + 4, *end = strchr(name, ':');
	return end ? g_strndup(name, (gsize)(end - name)) : NULL;
}

bool auth_keys_loaded(const struct auth *a)
{
	for (guint i = 0; i < a->issuers->len; i++)
		if (!((struct issuer *)g_ptr_array_index(a->issuers, i))->jwt->jwks)
			return false;
	return true;
}
