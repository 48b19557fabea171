/* rtcsignald: WebRTC signaling and peer-discovery daemon. */
#include "auth/auth.h"
#include "util/config.h"
#include "daemon/daemon.h"
#include "util/i18n.h"
#include "util/log.h"
#include "daemon/reloadstate.h"

#include <curl/curl.h>
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE 64
#define EXIT_CONFIG 78
/* systemd's own reload timeout is 90 s by default. */
#define RELOAD_TIMEOUT_MS 60000

/* Each session holds a descriptor: a limit below max_sessions refuses
 * connections (accept fails) before the configured bound is reached.
 * Both are exported (process_max_fds, rtcsignald_max_sessions); the
 * near-limit alert takes the smaller. */
static void warn_descriptor_limit(const struct config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)cfg->max_sessions)
		log_warning("the descriptor limit (%llu, LimitNOFILE=) is below [limits] max_sessions (%u): "
			    "connections fail before max_sessions, at fewer than %llu sessions; raise "
			    "LimitNOFILE= or lower max_sessions",
			    (unsigned long long)rl.rlim_cur, cfg->max_sessions,
			    (unsigned long long)rl.rlim_cur);
}

/* --reload PID (ExecReload=): the main process judges its own reload,
 * since only it can read the credentials the configuration names. */
static int request_reload(gint64 pid)
{
	struct reloadstate_verdict v;
	g_autofree char *dir = reloadstate_dir();
	int r;

	if (pid <= 1 || pid > G_MAXINT32) {
		fprintf(stderr, "rtcsignald: --reload: not a process id: %" G_GINT64_FORMAT "\n", pid);
		return EXIT_USAGE;
	}
	r = reloadstate_request(dir, (pid_t)pid, RELOAD_TIMEOUT_MS, &v);
	if (r == 0) {
		printf("rtcsignald: process %" G_GINT64_FORMAT " reloaded its configuration%s%s\n",
		       pid, *v.reason ? ": " : "", v.reason);
		return EXIT_SUCCESS;
	}
	if (r == -EBADMSG) {
		fprintf(stderr, _("rtcsignald: invalid configuration: %s\n"), v.reason);
		fprintf(stderr, "rtcsignald: process %" G_GINT64_FORMAT
			" keeps its running configuration\n", pid);
		return EXIT_CONFIG;
	}
	if (r == -ETIMEDOUT)
		fprintf(stderr, "rtcsignald: process %" G_GINT64_FORMAT " gave no verdict in %s/%s "
			"within %d s\n", pid, dir, RELOADSTATE_FILE, RELOAD_TIMEOUT_MS / 1000);
	else
		fprintf(stderr, "rtcsignald: cannot signal process %" G_GINT64_FORMAT ": %s\n", pid,
			strerror(-r));
	return EXIT_FAILURE;
}

int main(int argc, char *argv[])
{
	g_autofree char *config_path = NULL, *listen = NULL, *admin_listen = NULL, *log_level = NULL;
	g_autofree char *state_dir = NULL;
	gboolean check_config = FALSE, version = FALSE;
	gint64 reload_pid = 0;
	g_autoptr(GError) err = NULL;
	struct config *cfg;
	struct daemon *d;

	i18n_init();
	log_init();
	/* TRANSLATORS: the option --config; %s is the default file. */
	g_autofree char *config_help = g_strdup_printf(_("Configuration file (default %s)"),
							 CONFIG_DEFAULT_PATH);
	/* TRANSLATORS: the option --state-dir; %s is the default directory. */
	g_autofree char *state_dir_help = g_strdup_printf(
		_("Directory for persistent rooms (default %s or $STATE_DIRECTORY)"),
		CONFIG_DEFAULT_STATE_DIR);
	const GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, config_help, N_("PATH") },
		{ "listen", 'l', 0, G_OPTION_ARG_STRING, &listen,
		  N_("WebSocket address(es), ADDR:PORT[;ADDR:PORT...]"), N_("ADDR:PORT") },
		{ "admin-listen", 0, 0, G_OPTION_ARG_STRING, &admin_listen,
		  N_("Admin port address (health, metrics), ADDR:PORT; empty for none"), N_("ADDR:PORT") },
		{ "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, state_dir_help, N_("DIR") },
		{ "log-level", 0, 0, G_OPTION_ARG_STRING, &log_level,
		  N_("debug, info, notice, warning or err"), N_("LEVEL") },
		{ "check-config", 't', 0, G_OPTION_ARG_NONE, &check_config,
		  N_("Validate the configuration and exit (0 valid, 78 invalid)"), NULL },
		{ "reload", 0, 0, G_OPTION_ARG_INT64, &reload_pid,
		  N_("Make the running daemon PID reload its configuration and wait for its verdict "
		     "(0 applied, 78 refused)"), N_("PID") },
		{ "version", 'V', 0, G_OPTION_ARG_NONE, &version, N_("Print the version and exit"), NULL },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);

	/* GLib translates the summary, description and entries in this domain. */
	g_option_context_set_translation_domain(ctx, GETTEXT_PACKAGE);
	g_option_context_set_summary(ctx, N_("WebRTC signaling and peer-discovery server."));
	g_option_context_set_description(ctx, N_("Exit status: 0 stopped normally, 1 runtime failure, "
						 "64 usage error, 78 configuration error.\n"
						 "See rtcsignald(8) and rtcsignald.conf(5)."));
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "rtcsignald: %s\n", err->message);
		fputs(_("Try \"rtcsignald --help\" for more information.\n"), stderr);
		return EXIT_USAGE;
	}
	const struct config_overrides ov = { .listen = listen, .admin_listen = admin_listen,
					     .state_dir = state_dir, .log_level = log_level };
	if (reload_pid)
		return request_reload(reload_pid);
	if (version) {
		printf("rtcsignald %s\n", PACKAGE_VERSION);
		return EXIT_SUCCESS;
	}
	if (auth_load_config(config_path, &ov, &cfg, &err) < 0) {
		/* TRANSLATORS: %s is the reason, in English, naming file and key. */
		fprintf(stderr, _("rtcsignald: invalid configuration: %s\n"), err->message);
		return EXIT_CONFIG;
	}
	if (check_config) {
		/* The key sets named by jwks_file are part of the configuration. */
		struct auth *auth = auth_new();
		int r = auth_configure(auth, cfg, &err);
		auth_free(auth);
		if (r < 0) {
			fprintf(stderr, _("rtcsignald: invalid configuration: %s\n"), err->message);
			config_free(cfg);
			return EXIT_CONFIG;
		}
		/* TRANSLATORS: %s is a file name or "built-in defaults". */
		printf(_("%s: configuration is valid\n"), cfg->path ? cfg->path : _("built-in defaults"));
		config_free(cfg);
		return EXIT_SUCCESS;
	}
	/* Once, before any thread (curl's resolver runs some). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("rtcsignald: cannot initialise libcurl\n", stderr);
		config_free(cfg);
		return EXIT_FAILURE;
	}
	warn_descriptor_limit(cfg);
	int status = EXIT_FAILURE;
	if (daemon_new(cfg, config_path, &ov, &d) == 0) {
		status = daemon_run(d);
		daemon_free(d);
	}
	curl_global_cleanup();
	return status;
}
