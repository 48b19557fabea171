#include "auth/turn.h"

#include "util/json.h"
#include "util/msgbuf.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

struct turn {
	char *static_json; /* the whole list when no credentials are minted */
	char *stun_json;   /* {"urls":[...]} or NULL */
	char *turn_urls_json; /* [...] or NULL */
	char *secret;
	unsigned ttl;
};

static char *urls_array(char **uris)
{
	GString *s = g_string_new("[");
	for (char **u = uris; *u; u++) {
		if (u != uris)
			g_string_append_c(s, ',');
		json_append_string(s, *u, strlen(*u));
	}
	g_string_append_c(s, ']');
	return g_string_free(s, FALSE);
}

struct turn *turn_new(const struct config *cfg)
{
	struct turn *t = g_new0(struct turn, 1);
	bool has_stun = cfg->stun_uris && cfg->stun_uris[0];
	bool has_turn = cfg->turn_uris && cfg->turn_uris[0] && cfg->turn_secret;

	if (has_stun) {
		g_autofree char *urls = urls_array(cfg->stun_uris);
		t->stun_json = g_strdup_printf("{\"urls\":%s}", urls);
	}
	if (has_turn) {
		t->turn_urls_json = urls_array(cfg->turn_uris);
		t->secret = g_strdup(cfg->turn_secret);
		t->ttl = cfg->turn_credential_ttl;
	} else {
		t->static_json = g_strdup_printf("[%s]", has_stun ? t->stun_json : "");
	}
	return t;
}

void turn_free(struct turn *t)
{
	if (!t)
		return;
	g_free(t->static_json);
	g_free(t->stun_json);
	g_free(t->turn_urls_json);
	if (t->secret)
		explicit_bzero(t->secret, strlen(t->secret));
	g_free(t->secret);
	g_free(t);
}

char *turn_ice_servers(const struct turn *t, const char *peer_id, gint64 now)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;

	if (t->static_json)
		return g_strdup(t->static_json);

	g_autofree char *user = g_strdup_printf("%" G_GINT64_FORMAT ":%s", now + t->ttl, peer_id);
	HMAC(EVP_sha1(), t->secret, (int)strlen(t->secret), (const unsigned char *)user,
	     strlen(user), mac, &mac_len);
	g_autofree char *cred = g_base64_encode(mac, mac_len);

	GString *s = g_string_new("[");
	if (t->stun_json) {
		g_string_append(s, t->stun_json);
		g_string_append_c(s, ',');
	}
	g_string_append_printf(s, "{\"urls\":%s,\"username\":", t->turn_urls_json);
	json_append_string(s, user, strlen(user));
	g_string_append_printf(s, ",\"credential\":\"%s\"}]", cred);
	return g_string_free(s, FALSE);
}
