/* ctl: rtcsignalctl.  One table of commands drives parsing; every command
 * is one or a few admin API calls whose answers are checked for shape
 * before anything is printed. */
#include "ctl/ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib/gi18n.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>

#define PROG "rtcsignalctl"
#define TOKEN_ENV "RTCSIGNALD_ADMIN_TOKEN"
#define DEFAULT_TIMEOUT_S 10
#define MAX_TIMEOUT_S 3600
#define MAX_EXPIRES_IN G_MAXINT32

/* Options that only some commands take. */
enum {
	OPT_EXPIRES_IN = 1 << 0,
	OPT_MAX_PEERS = 1 << 1,
	OPT_NAME = 1 << 2,
	OPT_OPEN = 1 << 3,
	OPT_ROOM = 1 << 4,
	OPT_ACCOUNT = 1 << 5,
	OPT_ISSUER = 1 << 6,
};

static const struct command_spec {
	const char *noun, *verb; /* verb NULL: a one-word command */
	enum ctl_command command;
	unsigned options;
	const char *operand; /* the one positional argument as --help names it, or NULL */
	bool auth;           /* needs the admin token */
} commands[] = {
	{ "status", NULL, CTL_STATUS, 0, NULL, false },
	{ "rooms", "list", CTL_ROOMS_LIST, 0, NULL, true },
	{ "rooms", "create", CTL_ROOMS_CREATE, OPT_EXPIRES_IN | OPT_MAX_PEERS | OPT_NAME | OPT_OPEN,
	  NULL, true },
	{ "rooms", "delete", CTL_ROOMS_DELETE, 0, N_("ROOM_ID"), true },
	{ "keys", "list", CTL_KEYS_LIST, 0, NULL, true },
	{ "keys", "create", CTL_KEYS_CREATE,
	  OPT_ROOM | OPT_ACCOUNT | OPT_ISSUER | OPT_NAME | OPT_EXPIRES_IN, NULL, true },
	{ "keys", "revoke", CTL_KEYS_REVOKE, 0, N_("KEY_ID"), true },
	{ "rooms", "members", CTL_ROOMS_MEMBERS, 0, N_("ROOM_ID"), true },
	{ "rooms", "add-member", CTL_ROOMS_ADD_MEMBER, OPT_ACCOUNT | OPT_ISSUER, N_("ROOM_ID"), true },
	{ "rooms", "remove-member", CTL_ROOMS_REMOVE_MEMBER, OPT_ACCOUNT | OPT_ISSUER, N_("ROOM_ID"),
	  true },
};

static const char *const option_names[] = { "--expires-in", "--max-peers", "--name",
					    "--open-to-issuer", "--room", "--account", "--issuer" };

static const struct command_spec *find_command(enum ctl_command c)
{
	for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
		if (commands[i].command == c)
			return &commands[i];
	return NULL;
}

G_GNUC_PRINTF(2, 0)
static void vfail(GString *err, const char *fmt, va_list ap)
{
	g_string_append(err, PROG ": ");
	g_string_append_vprintf(err, fmt, ap);
	g_string_append_c(err, '\n');
}

G_GNUC_PRINTF(2, 3)
static void fail(GString *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(err, fmt, ap);
	va_end(ap);
}

G_GNUC_PRINTF(2, 3)
static int usage(GString *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(err, fmt, ap);
	va_end(ap);
	g_string_append_printf(err, "%s\n", _("Try 'rtcsignalctl --help' for more information."));
	return CTL_EXIT_USAGE;
}

/* --- the command line --- */

/* SECONDS, or a number with an s, m, h or d suffix. */
static int parse_duration(const char *text, gint64 *out)
{
	static const struct {
		char unit;
		guint64 seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	guint64 mult = 0, v;
	char *end;

	if (!g_ascii_isdigit(*text))
		return -EINVAL;
	errno = 0;
	v = g_ascii_strtoull(text, &end, 10);
	if (!*end)
		mult = 1;
	for (size_t i = 0; *end && !end[1] && i < G_N_ELEMENTS(units); i++)
		if (*end == units[i].unit)
			mult = units[i].seconds;
	if (!mult)
		return -EINVAL;
	if (errno || v > MAX_EXPIRES_IN / mult)
		return -ERANGE;
	*out = (gint64)(v * mult);
	return 0;
}

static int parse_number(const char *option, const char *text, guint64 min, guint64 max,
			gint64 *out, GString *err)
{
	guint64 v;

	if (!g_ascii_string_to_unsigned(text, 10, min, max, &v, NULL))
		return usage(err, _("%s: '%s' is not a number from %llu to %llu"), option, text,
			     (unsigned long long)min, (unsigned long long)max);
	*out = (gint64)v;
	return CTL_EXIT_OK;
}

static const char *canonical_noun(const char *word)
{
	if (strcmp(word, "room") == 0)
		return "rooms";
	if (strcmp(word, "key") == 0)
		return "keys";
	return word;
}

/* The command named by WORDS (the positional arguments), its operand
 * stored in A. */
static int parse_command(char **words, struct ctl_args *a, const struct command_spec **out,
			 GString *err)
{
	const char *noun, *verb;
	guint n = g_strv_length(words), used;

	if (n == 0)
		return usage(err, _("no command given"));
	noun = canonical_noun(words[0]);
	verb = n > 1 ? words[1] : NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
		const struct command_spec *c = &commands[i];
		if (strcmp(c->noun, noun) != 0 || (c->verb && (!verb || strcmp(c->verb, verb) != 0)))
			continue;
		used = c->verb ? 2 : 1;
		if (c->operand) {
			if (n <= used || !*words[used])
				/* TRANSLATORS: "'rooms delete' needs ROOM_ID": a command,
				 * then the operand as --help names it. */
				return usage(err, _("'%s %s' needs %s"), c->noun, c->verb, _(c->operand));
			a->id = g_strdup(words[used++]);
		}
		if (n > used)
			return usage(err, _("unexpected argument '%s'"), words[used]);
		*out = c;
		return CTL_EXIT_OK;
	}
	if (strcmp(noun, "rooms") == 0)
		return verb ? usage(err, _("unknown command 'rooms %s' (list, create, delete, members, "
					   "add-member or remove-member)"), verb)
			    : usage(err, _("'rooms' needs list, create, delete, members, add-member or "
					   "remove-member"));
	if (strcmp(noun, "keys") == 0)
		return verb ? usage(err, _("unknown command 'keys %s' (list, create or revoke)"), verb)
			    : usage(err, _("'keys' needs list, create or revoke"));
	return usage(err, _("unknown command '%s'"), words[0]);
}

