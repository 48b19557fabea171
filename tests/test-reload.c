/* Issue 18, point 1: "rtcsignald --reload PID" (the unit's ExecReload)
 * gets its verdict from the running daemon, which alone can read the
 * credentials its configuration names; a separate check-config process
 * cannot (systemd's DynamicUser= gives them to the main process only). */
#include "testd.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

struct run {
	int status;
	char *out, *err;
};

/* "rtcsignald --reload PID" with RUNTIME_DIRECTORY=RUNDIR and no
 * credentials directory, as ExecReload runs it. */
static void reload_request(const char *rundir, GPid pid, struct run *r)
{
	g_autofree char *pid_text = g_strdup_printf("%d", (int)pid);
	g_autofree char *env_dir = g_strconcat("RUNTIME_DIRECTORY=", rundir, NULL);
	const char *argv[] = { g_getenv("RTCSIGNALD"), "--reload", pid_text, NULL };
	char *envp[] = { env_dir, "LC_ALL=C", NULL };
	GError *err = NULL;

	g_assert_true(g_spawn_sync(NULL, (char **)argv, envp, G_SPAWN_DEFAULT, NULL, NULL, &r->out,
				   &r->err, &r->status, &err));
	g_assert_no_error(err);
}

static void run_clear(struct run *r)
{
	g_free(r->out);
	g_free(r->err);
}

static const char conf_good[] = "[admin]\ntoken_file = admin-token\n";

static void test_reload_with_credentials(void)
{
	g_autofree char *creds = g_dir_make_tmp("rtcsignald-creds-XXXXXX", NULL);
	g_autofree char *rundir = g_dir_make_tmp("rtcsignald-run-XXXXXX", NULL);
	g_autofree char *token = g_build_filename(creds, "admin-token", NULL);
	g_autofree char *cred_env = g_strconcat("CREDENTIALS_DIRECTORY=", creds, NULL);
	g_autofree char *run_env = g_strconcat("RUNTIME_DIRECTORY=", rundir, NULL);
	g_autofree char *verdict = g_build_filename(rundir, "reload", NULL);
	const char *env[] = { cred_env, run_env, NULL };
	struct run r;

	g_assert_true(g_file_set_contents(token, "0123456789abcdef0123456789abcdef\n", -1, NULL));
	struct testd *d = testd_start_opts(&(struct testd_opts){ .conf = conf_good, .env = env });

	/* The file names a credential only the daemon can read: applied. */
	reload_request(rundir, d->pid, &r);
	g_assert_true(g_spawn_check_wait_status(r.status, NULL));
	g_assert_nonnull(strstr(r.out, "reloaded its configuration"));
	g_assert_true(testd_wait_log(d, "event=reloaded", 0));
	run_clear(&r);

	/* A bad file: exit 78 with the daemon's reason; it runs on. */
	testd_write_conf(d, "[admin]\ntoken_file = admin-token\n[limits]\nmax_peers_per_room = lots\n");
	reload_request(rundir, d->pid, &r);
	g_assert_true(WIFEXITED(r.status));
	g_assert_cmpint(WEXITSTATUS(r.status), ==, 78);
	g_assert_nonnull(strstr(r.err, "max_peers_per_room"));
	g_assert_nonnull(strstr(r.err, "keeps its running configuration"));
	run_clear(&r);
	g_assert_cmpint(testd_log_count(d, "event=reload_failed"), ==, 1);

	/* A credential that has gone: refused the same way, with its name. */
	testd_write_conf(d, conf_good);
	g_assert_cmpint(g_unlink(token), ==, 0);
	reload_request(rundir, d->pid, &r);
	g_assert_cmpint(WEXITSTATUS(r.status), ==, 78);
	g_assert_nonnull(strstr(r.err, "admin-token"));
	run_clear(&r);

	/* Back: applied again; the verdict counts the daemon's reloads. */
	g_assert_true(g_file_set_contents(token, "0123456789abcdef0123456789abcdef\n", -1, NULL));
	reload_request(rundir, d->pid, &r);
	g_assert_cmpint(WEXITSTATUS(r.status), ==, 0);
	run_clear(&r);
	g_autofree char *text = NULL;
	g_assert_true(g_file_get_contents(verdict, &text, NULL, NULL));
	g_assert_nonnull(strstr(text, "generation=4\n"));
	g_assert_nonnull(strstr(text, "result=ok\n"));

	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_unlink(token);
	g_unlink(verdict);
	g_rmdir(creds);
	g_rmdir(rundir);
}

/* A process that is not there: exit 1 at once, not a wait. */
static void test_reload_no_process(void)
{
	g_autofree char *rundir = g_dir_make_tmp("rtcsignald-run-XXXXXX", NULL);
	struct run r;
	GPid gone;
	const char *argv[] = { "true", NULL };

	g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
				    G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
				    &gone, NULL));
	int status;
	g_assert_cmpint(waitpid(gone, &status, 0), ==, gone);
	reload_request(rundir, gone, &r);
	g_assert_cmpint(WEXITSTATUS(r.status), ==, 1);
	g_assert_nonnull(strstr(r.err, "cannot signal process"));
	run_clear(&r);
	g_rmdir(rundir);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/reload/with-credentials", test_reload_with_credentials);
	g_test_add_func("/reload/no-process", test_reload_no_process);
	return g_test_run();
}
