/* config: every key's default, bounds and reload class live in one row of
 * src/util/config.c's table.  Checks that the defaults the daemon runs with are
 * the table's, that the shipped data/rtcsignald.conf written out loads as
 * those defaults, and that the [issuer NAME] checks the daemon makes
 * (auth_load_config) refuse at --check-config and on reload with the same
 * messages as ever.  tests/check-docs.sh compares rtcsignald.conf(5) with
 * the table that "test-config --list-keys" prints. */
#include "util/config.h"
#include "testd.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

/* GROUP|NAME|reload or restart|MIN|MAX|DEFAULT, MIN and MAX empty for a
 * key that is not an integer. */
static int list_keys(void)
{
	struct config_key_info k;

	for (size_t i = 0; config_key_info(i, &k); i++) {
		if (k.bounded)
			printf("%s|%s|%s|%" PRIu64 "|%" PRIu64 "|%s\n", k.group, k.name,
			       k.restart ? "restart" : "reload", k.min, k.max, k.def);
		else
			printf("%s|%s|%s|||%s\n", k.group, k.name, k.restart ? "restart" : "reload",
			       k.def);
	}
	return 0;
}

static const struct config_key_info *find(const char *group, const char *name)
{
	static struct config_key_info k;

	for (size_t i = 0; config_key_info(i, &k); i++)
		if (strcmp(k.group, group) == 0 && strcmp(k.name, name) == 0)
			return &k;
	g_error("no key [%s] %s in the table", group, name);
}

static void count_change(const char *group, const char *key, bool applied, void *data)
{
	g_test_message("[%s] %s differs from its default", group, key);
	(*(unsigned *)data)++;
}

/* How many keys of CFG differ from the built-in defaults. */
static unsigned changes_from_defaults(struct config *cfg)
{
	struct config *defaults = config_new_defaults();
	unsigned n = 0;

	config_carry_over(cfg, defaults, count_change, &n);
	config_free(defaults);
	return n;
}

static struct config *load_text(const char *text)
{
	g_autofree char *path = g_build_filename(g_get_tmp_dir(), "rtcsignald.conf", NULL);
	const struct config_overrides ov = { .state_dir = "/nonexistent", .no_secret_files = true };
	g_autoptr(GError) err = NULL;
	struct config *cfg = NULL;

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	if (config_load(path, &ov, &cfg, &err) < 0)
		g_error("%s", err->message);
	return cfg;
}

/* The table's defaults are well formed, and they are what runs. */
static void test_defaults(void)
{
	struct config_key_info k;
	g_autoptr(GString) every = g_string_new(NULL);
	const char *group = "";
	size_t n = 0;

	for (size_t i = 0; config_key_info(i, &k); i++, n++) {
		g_assert_nonnull(k.def);
		if (k.bounded) {
			guint64 v;
			g_autoptr(GError) err = NULL;
			if (!g_ascii_string_to_unsigned(k.def, 10, k.min, k.max, &v, &err))
				g_error("[%s] %s: default %s: %s", k.group, k.name, k.def, err->message);
		}
		if (g_str_has_prefix(k.group, "issuer"))
			continue;
		/* Each key written out with its default. */
		if (strcmp(k.group, group) != 0)
			g_string_append_printf(every, "[%s]\n", group = k.group);
		g_string_append_printf(every, "%s = %s\n", k.name, k.def);
	}
	g_assert_cmpuint(n, >, 40);

	struct config *cfg = load_text("");
	g_assert_cmpuint(changes_from_defaults(cfg), ==, 0);
	config_free(cfg);
	cfg = load_text(every->str);
	g_assert_cmpuint(changes_from_defaults(cfg), ==, 0);
	config_free(cfg);
}

/* An [issuer NAME] starts from the table's issuer defaults. */
static void test_issuer_defaults(void)
{
	struct config *cfg = load_text("[issuer a]\nissuer = https://a.test\naudience = rtc\n"
				       "jwks_file = /nonexistent\n");
	g_assert_cmpuint(cfg->issuers->len, ==, 1);
	const struct config_issuer *is = g_ptr_array_index(cfg->issuers, 0);
	g_autofree char *refresh = g_strdup_printf("%u", is->jwks_refresh);
	g_autofree char *refresh_min = g_strdup_printf("%u", is->jwks_refresh_min);

	g_assert_cmpstr(refresh, ==, find("issuer NAME", "jwks_refresh")->def);
	g_assert_cmpstr(refresh_min, ==, find("issuer NAME", "jwks_refresh_min")->def);
	g_assert_cmpstr(is->algorithms, ==, find("issuer NAME", "algorithms")->def);
	g_assert_null(is->token_use);
	g_assert_null(is->jwks_url);
	config_free(cfg);
}

/* data/rtcsignald.conf with every key uncommented (but the [issuer NAME]
 * examples) is the built-in defaults. */
static void test_shipped_file(void)
{
	g_autofree char *path = g_test_build_filename(G_TEST_DIST, "..", "data", "rtcsignald.conf", NULL);
	g_autofree char *text = NULL;
	g_autoptr(GString) out = g_string_new(NULL);
	bool example = false;
	unsigned keys = 0;

	g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l; l++) {
		if ((*l)[0] == '[')
			example = false;
		else if (g_str_has_prefix(*l, "#["))
			example = true;
		if (!example && (*l)[0] == '#' && g_ascii_islower((*l)[1]) && strstr(*l, " =")) {
			g_string_append_printf(out, "%s\n", *l + 1);
			keys++;
		} else {
			g_string_append_printf(out, "%s\n", *l);
		}
	}
	g_assert_cmpuint(keys, >, 40);
	struct config *cfg = load_text(out->str);
	g_assert_cmpuint(cfg->issuers->len, ==, 0);
	g_assert_cmpuint(changes_from_defaults(cfg), ==, 0);
	config_free(cfg);
}