static const char summary[] = N_(
	"Operate a running rtcsignald through its admin port.\n"
	"\n"
	"Commands:\n"
	"  status                 health, readiness, version, connections, rooms\n"
	"                         and peers by role\n"
	"  rooms list             rooms, their peers and expiry\n"
	"  rooms create [--expires-in S] [--max-peers N] [--name NAME] [--open-to-issuer]\n"
	"                         create a room; prints its token, shown only once\n"
	"  rooms delete ROOM_ID   delete a room and close its peers' connections\n"
	"  rooms members ROOM_ID  the accounts added to a room\n"
	"  rooms add-member ROOM_ID --account SUB [--issuer NAME]\n"
	"                         let an account's keys use the room\n"
	"  rooms remove-member ROOM_ID --account SUB [--issuer NAME]\n"
	"  keys create --room ROOM_ID [--name NAME] [--expires-in S]\n"
	"                         create an API key; prints it, shown only once\n"
	"  keys create --account SUB [--issuer NAME] [--name NAME] [--expires-in S]\n"
	"                         an account's key, valid in every room it may use\n"
	"  keys list              API keys (never their secrets)\n"
	"  keys revoke KEY_ID     revoke an API key\n"
	"'room' and 'key' work as 'rooms' and 'keys'.");

static const char description[] = N_(
	"The admin port is [admin] listen of the configuration file and the token\n"
	"its [admin] token or token_file; --admin, and --token-file or else the\n"
	"environment variable RTCSIGNALD_ADMIN_TOKEN, override them.  There is no\n"
	"option that takes the token itself: it would show in ps.\n"
	"\n"
	"Exit status:\n"
	"  0   success\n"
	"  1   the server refused the request (e.g. no such room) or gave an\n"
	"      unexpected answer\n"
	"  64  usage error\n"
	"  69  cannot connect to the admin port\n"
	"  75  the server is unavailable (5xx, not healthy or not ready) or did\n"
	"      not answer in time: try again later\n"
	"  77  not authorized: no admin token was found, or the server refused it\n"
	"  78  configuration error\n");

