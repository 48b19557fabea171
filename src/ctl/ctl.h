/* ctl: rtcsignalctl's command line and commands, kept out of main() so the
 * tests can run each command against canned answers of the admin API. */
#pragma once

#include "ctl/httpc.h"

#include <glib.h>
#include <stdbool.h>

/* Exit statuses, from sysexits.h where one fits. */
enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_FAILED = 1,       /* refused (4xx but 401/403), or an unexpected answer */
	CTL_EXIT_USAGE = 64,
	CTL_EXIT_UNAVAILABLE = 69, /* cannot connect to the admin port */
	CTL_EXIT_TEMPFAIL = 75,    /* 5xx or no answer in time: try again */
	CTL_EXIT_NOPERM = 77,      /* no admin token, or 401/403 */
	CTL_EXIT_CONFIG = 78,
};

enum ctl_command {
	CTL_NONE, /* --help or --version, already printed */
	CTL_STATUS,
	CTL_ROOMS_LIST,
	CTL_ROOMS_CREATE,
	CTL_ROOMS_DELETE,
	CTL_KEYS_LIST,
	CTL_KEYS_CREATE,
	CTL_KEYS_REVOKE,
	CTL_ROOMS_MEMBERS,
	CTL_ROOMS_ADD_MEMBER,
	CTL_ROOMS_REMOVE_MEMBER,
};

struct ctl_args {
	enum ctl_command command;
	char *config_path; /* NULL: the default, which may be missing */
	char *admin;       /* --admin ADDR:PORT */
	char *token_file;
	bool json;
	int timeout_ms;
	/* rooms create, keys create */
	gint64 expires_in; /* -1: not given */
	gint64 max_peers;  /* -1: not given */
	char *name;
	bool open_to_issuer;
	char *room;
	char *account; /* keys create, rooms add-member / remove-member: a JWT subject */
	char *issuer;  /* its [issuer NAME]; NULL: the only one configured */
	char *id; /* rooms delete, keys revoke, rooms members ... */
};

/* An admin API call, as httpc_request makes it. */
typedef int ctl_request_fn(void *data, const struct listen_addr *to,
			   const struct httpc_request *req, struct httpc_reply *out);

struct ctl_target {
	struct listen_addr admin;
	char *token;        /* NULL: none found */
	char *token_source; /* where it came from, for messages */
	char *metrics_token; /* [admin] metrics_token, sent for /metrics */
	char *config_path;  /* the file read, or NULL for built-in defaults */
	ctl_request_fn *request; /* NULL: httpc_request */
	void *data;
};

/* Parses ARGV (left as it is) into A: returns CTL_EXIT_OK, with --help or
 * --version printed to OUT and A->command CTL_NONE, or CTL_EXIT_USAGE with
 * the reason on ERR. */
int ctl_parse(int argc, char **argv, struct ctl_args *a, GString *out, GString *err);
void ctl_args_clear(struct ctl_args *a);

/* The admin address and, for the commands that need it, the token: from
 * the config file, --admin, --token-file and $RTCSIGNALD_ADMIN_TOKEN.
 * Returns CTL_EXIT_OK, or USAGE or CONFIG with the reason on ERR. */
int ctl_target_init(const struct ctl_args *a, struct ctl_target *t, GString *err);
void ctl_target_clear(struct ctl_target *t);

/* Runs A's command against T, the answer on OUT and errors on ERR: an
 * exit status. */
int ctl_execute(const struct ctl_args *a, const struct ctl_target *t, GString *out, GString *err);

/* ctl_parse, ctl_target_init and ctl_execute. */
int ctl_main(int argc, char **argv, GString *out, GString *err);
