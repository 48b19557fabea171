/* config: the [issuer NAME] checks the daemon makes (auth_load_config)
 * refuse at --check-config and on reload with the same messages as ever. */
#include "config.h"
#include "testd.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

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
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/config/issuer-check-config", test_issuer_check_config);
	g_test_add_func("/config/issuer-reload", test_issuer_reload);
	return g_test_run();
}