int ctl_parse(int argc, char **argv, struct ctl_args *a, GString *out, GString *err)
{
	g_autofree char *timeout = NULL, *expires_in = NULL, *max_peers = NULL;
	g_autofree char *config_help = g_strdup_printf(_("Configuration file (default %s)"),
						       CONFIG_DEFAULT_PATH);
	gboolean help = FALSE, version = FALSE, json = FALSE, open = FALSE;
	const GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &a->config_path, config_help, N_("PATH") },
		{ "admin", 0, 0, G_OPTION_ARG_STRING, &a->admin,
		  N_("Admin port address, instead of [admin] listen"), N_("ADDR:PORT") },
		{ "token-file", 0, 0, G_OPTION_ARG_FILENAME, &a->token_file,
		  N_("Read the admin token from PATH"), N_("PATH") },
		{ "json", 0, 0, G_OPTION_ARG_NONE, &json, N_("Print the server's JSON, for scripts"), NULL },
		{ "timeout", 0, 0, G_OPTION_ARG_STRING, &timeout,
		  N_("Give up after SECONDS (default 10)"), N_("SECONDS") },
		{ "help", 'h', 0, G_OPTION_ARG_NONE, &help, N_("Show this help and exit"), NULL },
		{ "version", 'V', 0, G_OPTION_ARG_NONE, &version, N_("Print the version and exit"), NULL },
		{ NULL },
	};
	const GOptionEntry create_entries[] = {
		{ "expires-in", 0, 0, G_OPTION_ARG_STRING, &expires_in,
		  N_("Lifetime: seconds, or 30m, 12h, 7d; 0 for none"), N_("S") },
		{ "max-peers", 0, 0, G_OPTION_ARG_STRING, &max_peers,
		  N_("At most N peers in the room at a time"), N_("N") },
		{ "name", 0, 0, G_OPTION_ARG_STRING, &a->name,
		  N_("A name to recognise the room or key by"), N_("NAME") },
		{ "open-to-issuer", 0, 0, G_OPTION_ARG_NONE, &open,
		  N_("Peers with a valid JWT join without the room token"), NULL },
		{ "room", 0, 0, G_OPTION_ARG_STRING, &a->room, N_("The room of the new key"),
		  N_("ROOM_ID") },
		{ "account", 0, 0, G_OPTION_ARG_STRING, &a->account,
		  N_("The account (JWT subject) of the new key, or the member"), N_("SUB") },
		{ "issuer", 0, 0, G_OPTION_ARG_STRING, &a->issuer,
		  N_("The account's [issuer NAME], when several are configured"), N_("NAME") },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new(N_("COMMAND [ARGUMENT…]"));
	GOptionGroup *group;
	g_auto(GStrv) args = g_new0(char *, (gsize)argc + 1);
	g_autoptr(GError) gerr = NULL;
	const struct command_spec *c = NULL;
	unsigned given;
	int r;

	memset(a, 0, sizeof *a);
	a->timeout_ms = DEFAULT_TIMEOUT_S * 1000;
	a->expires_in = -1;
	a->max_peers = -1;
	for (int i = 0; i < argc; i++)
		args[i] = g_strdup(argv[i]);
	g_option_context_set_translation_domain(ctx, GETTEXT_PACKAGE);
	g_option_context_set_summary(ctx, summary);
	g_option_context_set_description(ctx, description);
	g_option_context_add_main_entries(ctx, entries, GETTEXT_PACKAGE);
	/* GLib translates a group's help_description but prints its
	 * description as given when it lists every group, as our --help does. */
	group = g_option_group_new("create", _("Options of rooms create and keys create:"),
				   N_("Show the options of rooms create and keys create"), NULL, NULL);
	g_option_group_set_translation_domain(group, GETTEXT_PACKAGE);
	g_option_group_add_entries(group, create_entries);
	g_option_context_add_group(ctx, group);
	/* Our own --help: GLib's would exit() from inside the parser. */
	g_option_context_set_help_enabled(ctx, FALSE);
	if (!g_option_context_parse_strv(ctx, &args, &gerr))
		return usage(err, "%s", gerr->message);
	/* GOption leaves "--" in, before arguments that look like options. */
	for (char **p = args; *p; p++)
		if (strcmp(*p, "--") == 0) {
			g_free(*p);
			memmove(p, p + 1, sizeof *p * g_strv_length(p + 1) + sizeof *p);
			break;
		}
	a->json = json;
	a->open_to_issuer = open;
	if (help) {
		g_autofree char *text = g_option_context_get_help(ctx, FALSE, NULL);
		g_string_append(out, text);
		return CTL_EXIT_OK;
	}
	if (version) {
		g_string_append_printf(out, "%s %s\n", PROG, PACKAGE_VERSION);
		return CTL_EXIT_OK;
	}
	if ((r = parse_command(args + 1, a, &c, err)) != CTL_EXIT_OK)
		return r;
	a->command = c->command;

	given = (expires_in ? OPT_EXPIRES_IN : 0) | (max_peers ? OPT_MAX_PEERS : 0) |
		(a->name ? OPT_NAME : 0) | (open ? OPT_OPEN : 0) | (a->room ? OPT_ROOM : 0) |
		(a->account ? OPT_ACCOUNT : 0) | (a->issuer ? OPT_ISSUER : 0);
	for (unsigned i = 0; i < G_N_ELEMENTS(option_names); i++)
		if (given & ~c->options & (1u << i))
			return usage(err, _("%s is not an option of '%s%s%s'"), option_names[i], c->noun,
				     c->verb ? " " : "", c->verb ? c->verb : "");
	if (c->command == CTL_KEYS_CREATE && (a->room ? !*a->room || a->account : !a->account || !*a->account))
		return usage(err, _("'keys create' needs --room ROOM_ID or --account SUB"));
	if (c->command == CTL_KEYS_CREATE && a->issuer && !a->account)
		return usage(err, _("--issuer goes with --account"));
	if ((c->command == CTL_ROOMS_ADD_MEMBER || c->command == CTL_ROOMS_REMOVE_MEMBER) &&
	    (!a->account || !*a->account))
		return usage(err, _("'rooms %s' needs --account SUB"), c->verb);
	if (timeout) {
		gint64 s;
		if ((r = parse_number("--timeout", timeout, 1, MAX_TIMEOUT_S, &s, err)) != CTL_EXIT_OK)
			return r;
		a->timeout_ms = (int)s * 1000;
	}
	if (max_peers && (r = parse_number("--max-peers", max_peers, 1, G_MAXINT32, &a->max_peers,
					   err)) != CTL_EXIT_OK)
		return r;
	if (expires_in && parse_duration(expires_in, &a->expires_in) < 0)
		return usage(err, _("--expires-in: '%s' is not a number of seconds (or of minutes, hours "
				    "or days with a suffix m, h or d) up to %d"), expires_in, MAX_EXPIRES_IN);
	return CTL_EXIT_OK;
}

void ctl_args_clear(struct ctl_args *a)
{
	g_free(a->config_path);
	g_free(a->admin);
	g_free(a->token_file);
	g_free(a->name);
	g_free(a->room);
	g_free(a->account);
	g_free(a->issuer);
	g_free(a->id);
	memset(a, 0, sizeof *a);
}

/* --- where to, and with which token --- */

/* An admin port bound to every address is reached on loopback. */
static void wildcard_to_loopback(struct listen_addr *addr)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->ss;
	g_autofree char *text = NULL;

	if (addr->ss.ss_family == AF_INET && sin->sin_addr.s_addr == htonl(INADDR_ANY))
		text = g_strdup_printf("127.0.0.1:%u", ntohs(sin->sin_port));
	else if (addr->ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
		text = g_strdup_printf("[::1]:%u", ntohs(sin6->sin6_port));
	if (text)
		config_parse_listen(text, addr);
}

static int read_token(struct ctl_target *t, const char *path, GString *err)
{
	g_autoptr(GError) gerr = NULL;

	if (config_read_secret(path, &t->token, &gerr) < 0) {
		fail(err, _("cannot read the admin token: %s"), gerr->message);
		return CTL_EXIT_CONFIG;
	}
	return CTL_EXIT_OK;
}

/* Precedence: --token-file, $RTCSIGNALD_ADMIN_TOKEN, [admin] token, then
 * [admin] token_file. */
static int find_token(const struct ctl_args *a, const struct config *cfg, struct ctl_target *t,
		      GString *err)
{
	const char *env = g_getenv(TOKEN_ENV);
	int r = CTL_EXIT_OK;

	if (a->token_file) {
		t->token_source = g_strdup_printf("--token-file %s", a->token_file);
		r = read_token(t, a->token_file, err);
	} else if (env && *env) {
		t->token_source = g_strdup("$" TOKEN_ENV);
		t->token = g_strdup(env);
	} else if (cfg->admin_token) {
		/* TRANSLATORS: where the admin token came from, for "the server
		 * refused the admin token from %s"; %s is the configuration file. */
		t->token_source = g_strdup_printf(_("[admin] token in %s"), cfg->path);
		t->token = g_strdup(cfg->admin_token);
	} else if (cfg->admin_token_file) {
		t->token_source = g_strdup_printf(_("[admin] token_file %s"), cfg->admin_token_file);
		r = read_token(t, cfg->admin_token_file, err);
	}
	if (r != CTL_EXIT_OK)
		return r;
	/* It goes into a header line: no line breaks, no control bytes. */
	for (const char *p = t->token; p && *p; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f) {
			fail(err, _("the admin token from %s contains spaces or control characters"),
			     t->token_source);
			return CTL_EXIT_CONFIG;
		}
	return CTL_EXIT_OK;
}

