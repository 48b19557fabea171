/* Helpers shared by the harnesses (fuzz.h). */
#include "fuzz.h"

#include "auth/auth.h"
#include "util/config.h"
#include "jwtmint.h"
#include "util/log.h"
#include "store/rooms.h"
#include "util/secret.h"

#include <json-c/json.h>
#include <malloc.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("FUZZ FINDING: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

size_t fuzz_split(const uint8_t *data, size_t size, struct fuzz_rec *out, size_t max)
{
	const char *p = (const char *)data, *end = p + size;
	size_t n = 0;

	if (!max)
		return 0;
	while (n + 1 < max) {
		const char *sep = memmem(p, (size_t)(end - p), FUZZ_SEP, strlen(FUZZ_SEP));
		if (!sep)
			break;
		out[n].p = p;
		out[n++].len = (size_t)(sep - p);
		p = sep + strlen(FUZZ_SEP);
	}
	out[n].p = p;
	out[n++].len = (size_t)(end - p);
	return n;
}

/* Outside strings, valid JSON holds only structure, digits, signs,
 * exponents and the letters of true, false and null: an 'N' or an 'I'
 * there is NaN or Infinity. */
bool fuzz_text_nonfinite(const char *s, size_t len)
{
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == 'N' || c == 'I') {
			return true;
		}
	}
	return false;
}

void fuzz_check_output(const char *what, const char *text, size_t len)
{
	json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	bool ok = json_tokener_get_error(tok) == json_tokener_success &&
		  json_tokener_get_parse_end(tok) == len && json_object_is_type(o, json_type_object);
	json_object_put(o);
	json_tokener_free(tok);
	if (!ok)
		fuzz_fail("%s: the server sent what is not one JSON object: %.*s", what,
			  (int)MIN(len, 400), text);
	if (fuzz_text_nonfinite(text, len))
		fuzz_fail("%s: the server sent NaN or Infinity (not JSON): %.*s", what,
			  (int)MIN(len, 400), text);
}

int64_t fuzz_cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

unsigned fuzz_budget_scale(void)
{
	static unsigned scale;
	if (!scale) {
		const char *env = getenv("FUZZ_BUDGET_SCALE");
		/* valgrind preloads its vgpreload_*.so (no valgrind.h needed) */
		const char *pre = getenv("LD_PRELOAD");
		scale = pre && strstr(pre, "vgpreload") ? 50 : 1;
		if (env && atoi(env) > 0)
			scale = (unsigned)atoi(env);
	}
	return scale;
}

void fuzz_quiet(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	log_init();
	log_set_level(LOG_EMERG);
}

/* UTF-8 as lws checks it, U+0000 included (GLib stops at a NUL). */
bool fuzz_utf8(const char *s, size_t len)
{
	if (!len)
		return true;
	const char *end = s + len;
	while (s < end) {
		const char *nul = memchr(s, '\0', (size_t)(end - s));
		size_t n = nul ? (size_t)(nul - s) : (size_t)(end - s);
		if (!g_utf8_validate_len(s, n, NULL))
			return false;
		s += n + (nul != NULL);
	}
	return true;
}

bool fuzz_has_nonfinite(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_double: {
		double d = json_object_get_double(v);
		return d != d || d - d != 0;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (fuzz_has_nonfinite(json_object_array_get_idx(v, i)))
				return true;
		return false;
	case json_type_object: {
		json_object_object_foreach(v, key, val) {
			(void)key;
			if (fuzz_has_nonfinite(val))
				return true;
		}
		return false;
	}
	default:
		return false;
	}
}

/* --- the router's environment --- */

static char *mint(EVP_PKEY *k, const char *kid, const char *sub, gint64 exp)
{
	json_object *p = json_object_new_object();
	json_object_object_add(p, "iss", json_object_new_string("https://issuer.test"));
	json_object_object_add(p, "aud", json_object_new_string("rtc"));
	json_object_object_add(p, "sub", json_object_new_string(sub));
	json_object_object_add(p, "exp", json_object_new_int64(exp));
	json_object_object_add(p, "iat", json_object_new_int64(exp - 3600));
	return jwtmint_token(k, kid, p);
}

static struct config *load_config(const char *dir, const char *text)
{
	g_autofree char *path = g_build_filename(dir, "rtcsignald.conf", NULL);
	g_autoptr(GError) err = NULL;
	struct config *cfg = NULL;

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	if (config_load(path, NULL, &cfg, &err) < 0)
		g_error("fuzz env: %s", err->message);
	unlink(path);
	return cfg;
}

