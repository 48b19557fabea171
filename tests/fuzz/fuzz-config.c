/* The config file (rtcsignald.conf(5)): config_load on any text, then a
 * reload's comparison (config_carry_over).  Checks: a refusal says why
 * and names the file; a file loaded twice carries over as unchanged (no
 * key reported changed); carrying over to and from the defaults works;
 * config_read_secret on any file content returns 0 with a non-empty
 * secret, or an error.
 *
 * Input: the file's text, optionally followed by a "%%" line and the
 * content of a secret file.  Secret files named by the config are
 * resolved but not read (no_secret_files): a fuzzed path could name any
 * file of the machine. */
#include "fuzz.h"

#include "util/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char *dir, *conf_path, *secret_path;

static void changed(const char *group, const char *key, bool applied, void *data)
{
	unsigned *n = data;
	if (!group || !key)
		fuzz_fail("carry_over reported a change without a group or key");
	(*n)++;
}

static struct config *load(GError **err)
{
	struct config_overrides ov = { .no_secret_files = true, .state_dir = "/nonexistent" };
	struct config *cfg = NULL;
	int rc = config_load(conf_path, &ov, &cfg, err);

	if (rc < 0) {
		if (!*err || !(*err)->message[0])
			fuzz_fail("config_load failed (%d) without a message", rc);
		if (cfg)
			fuzz_fail("config_load failed and gave a config");
		return NULL;
	}
	if (!cfg || *err)
		fuzz_fail("config_load succeeded without a config, or with an error");
	if (cfg->max_queued_bytes < cfg->max_message_bytes)
		fuzz_fail("max_queued_bytes below max_message_bytes accepted");
	if (cfg->max_json_depth > CONFIG_JSON_DEPTH_MAX || cfg->max_json_depth < 2)
		fuzz_fail("max_json_depth %u accepted", cfg->max_json_depth);
	return cfg;
}

/* Known, fix pending: an empty [rooms] store crashes validate(). */
/* Without g_file_set_contents' fsync, which would cost most of the run. */
static bool write_file(const char *path, const char *p, size_t len)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = fwrite(p, 1, len, f) == len;
	return fclose(f) == 0 && ok;
}

FUZZ_TARGET(config)
{
	struct fuzz_rec rec[2];
	g_autoptr(GError) err = NULL;

	if (!dir) {
		fuzz_quiet();
		dir = fuzz_tmpdir("config");
		conf_path = g_build_filename(dir, "rtcsignald.conf", NULL);
		secret_path = g_build_filename(dir, "secret", NULL);
		/* Relative token_file and secret_file names resolve here. */
		g_setenv("CREDENTIALS_DIRECTORY", dir, TRUE);
	}
	size_t n = fuzz_split(data, size, rec, 2);
	if (!write_file(conf_path, rec[0].p, rec[0].len))
		return 0;
	if (n > 1 && write_file(secret_path, rec[1].p, rec[1].len)) {
		g_autoptr(GError) serr = NULL;
		g_autofree char *secret = NULL;
		int rc = config_read_secret(secret_path, &secret, &serr);
		if (rc == 0 && (!secret || !*secret || g_ascii_isspace(*secret) ||
				g_ascii_isspace(secret[strlen(secret) - 1])))
			fuzz_fail("config_read_secret returned an empty or unstripped secret");
		if (rc < 0 && (!serr || secret))
			fuzz_fail("config_read_secret failed (%d) without a message", rc);
	}

	struct config *cfg = load(&err);
	if (cfg) {
		g_autoptr(GError) err2 = NULL;
		struct config *again = load(&err2);
		if (!again)
			fuzz_fail("the same file loads once and fails the next time: %s", err2->message);
		unsigned n_changed = 0;
		config_carry_over(again, cfg, changed, &n_changed);
		if (n_changed)
			fuzz_fail("the same file loaded twice: %u keys reported changed", n_changed);
		struct config *defaults = config_new_defaults();
		config_carry_over(defaults, cfg, changed, &n_changed);
		config_carry_over(cfg, again, changed, &n_changed);
		config_free(defaults);
		config_free(again);
		config_free(cfg);
	}
	unlink(secret_path);
	return 0;
}