int ctl_target_init(const struct ctl_args *a, struct ctl_target *t, GString *err)
{
	/* Secret files are read only when needed, with the operator's rights. */
	const struct config_overrides ov = { .no_secret_files = true };
	const struct command_spec *c = find_command(a->command);
	g_autoptr(GError) gerr = NULL;
	struct config *cfg;
	int r = CTL_EXIT_OK;

	memset(t, 0, sizeof *t);
	if (a->admin && config_parse_listen(a->admin, &t->admin) < 0)
		return usage(err, _("--admin: '%s' is not a numeric ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)"),
			     a->admin);
	if (config_load(a->config_path, &ov, &cfg, &gerr) < 0) {
		fail(err, _("invalid configuration: %s"), gerr->message);
		return CTL_EXIT_CONFIG;
	}
	t->config_path = g_strdup(cfg->path);
	t->metrics_token = g_strdup(cfg->metrics_token);
	if (!a->admin) {
		if (cfg->admin_listen.ss.ss_family == AF_UNSPEC) {
			fail(err, _("%s has no admin port ([admin] listen is empty): give --admin ADDR:PORT"),
			     cfg->path);
			r = CTL_EXIT_CONFIG;
			goto out;
		}
		t->admin = cfg->admin_listen;
	}
	wildcard_to_loopback(&t->admin);
	if (c && c->auth)
		r = find_token(a, cfg, t, err);
out:
	config_free(cfg);
	return r;
}

void ctl_target_clear(struct ctl_target *t)
{
	if (t->token)
		explicit_bzero(t->token, strlen(t->token));
	g_free(t->token);
	g_free(t->token_source);
	if (t->metrics_token)
		explicit_bzero(t->metrics_token, strlen(t->metrics_token));
	g_free(t->metrics_token);
	g_free(t->config_path);
	memset(t, 0, sizeof *t);
}

/* --- talking to the admin port --- */

/* Text from the server, some of it chosen by clients (role names), for a
 * terminal: valid UTF-8 without control characters. */
static char *clean(const char *s)
{
	g_autofree char *valid = g_utf8_make_valid(s, -1);
	GString *o = g_string_sized_new(strlen(valid));

	for (const char *p = valid; *p; p = g_utf8_next_char(p)) {
		gunichar ch = g_utf8_get_char(p);
		if (g_unichar_iscntrl(ch))
			g_string_append_c(o, '?');
		else
			g_string_append_unichar(o, ch);
	}
	return g_string_free(o, FALSE);
}