const struct fuzz_env *fuzz_env(void)
{
	static struct fuzz_env env;
	static const char limits[] = "[limits]\n"
				     "max_peers_per_room = 3\n"
				     "max_message_bytes = 65536\n"
				     "max_queued_bytes = 65536\n"
				     "registrations_per_address_per_minute = 30\n"
				     "[rooms]\nmax_ttl = 86400\n"
				     "[turn]\nstun_uris = stun:stun.example.org:3478\n"
				     "turn_uris = turn:turn.example.org:3478\nsecret = s\n";
	g_autoptr(GError) err = NULL;

	if (env.cfg_open)
		return &env;
	fuzz_quiet();
	/* The key set is read once, here: its directory goes at once. */
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-fuzz-env-XXXXXX", NULL);
	g_assert_nonnull(dir);
	EVP_PKEY *k = EVP_EC_gen("P-256");
	g_assert_nonnull(k);
	g_autofree char *jwk = jwtmint_jwk(k, "k1", "");
	g_autofree char *jwks = g_strdup_printf("{\"keys\":[%s]}", jwk);
	g_autofree char *jwks_path = g_build_filename(dir, "jwks.json", NULL);
	g_assert_true(g_file_set_contents(jwks_path, jwks, -1, NULL));

	env.cfg_open = load_config(dir, limits);
	g_autofree char *with_issuer = g_strdup_printf("%s[issuer test]\nissuer = https://issuer.test\n"
						       "audience = rtc\njwks_file = %s\n",
						       limits, jwks_path);
	env.cfg_auth = load_config(dir, with_issuer);
	env.auth_open = auth_new();
	env.auth = auth_new();
	if (auth_configure(env.auth_open, env.cfg_open, &err) < 0 ||
	    auth_configure(env.auth, env.cfg_auth, &err) < 0)
		g_error("fuzz env: %s", err->message);
	unlink(jwks_path);
	rmdir(dir);

	gint64 now = g_get_real_time() / G_USEC_PER_SEC;
	env.jwt_alice = mint(k, "k1", "alice", now + 3600);
	env.jwt_bob = mint(k, "k1", "bob", now + 3600);
	env.jwt_expired = mint(k, "k1", "alice", now - 7200);
	env.jwt_unknown_kid = mint(k, "k9", "alice", now + 3600);
	EVP_PKEY_free(k);
	return &env;
}

static struct store_room *room_record(const char *id, const char *by, gint64 expires_at,
				      unsigned max_peers, bool open)
{
	struct store_room *r = g_new0(struct store_room, 1);
	r->id = g_strdup(id);
	r->created_by = g_strdup(by);
	r->created_at = 1;
	r->expires_at = expires_at;
	r->max_peers = max_peers;
	r->open_to_issuer = open;
	g_assert_cmpint(secret_hash("roomtoken", r->token_hash), ==, 0);
	return r;
}

static struct store_key *key_record(const char *id, gint64 expires_at, gint64 revoked_at)
{
	struct store_key *k = g_new0(struct store_key, 1);
	k->key_id = g_strdup(id);
	k->room_id = g_strdup("proom");
	k->created_at = 1;
	k->expires_at = expires_at;
	k->revoked_at = revoked_at;
	g_assert_cmpint(secret_hash("s3cret", k->key_hash), ==, 0);
	return k;
}

struct rooms *fuzz_env_rooms(struct store *st, bool active_key)
{
	struct rooms *r = rooms_new(st);
	GPtrArray *rooms = g_ptr_array_new(), *keys = g_ptr_array_new();

	g_ptr_array_add(rooms, room_record("proom", "jwt:test:alice", 0, 2, false));
	g_ptr_array_add(rooms, room_record("openroom", "jwt:test:carol", 0, 0, true));
	g_ptr_array_add(rooms, room_record("oldroom", "jwt:test:alice", 2, 0, false));
	if (active_key)
		g_ptr_array_add(keys, key_record("k1", 0, 0));
	g_ptr_array_add(keys, key_record("k2", 0, 2));
	g_ptr_array_add(keys, key_record("k3", 2, 0));
	rooms_load(r, rooms, keys);
	g_ptr_array_unref(rooms);
	g_ptr_array_unref(keys);
	return r;
}

char *fuzz_env_expand(const char *text, size_t len, size_t *out_len)
{
	const struct fuzz_env *env = fuzz_env();
	static const char *const names[] = { "@jwt@", "@jwt2@", "@jwtx@", "@jwtk@" };
	const char *values[] = { env->jwt_alice, env->jwt_bob, env->jwt_expired, env->jwt_unknown_kid };
	GString *s = g_string_sized_new(len + 1);

	for (size_t i = 0; i < len;) {
		size_t j;
		for (j = 0; j < G_N_ELEMENTS(names); j++) {
			size_t n = strlen(names[j]);
			if (len - i >= n && memcmp(text + i, names[j], n) == 0) {
				g_string_append(s, values[j]);
				i += n;
				break;
			}
		}
		if (j == G_N_ELEMENTS(names))
			g_string_append_c(s, text[i++]);
	}
	*out_len = s->len;
	return g_string_free(s, FALSE);
}

static GPtrArray *tmpdirs;

static void remove_tmpdirs(void)
{
	for (guint i = 0; i < tmpdirs->len; i++) {
		const char *dir = g_ptr_array_index(tmpdirs, i);
		GDir *d = g_dir_open(dir, 0, NULL);
		const char *name;
		while (d && (name = g_dir_read_name(d))) {
			g_autofree char *path = g_build_filename(dir, name, NULL);
			unlink(path);
		}
		if (d)
			g_dir_close(d);
		rmdir(dir);
	}
	g_ptr_array_unref(tmpdirs);
}

char *fuzz_tmpdir(const char *name)
{
	g_autofree char *tmpl = g_strdup_printf("rtcsignald-fuzz-%s-XXXXXX", name);
	char *dir = g_dir_make_tmp(tmpl, NULL);

	g_assert_nonnull(dir);
	if (!tmpdirs) {
		tmpdirs = g_ptr_array_new_with_free_func(g_free);
		atexit(remove_tmpdirs);
	}
	g_ptr_array_add(tmpdirs, g_strdup(dir));
	return dir;
}

/* Under AddressSanitizer glibc's counts see nothing: ask ASan. */
#if defined(FUZZ_LIBFUZZER) || defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN_COUNTS 1
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

size_t fuzz_allocated_bytes(void)
{
#ifdef FUZZ_ASAN_COUNTS
	return __sanitizer_get_current_allocated_bytes();
#else
	return mallinfo2().uordblks;
#endif
}