/* rtcsignald --check-config on TEXT: its exit status and stderr. */
static int check_config(const char *text, char **err)
{
	g_autofree char *path = g_build_filename(g_get_tmp_dir(), "check.conf", NULL);
	const char *argv[] = { g_getenv("RTCSIGNALD"), "--check-config", "--config", path, NULL };
	int status = -1;

	g_assert_nonnull(argv[0]);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
				   NULL, err, &status, NULL));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const struct {
	const char *text, *message;
} bad_issuers[] = {
	{ "[issuer c]\ncognito_region = eu-west-1\n", "[issuer c] cognito_*: " },
	{ "[issuer ]\nissuer = https://a.test\naudience = rtc\njwks_file = /k\n",
	  "[issuer ] needs a name: [issuer NAME]" },
	{ "[issuer a]\nissuer = https://a.test\njwks_file = /k\n",
	  "[issuer a] needs issuer and audience (or the cognito_* keys)" },
	{ "[issuer a]\nissuer = https://a.test\naudience = rtc\n",
	  "[issuer a] needs exactly one of jwks_url and jwks_file" },
	{ "[issuer a]\nissuer = https://a.test\naudience = rtc\njwks_file = /k\n"
	  "jwks_url = https://a.test/keys\n",
	  "[issuer a] needs exactly one of jwks_url and jwks_file" },
	{ "[issuer a]\nissuer = https://a.test\naudience = rtc\njwks_url = http://a.test/keys\n",
	  "[issuer a] jwks_url: " },
	{ "[issuer a]\nissuer = https://a.test\naudience = rtc\njwks_url = ftp://127.0.0.1/keys\n",
	  "[issuer a] jwks_url: " },
	{ "[issuer a]\nissuer = https://a.test\naudience = rtc\njwks_file = /k\nalgorithms = HS256\n",
	  "[issuer a] algorithms: \"HS256\" is not a list of RS256, ES256" },
	{ "[issuer a]\nissuer = https://a.test\naudience = rtc\njwks_file = /k\n"
	  "[issuer b]\nissuer = https://a.test\naudience = other\njwks_file = /k\n",
	  "[issuer a] and [issuer b] name the same issuer https://a.test" },
};

static void test_issuer_check_config(void)
{
	g_autofree char *path = g_build_filename(g_get_tmp_dir(), "check.conf", NULL);

	for (size_t i = 0; i < G_N_ELEMENTS(bad_issuers); i++) {
		g_autofree char *err = NULL;
		g_autofree char *want = g_strdup_printf("rtcsignald: invalid configuration: %s: %s", path,
							bad_issuers[i].message);
		g_assert_cmpint(check_config(bad_issuers[i].text, &err), ==, 78);
		if (!g_str_has_prefix(err, want))
			g_error("case %zu: expected \"%s\" in: %s", i, want, err);
	}
	/* The Cognito shorthand fills in issuer, audience and jwks_url; an
	 * http:// key set on a loopback address is allowed.  --check-config
	 * fetches nothing. */
	g_autofree char *err = NULL;
	g_assert_cmpint(check_config("[issuer c]\ncognito_region = eu-west-1\n"
				     "cognito_user_pool_id = eu-west-1_AbC123\n"
				     "cognito_app_client_id = 1example23456789\n"
				     "[issuer l]\nissuer = https://l.test\naudience = rtc\n"
				     "jwks_url = http://127.0.0.1:9/keys\n", &err), ==, 0);
}

/* A reload to a bad [issuer NAME] keeps the running configuration. */
static void test_issuer_reload(void)
{
	struct testd *d = testd_start(NULL, NULL);

	for (size_t i = 0; i < G_N_ELEMENTS(bad_issuers); i++) {
		g_autofree char *msg = g_strdup_printf("keeping the running configuration: %s: %s",
						       d->conf, bad_issuers[i].message);
		/* As logfmt writes it. */
		g_autoptr(GRegex) quote = g_regex_new("\"", 0, 0, NULL);
		g_autofree char *want = g_regex_replace_literal(quote, msg, -1, 0, "\\\"", 0, NULL);
		testd_write_conf(d, bad_issuers[i].text);
		testd_signal(d, SIGHUP);
		if (!testd_wait_log_count(d, "reload failed", (unsigned)i + 1, WSC_TIMEOUT_MS))
			g_error("case %zu: no reload failure logged", i);
		g_autofree char *log = testd_log_copy(d);
		if (!strstr(log, want))
			g_error("case %zu: expected \"%s\" in the log", i, want);
	}
	/* Still open mode, still serving. */
	struct wsc *c = testd_register(d, "room", "p1", NULL);
	wsc_free(c);
	g_assert_cmpuint(testd_log_count(d, "configuration reloaded"), ==, 0);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	if (argc == 2 && strcmp(argv[1], "--list-keys") == 0)
		return list_keys();
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/config/defaults", test_defaults);
	g_test_add_func("/config/issuer-defaults", test_issuer_defaults);
	g_test_add_func("/config/shipped-file", test_shipped_file);
	g_test_add_func("/config/issuer-check-config", test_issuer_check_config);
	g_test_add_func("/config/issuer-reload", test_issuer_reload);
	return g_test_run();
}