static void print_json(GString *out, json_object *o)
{
	g_string_append(out, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	g_string_append_c(out, '\n');
}

static int transport_error(const struct ctl_args *a, const struct ctl_target *t,
			   const struct httpc_reply *reply, int r, GString *err)
{
	if (!reply->connected) {
		fail(err, _("cannot connect to the admin port at %s: %s"), t->admin.text, g_strerror(-r));
		return CTL_EXIT_UNAVAILABLE;
	}
	if (r == -ETIMEDOUT) {
		fail(err, _("no answer from the admin port at %s within %d s"), t->admin.text,
		     a->timeout_ms / 1000);
		return CTL_EXIT_TEMPFAIL;
	}
	fail(err, _("unexpected answer from the admin port at %s: %s"), t->admin.text, g_strerror(-r));
	return CTL_EXIT_FAILED;
}

static int status_error(const struct ctl_target *t, bool auth, int status, json_object *body,
			GString *err)
{
	json_object *e = NULL;
	g_autofree char *why = NULL;
	g_autofree char *detail = NULL;

	if (json_object_object_get_ex(body, "error", &e) && json_object_is_type(e, json_type_string))
		why = clean(json_object_get_string(e));
	detail = why ? g_strdup_printf("%s (HTTP %d)", why, status) : g_strdup_printf("HTTP %d", status);
	if ((status == 401 || status == 403) && auth) {
		fail(err, _("not authorized: the server refused the admin token from %s: %s"),
		     t->token_source, detail);
		return CTL_EXIT_NOPERM;
	}
	if (status == 401 || status == 403) {
		fail(err, _("not authorized: %s"), detail);
		return CTL_EXIT_NOPERM;
	}
	if (status >= 500 && status <= 599) {
		fail(err, _("the server is unavailable, try again later: %s"), detail);
		return CTL_EXIT_TEMPFAIL;
	}
	if (status >= 400 && status <= 499) {
		fail(err, _("the server refused: %s"), detail);
		return CTL_EXIT_FAILED;
	}
	fail(err, _("unexpected answer from the server: %s"), detail);
	return CTL_EXIT_FAILED;
}

struct call {
	const char *method;
	const char *target;
	json_object *body; /* may be NULL */
	bool auth;
	bool metrics; /* sends [admin] metrics_token when configured */
	bool unavailable_ok; /* a 503 with a JSON object is an answer too */
	/* results */
	int status;
	json_object *json;
};

/* Makes CALL: CTL_EXIT_OK with CALL->json a JSON object (put it), or an
 * exit status with the reason on ERR. */
static int call(const struct ctl_args *a, const struct ctl_target *t, struct call *call,
		GString *err)
{
	g_autoptr(GString) headers = g_string_new("Accept: application/json\r\n");
	struct httpc_reply reply;
	int r;

	if (call->auth && !t->token) {
		fail(err, _("not authorized: no admin token found; set [admin] token or token_file in "
			    "%s, or use --token-file or $%s"),
		     t->config_path ? t->config_path : CONFIG_DEFAULT_PATH, TOKEN_ENV);
		return CTL_EXIT_NOPERM;
	}
	if (call->auth)
		g_string_append_printf(headers, "Authorization: Bearer %s\r\n", t->token);
	else if (call->metrics && t->metrics_token)
		g_string_append_printf(headers, "Authorization: Bearer %s\r\n", t->metrics_token);
	if (call->body)
		g_string_append(headers, "Content-Type: application/json\r\n");
	const struct httpc_request req = {
		.method = call->method,
		.target = call->target,
		.headers = headers->str,
		.body = call->body ? json_object_to_json_string_ext(call->body, JSON_C_TO_STRING_PLAIN)
				   : NULL,
		.timeout_ms = a->timeout_ms,
	};
	r = t->request ? t->request(t->data, &t->admin, &req, &reply)
		       : httpc_request(&t->admin, &req, &reply);
	explicit_bzero(headers->str, headers->len);
	if (r < 0) {
		r = transport_error(a, t, &reply, r, err);
		httpc_reply_clear(&reply);
		return r;
	}
	call->status = reply.status;
	call->json = json_tokener_parse(reply.body->str);
	httpc_reply_clear(&reply);
	if (call->json && !json_object_is_type(call->json, json_type_object)) {
		json_object_put(call->json);
		call->json = NULL;
	}
	if (call->status / 100 == 2 && call->json)
		return CTL_EXIT_OK;
	if (call->status == 503 && call->unavailable_ok && call->json)
		return CTL_EXIT_OK;
	if (call->status / 100 == 2) {
		fail(err, _("unexpected answer from the server: HTTP %d without a JSON object"),
		     call->status);
		return CTL_EXIT_FAILED;
	}
	r = status_error(t, call->auth, call->status, call->json, err);
	json_object_put(call->json);
	call->json = NULL;
	return r;
}

/* --- reading answers --- */

/* Checks the shape of answers as they are read: the first field that is
 * missing or of the wrong type is named in the error. */
struct reader {
	const char *bad;
};

static json_object *field(struct reader *rd, json_object *o, const char *key, json_type type,
			  bool nullable)
{
	json_object *v = NULL;
	bool have = o && json_object_object_get_ex(o, key, &v);

	if ((have && v && json_object_is_type(v, type)) || (nullable && !v))
		return v;
	if (!rd->bad)
		rd->bad = key;
	return NULL;
}

static char *text(struct reader *rd, json_object *o, const char *key, const char *none)
{
	json_object *v = field(rd, o, key, json_type_string, none != NULL);
	return v ? clean(json_object_get_string(v)) : g_strdup(none ? none : "");
}

static char *number(struct reader *rd, json_object *o, const char *key, const char *none)
{
	json_object *v = field(rd, o, key, json_type_int, none != NULL);
	return v ? g_strdup_printf("%" G_GINT64_FORMAT, json_object_get_int64(v))
		 : g_strdup(none ? none : "");
}

/* Seconds since the epoch as ISO 8601 UTC. */
static char *when(struct reader *rd, json_object *o, const char *key, const char *none)
{
	json_object *v = field(rd, o, key, json_type_int, none != NULL);
	g_autoptr(GDateTime) t = v ? g_date_time_new_from_unix_utc(json_object_get_int64(v)) : NULL;

	if (v && !t && !rd->bad)
		rd->bad = key;
	return t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : g_strdup(none ? none : "");
}

static int shape_error(struct reader *rd, GString *err)
{
	if (!rd->bad)
		return CTL_EXIT_OK;
	fail(err, _("unexpected answer from the server: '%s' is missing or not what was expected"),
	     rd->bad);
	return CTL_EXIT_FAILED;
}

/* --- printing --- */

/* Rows of N cells, each column as wide as its widest cell; the last
 * column is not padded. */
struct table {
	guint n;
	GPtrArray *cells;
};

static void table_init(struct table *tb, guint n)
{
	tb->n = n;
	tb->cells = g_ptr_array_new_with_free_func(g_free);
}

/* Takes N cells (allocated strings). */
static void table_row(struct table *tb, ...)
{
	va_list ap;

	va_start(ap, tb);
	for (guint i = 0; i < tb->n; i++)
		g_ptr_array_add(tb->cells, va_arg(ap, char *));
	va_end(ap);
}

/* Prints TB unless RD found the answer malformed; releases it either way. */
static int table_finish(struct table *tb, struct reader *rd, GString *out, GString *err)
{
	g_autofree glong *width = g_new0(glong, tb->n);
	int r = shape_error(rd, err);

	for (guint i = 0; r == CTL_EXIT_OK && i < tb->cells->len; i++)
		width[i % tb->n] = MAX(width[i % tb->n], g_utf8_strlen(tb->cells->pdata[i], -1));
	for (guint i = 0; r == CTL_EXIT_OK && i < tb->cells->len; i++) {
		const char *cell = tb->cells->pdata[i];
		guint col = i % tb->n;
		g_string_append(out, cell);
		if (col + 1 == tb->n) {
			g_string_append_c(out, '\n');
			continue;
		}
		for (glong pad = width[col] - g_utf8_strlen(cell, -1) + 2; pad > 0; pad--)
			g_string_append_c(out, ' ');
	}
	g_ptr_array_unref(tb->cells);
	tb->cells = NULL;
	return r;
}

/* "worker=2 client=1", or "-". */
static char *roles_text(struct reader *rd, json_object *o, const char *key)
{
	json_object *roles = field(rd, o, key, json_type_object, false);
	GString *s = g_string_new(NULL);

	if (roles) {
		json_object_object_foreach(roles, role, count) {
			if (!json_object_is_type(count, json_type_int)) {
				rd->bad = rd->bad ? rd->bad : key;
				continue;
			}
			g_autofree char *name = clean(role);
			g_string_append_printf(s, "%s%s=%" G_GINT64_FORMAT, s->len ? " " : "", name,
					       json_object_get_int64(count));
		}
	}
	if (!s->len)
		g_string_append_c(s, '-');
	return g_string_free(s, FALSE);
}

/* --- the commands --- */

static int cmd_status(const struct ctl_args *a, const struct ctl_target *t, GString *out,
		      GString *err)
{
	struct call calls[] = {
		{ .method = "GET", .target = "/health", .unavailable_ok = true },
		{ .method = "GET", .target = "/ready", .unavailable_ok = true },
		{ .method = "GET", .target = "/metrics?format=json", .metrics = true },
	};
	struct reader rd = { 0 };
	int r = CTL_EXIT_OK;

	for (size_t i = 0; i < G_N_ELEMENTS(calls) && r == CTL_EXIT_OK; i++)
		r = call(a, t, &calls[i], err);
	if (r != CTL_EXIT_OK)
		goto out;
	if (a->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "health", json_object_get(calls[0].json));
		json_object_object_add(o, "ready", json_object_get(calls[1].json));
		json_object_object_add(o, "metrics", json_object_get(calls[2].json));
		print_json(out, o);
		json_object_put(o);
	} else {
		json_object *m = calls[2].json;
		g_autofree char *ready = text(&rd, calls[1].json, "status", NULL);
		g_autofree char *reason = text(&rd, calls[1].json, "reason", "");
		json_object *roles = field(&rd, m, "peers_by_role", json_type_object, false);
		gint64 peers = 0;
		struct table tb;

		table_init(&tb, 2);
		table_row(&tb, g_strdup(_("Health:")), text(&rd, calls[0].json, "status", NULL));
		table_row(&tb, g_strdup(_("Readiness:")),
			  *reason ? g_strdup_printf("%s (%s)", ready, reason) : g_strdup(ready));
		table_row(&tb, g_strdup(_("Version:")), text(&rd, calls[0].json, "version", NULL));
		/* A daemon before issue 18 does not say. */
		if (json_object_object_get_ex(m, "authentication", NULL))
			table_row(&tb, g_strdup(_("Auth:")),
				  text(&rd, m, "authentication", NULL));
		table_row(&tb, g_strdup(_("Connections:")), number(&rd, m, "active_connections", NULL));
		table_row(&tb, g_strdup(_("Rooms:")), number(&rd, m, "active_rooms", NULL));
		if (roles) {
			json_object_object_foreach(roles, role, count) {
				(void)role;
				peers += json_object_get_int64(count);
			}
		}
		table_row(&tb, g_strdup(_("Peers:")), g_strdup_printf("%" G_GINT64_FORMAT, peers));
		if (roles) {
			json_object_object_foreach(roles, role, count) {
				g_autofree char *name = clean(role);
				table_row(&tb, g_strdup_printf("  %s", name), number(&rd, roles, role, NULL));
			}
		}
		json_object *cl = field(&rd, m, "cluster", json_type_object, true);
		if (cl) {
			/* several instances ([cluster] redis): their state as this one sees it */
			g_autofree char *n = number(&rd, cl, "instances", NULL);
			json_object *up = field(&rd, cl, "up", json_type_boolean, false);
			json_object *lag = field(&rd, cl, "lag_mean_ms", json_type_double, false);
			table_row(&tb, g_strdup(_("Cluster:")),
				  g_strdup_printf(_("%s, %s instances"),
						  up && json_object_get_boolean(up) ? _("up") : _("degraded"), n));
			table_row(&tb, g_strdup(_("  forwarded")), number(&rd, cl, "forwarded", NULL));
			table_row(&tb, g_strdup(_("  received")), number(&rd, cl, "received", NULL));
			table_row(&tb, g_strdup(_("  replication lag")),
				  g_strdup_printf("%.3f ms", lag ? json_object_get_double(lag) : 0.0));
			/* each live instance's peers, as the last sweep counted them */
			json_object *per = field(&rd, cl, "instance_peers", json_type_object, false);
			if (per) {
				json_object_object_foreach(per, inst, count) {
					g_autofree char *name = clean(inst);
					g_autofree char *n_peers = number(&rd, per, inst, NULL);
					(void)count;
					table_row(&tb, g_strdup_printf(_("  instance %s"), name),
						  g_strdup_printf(_("%s peers"), n_peers));
				}
			}
		}
		r = table_finish(&tb, &rd, out, err);
	}
	/* Not healthy or not ready: said above, and in the exit status. */
	if (r == CTL_EXIT_OK && (calls[0].status == 503 || calls[1].status == 503))
		r = CTL_EXIT_TEMPFAIL;
out:
	for (size_t i = 0; i < G_N_ELEMENTS(calls); i++)
		json_object_put(calls[i].json);
	return r;
}

/* One authorized call; with --json its answer is printed and *JSON left
 * NULL, else *JSON is the answer to print (put it). */
static int api(const struct ctl_args *a, const struct ctl_target *t, const char *method,
	       const char *target, json_object *body, json_object **json, GString *out, GString *err)
{
	struct call c = { .method = method, .target = target, .body = body, .auth = true };
	int r = call(a, t, &c, err);

	*json = NULL;
	if (r != CTL_EXIT_OK)
		return r;
	if (a->json) {
		print_json(out, c.json);
		json_object_put(c.json);
	} else {
		*json = c.json;
	}
	return CTL_EXIT_OK;
}

/* Prints LIST's items as a table with HEADERS; ROW adds one item. */
static int print_list(json_object *answer, const char *key, const char *const *headers, guint n,
		      void (*row)(struct reader *rd, struct table *tb, json_object *item),
		      const char *empty, GString *out, GString *err)
{
	struct reader rd = { 0 };
	json_object *list = field(&rd, answer, key, json_type_array, false);
	struct table tb;
	int r;

	if ((r = shape_error(&rd, err)) != CTL_EXIT_OK)
		return r;
	if (json_object_array_length(list) == 0) {
		g_string_append_printf(out, "%s\n", empty);
		return CTL_EXIT_OK;
	}
	table_init(&tb, n);
	for (guint i = 0; i < n; i++)
		g_ptr_array_add(tb.cells, g_strdup(_(headers[i])));
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *item = json_object_array_get_idx(list, i);
		if (!json_object_is_type(item, json_type_object))
			rd.bad = rd.bad ? rd.bad : key;
		else
			row(&rd, &tb, item);
	}
	return table_finish(&tb, &rd, out, err);
}

static void room_row(struct reader *rd, struct table *tb, json_object *room)
{
	json_object *open = field(rd, room, "open_to_issuer", json_type_boolean, false);

	table_row(tb, text(rd, room, "room_id", NULL), text(rd, room, "name", "-"),
		  number(rd, room, "peers", NULL), number(rd, room, "max_peers", "-"),
		  when(rd, room, "created_at", NULL), when(rd, room, "expires_at", _("never")),
		  g_strdup(open && json_object_get_boolean(open) ? _("yes") : _("no")),
		  text(rd, room, "created_by", NULL), roles_text(rd, room, "peers_by_role"));
}

static int cmd_rooms_list(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			  GString *err)
{
	/* TRANSLATORS: column headers; each column is as wide as its widest
	 * cell, so any length aligns. */
	static const char *const headers[] = { N_("ROOM ID"), N_("NAME"), N_("PEERS"), N_("MAX"),
					       N_("CREATED"), N_("EXPIRES"), N_("OPEN"),
					       N_("CREATED BY"), N_("ROLES") };
	json_object *json;
	int r = api(a, t, "GET", "/api/rooms", NULL, &json, out, err);

	if (r == CTL_EXIT_OK && json)
		r = print_list(json, "rooms", headers, G_N_ELEMENTS(headers), room_row, _("No rooms."),
			       out, err);
	json_object_put(json);
	return r;
}

/* "account SUB (ISSUER)" of an account's key or member. */
static char *account_text(struct reader *rd, json_object *o)
{
	g_autofree char *sub = text(rd, o, "account", NULL), *issuer = text(rd, o, "issuer", "-");
	return g_strdup_printf(_("account %s (%s)"), sub, issuer);
}

static void key_row(struct reader *rd, struct table *tb, json_object *key)
{
	json_object *account = NULL;
	bool of_account = json_object_object_get_ex(key, "account", &account) && account;

	table_row(tb, text(rd, key, "key_id", NULL),
		  of_account ? account_text(rd, key) : text(rd, key, "room_id", NULL),
		  text(rd, key, "name", "-"), when(rd, key, "created_at", NULL),
		  when(rd, key, "expires_at", _("never")), when(rd, key, "revoked_at", "-"));
}

static int cmd_keys_list(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			 GString *err)
{
	static const char *const headers[] = { N_("KEY ID"), N_("ROOM ID"), N_("NAME"),
					       N_("CREATED"), N_("EXPIRES"), N_("REVOKED") };
	json_object *json;
	int r = api(a, t, "GET", "/api/keys", NULL, &json, out, err);

	if (r == CTL_EXIT_OK && json)
		r = print_list(json, "keys", headers, G_N_ELEMENTS(headers), key_row, _("No API keys."),
			       out, err);
	json_object_put(json);
	return r;
}

/* A field of a create call's answer, shown as "LABEL  value". */
struct shown {
	const char *label;
	const char *key;
	bool time; /* seconds since the epoch; null: never */
};

/* POSTs BODY (taken) to TARGET and prints FIELDS of the answer, then
 * NOTE: the secret among them is not shown again. */
static int create(const struct ctl_args *a, const struct ctl_target *t, const char *target,
		  json_object *body, const struct shown *fields, size_t n, const char *note,
		  GString *out, GString *err)
{
	struct reader rd = { 0 };
	json_object *json;
	struct table tb;
	int r = api(a, t, "POST", target, body, &json, out, err);

	json_object_put(body);
	if (r != CTL_EXIT_OK || !json)
		return r;
	table_init(&tb, 2);
	for (size_t i = 0; i < n; i++)
		table_row(&tb, g_strdup(_(fields[i].label)),
			  fields[i].time ? when(&rd, json, fields[i].key, _("never"))
					 : text(&rd, json, fields[i].key, NULL));
	if ((r = table_finish(&tb, &rd, out, err)) == CTL_EXIT_OK)
		g_string_append_printf(err, "%s\n", note);
	json_object_put(json);
	return r;
}

static int cmd_rooms_create(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			    GString *err)
{
	static const struct shown fields[] = {
		{ N_("Room ID:"), "room_id", false },
		{ N_("Token:"), "token", false },
		{ N_("Expires:"), "expires_at", true },
	};
	json_object *body = json_object_new_object();

	if (a->expires_in >= 0)
		json_object_object_add(body, "expires_in", json_object_new_int64(a->expires_in));
	if (a->max_peers >= 0)
		json_object_object_add(body, "max_peers", json_object_new_int64(a->max_peers));
	if (a->name)
		json_object_object_add(body, "name", json_object_new_string(a->name));
	if (a->open_to_issuer)
		json_object_object_add(body, "open_to_issuer", json_object_new_boolean(true));
	return create(a, t, "/api/rooms", body, fields, G_N_ELEMENTS(fields),
		      _("Keep the token now: it is not shown again."), out, err);
}

static int cmd_keys_create(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			   GString *err)
{
	static const struct shown fields[] = {
		{ N_("Key ID:"), "key_id", false },
		{ N_("Room ID:"), "room_id", false },
		{ N_("API key:"), "api_key", false },
		{ N_("Expires:"), "expires_at", true },
	};
	static const struct shown account_fields[] = {
		{ N_("Key ID:"), "key_id", false },
		{ N_("Account:"), "account", false },
		{ N_("Issuer:"), "issuer", false },
		{ N_("API key:"), "api_key", false },
		{ N_("Expires:"), "expires_at", true },
	};
	json_object *body = json_object_new_object();

	if (a->account) {
		json_object_object_add(body, "account", json_object_new_string(a->account));
		if (a->issuer)
			json_object_object_add(body, "issuer", json_object_new_string(a->issuer));
		if (a->name)
			json_object_object_add(body, "name", json_object_new_string(a->name));
		if (a->expires_in >= 0)
			json_object_object_add(body, "expires_in", json_object_new_int64(a->expires_in));
		return create(a, t, "/api/keys", body, account_fields, G_N_ELEMENTS(account_fields),
			      _("Keep the API key now: it is not shown again."), out, err);
	}
	json_object_object_add(body, "room_id", json_object_new_string(a->room));
	if (a->name)
		json_object_object_add(body, "name", json_object_new_string(a->name));
	if (a->expires_in >= 0)
		json_object_object_add(body, "expires_in", json_object_new_int64(a->expires_in));
	return create(a, t, "/api/keys", body, fields, G_N_ELEMENTS(fields),
		      _("Keep the API key now: it is not shown again."), out, err);
}

static int cmd_rooms_delete(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			    GString *err)
{
	g_autofree char *id = g_uri_escape_string(a->id, NULL, FALSE);
	g_autofree char *target = g_strdup_printf("/api/rooms/%s", id);
	g_autofree char *shown = clean(a->id);
	struct reader rd = { 0 };
	json_object *json, *closed;
	int r = api(a, t, "DELETE", target, NULL, &json, out, err);

	if (r != CTL_EXIT_OK || !json)
		return r;
	closed = field(&rd, json, "peers_closed", json_type_int, false);
	if ((r = shape_error(&rd, err)) == CTL_EXIT_OK) {
		long n = (long)json_object_get_int64(closed);
		g_string_append_printf(out, ngettext("Room %s deleted; %ld peer closed.\n",
						     "Room %s deleted; %ld peers closed.\n",
						     (unsigned long)n),
				       shown, n);
	}
	json_object_put(json);
	return r;
}

static int cmd_keys_revoke(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			   GString *err)
{
	g_autofree char *id = g_uri_escape_string(a->id, NULL, FALSE);
	g_autofree char *target = g_strdup_printf("/api/keys/%s", id);
	g_autofree char *shown = clean(a->id);
	json_object *json;
	int r = api(a, t, "DELETE", target, NULL, &json, out, err);

	if (r == CTL_EXIT_OK && json)
		g_string_append_printf(out, _("Key %s revoked.\n"), shown);
	json_object_put(json);
	return r;
}

static void member_row(struct reader *rd, struct table *tb, json_object *m)
{
	table_row(tb, text(rd, m, "account", NULL), text(rd, m, "issuer", "-"),
		  when(rd, m, "added_at", NULL));
}

static int cmd_rooms_members(const struct ctl_args *a, const struct ctl_target *t, GString *out,
			     GString *err)
{
	static const char *const headers[] = { N_("ACCOUNT"), N_("ISSUER"), N_("ADDED") };
	g_autofree char *id = g_uri_escape_string(a->id, NULL, FALSE);
	g_autofree char *target = g_strdup_printf("/api/rooms/%s/members", id);
	json_object *json;
	int r = api(a, t, "GET", target, NULL, &json, out, err);

	if (r == CTL_EXIT_OK && json)
		r = print_list(json, "members", headers, G_N_ELEMENTS(headers), member_row,
			       _("No members."), out, err);
	json_object_put(json);
	return r;
}

static int cmd_rooms_member_change(const struct ctl_args *a, const struct ctl_target *t,
				   GString *out, GString *err)
{
	bool add = a->command == CTL_ROOMS_ADD_MEMBER;
	g_autofree char *id = g_uri_escape_string(a->id, NULL, FALSE);
	g_autofree char *target = g_strdup_printf("/api/rooms/%s/members", id);
	g_autofree char *shown = clean(a->id), *who = clean(a->account);
	json_object *body = json_object_new_object(), *json;
	int r;

	json_object_object_add(body, "account", json_object_new_string(a->account));
	if (a->issuer)
		json_object_object_add(body, "issuer", json_object_new_string(a->issuer));
	r = api(a, t, add ? "POST" : "DELETE", target, body, &json, out, err);
	json_object_put(body);
	if (r == CTL_EXIT_OK && json)
		g_string_append_printf(out, add ? _("Account %s added to room %s.\n")
						: _("Account %s removed from room %s.\n"),
				       who, shown);
	json_object_put(json);
	return r;
}

int ctl_execute(const struct ctl_args *a, const struct ctl_target *t, GString *out, GString *err)
{
	static int (*const run[])(const struct ctl_args *, const struct ctl_target *, GString *,
				  GString *) = {
		[CTL_STATUS] = cmd_status,
		[CTL_ROOMS_LIST] = cmd_rooms_list,
		[CTL_ROOMS_CREATE] = cmd_rooms_create,
		[CTL_ROOMS_DELETE] = cmd_rooms_delete,
		[CTL_KEYS_LIST] = cmd_keys_list,
		[CTL_KEYS_CREATE] = cmd_keys_create,
		[CTL_KEYS_REVOKE] = cmd_keys_revoke,
		[CTL_ROOMS_MEMBERS] = cmd_rooms_members,
		[CTL_ROOMS_ADD_MEMBER] = cmd_rooms_member_change,
		[CTL_ROOMS_REMOVE_MEMBER] = cmd_rooms_member_change,
	};

	if (a->command == CTL_NONE)
		return CTL_EXIT_OK;
	return run[a->command](a, t, out, err);
}

int ctl_main(int argc, char **argv, GString *out, GString *err)
{
	struct ctl_args a;
	struct ctl_target t = { 0 };
	int r = ctl_parse(argc, argv, &a, out, err);

	if (r == CTL_EXIT_OK && a.command != CTL_NONE && (r = ctl_target_init(&a, &t, err)) == CTL_EXIT_OK)
		r = ctl_execute(&a, &t, out, err);
	ctl_target_clear(&t);
	ctl_args_clear(&a);
	return r;
}
