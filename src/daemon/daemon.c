#include "daemon/daemon.h"

#include "util/addrlimit.h"
#include "daemon/admin.h"
#include "daemon/adminapi.h"
#include "auth/auth.h"
#include "auth/fetch.h"
#include "daemon/listener.h"
#include "util/log.h"
#include "daemon/reloadstate.h"
#include "daemon/loopcall.h"
#include "util/metrics.h"
#include "core/registry.h"
#include "auth/pubkeys.h"
#include "store/rooms.h"
#include "store/roomsvc.h"
#include "core/router.h"
#include "daemon/routerio.h"
#include "cluster/cluster.h"
#include "daemon/rsync.h"
#include "store/store.h"
#include "daemon/systemd.h"
#include "daemon/tlscert.h"
#include "daemon/ws.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* The loop's heartbeat, read by /health. */
#define TICK_MS 1000

struct daemon {
	uv_loop_t loop;
	struct config *cfg;
	const char *reload_path;
	struct config_overrides ov;
	struct registry *reg;
	struct store *store;
	struct rsync *rsync; /* [rooms] store = redis: other instances' changes */
	char *instance_id;
	struct rooms *rooms;
	struct roomsvc *roomsvc;
	struct routerio routerio; /* the router's services */
	struct router *router;
	struct cluster *cluster; /* [cluster] redis set, else NULL */
	struct pubkeys *pubkeys;
	struct auth *auth;
	struct fetch_client *fetch; /* issuers' key sets */
	struct addrlimit *addrlimit;
	struct ws_server *ws;
	struct loopcall *loopcall;
	struct admin *admin;
	struct adminapi api;
	GPtrArray *listeners;
	struct systemd_fds activated;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t tick, watchdog, drain_timer;
	char *status;           /* last STATUS= sent */
	uint64_t last_messages; /* for the msg/s in STATUS */
	bool stopping;
};

static void on_accept(void *data, int fd)
{
	ws_server_adopt(data, fd);
}

/* "WHAT listening on ADDRESS:PORT", the address FD is bound to. */
static void log_listening(int fd, const char *what, const char *how)
{
	char where[80];
	listener_describe(fd, where, sizeof where);
	log_event(LOG_INFO, LOG_EVENT_LISTENING, NULL, "%s listening on %s%s", what, where, how);
}

/* Binds ADDR; logs the address actually bound (port 0 picks one). */
static int bind_logged(const struct listen_addr *a, const char *what)
{
	int fd = listener_bind(a);

	if (fd < 0) {
		log_err("cannot listen on %s: %s", a->text, g_strerror(-fd));
		return fd;
	}
	log_listening(fd, what, "");
	return fd;
}

static int add_listener(struct daemon *d, int fd)
{
	struct listener *l;
	int r = listener_new(&d->loop, fd, on_accept, d->ws, &l);
	if (r < 0) {
		close(fd);
		return r;
	}
	g_ptr_array_add(d->listeners, l);
	return 0;
}

/* The sockets systemd passed, or else the configured addresses. */
static int open_listeners(struct daemon *d)
{
	int r;

	for (unsigned i = 0; i < d->activated.n_ws; i++) {
		log_listening(d->activated.ws[i], "WebSocket",
			      " (socket activation; [server] listen ignored)");
		if ((r = add_listener(d, d->activated.ws[i])) < 0)
			return r;
	}
	if (d->activated.n_ws)
		return 0;
	for (guint i = 0; i < d->cfg->listen->len; i++) {
		int fd = bind_logged(&g_array_index(d->cfg->listen, struct listen_addr, i), "WebSocket");
		if (fd < 0)
			return fd;
		if ((r = add_listener(d, fd)) < 0)
			return r;
	}
	return 0;
}

static void close_listeners(struct daemon *d)
{
	for (guint i = 0; i < d->listeners->len; i++)
		listener_close(g_ptr_array_index(d->listeners, i));
	g_ptr_array_set_size(d->listeners, 0);
}

static void roles_on_loop(void *data, struct metrics_roles *out)
{
	struct daemon *d = data;
	registry_role_counts(d->reg, d->cfg->metrics_top_roles, metrics_roles_add, out);
}

static bool store_ready(void *data, const char **reason)
{
	if (store_ping(data) == 0)
		return true;
	*reason = "room store unavailable";
	return false;
}

/* [rooms] store = redis (always with [cluster] redis): a Redis outage is
 * the cluster's, and keeps the instance ready, since its own peers are
 * still served; /ready and /health say "cluster":"degraded" and each
 * creation meanwhile is refused with its reason.  A store that fails
 * while Redis answers is unready as a local one is. */
static bool redis_store_ready(void *data, const char **reason)
{
	return !metrics_get(cluster_up) || store_ready(data, reason);
}

static bool keys_ready(void *data, const char **reason)
{
	if (auth_keys_loaded(data))
		return true;
	*reason = "an issuer's key set (jwks_url) is not loaded yet";
	return false;
}

/* [cluster] redis: peers shared with the other instances (no Redis code
 * runs without it). */
static int start_cluster(struct daemon *d)
{
	const struct cluster_options o = {
		.redis = d->cfg->cluster_redis,
		.password = d->cfg->cluster_password,
		.key_prefix = d->cfg->cluster_key_prefix,
		.instance_id = d->instance_id,
		.instance_ttl_ms = d->cfg->cluster_instance_ttl * 1000,
		/* a frame as its target gets it: the sender's, stamped */
		.max_payload = d->cfg->max_message_bytes + 4096,
		.max_outstanding = d->cfg->cluster_max_outstanding,
		.max_buffered_events = d->cfg->cluster_max_buffered_events,
	};
	int r = cluster_new(&d->loop, &o, &routerio_cluster_ops, &d->routerio, &d->cluster);

	if (r < 0) {
		log_err("cannot start the cluster ([cluster] redis = %s)", d->cfg->cluster_redis);
		return r;
	}
	d->routerio.cluster = d->cluster;
	metrics_set(cluster_configured, true);
	log_info("cluster: instance %s, Redis %s", d->instance_id, d->cfg->cluster_redis);
	return 0;
}

/* /ready: not before the first view of the cluster; a later loss keeps
 * it ready (local peers are served), as "cluster: degraded". */
static bool cluster_ready(void *data, const char **reason)
{
	if (metrics_get(cluster_seen_up))
		return true;
	(void)data;
	*reason = "cluster: no view of the other instances yet (Redis)";
	return false;
}

static int start_admin(struct daemon *d)
{
	int fd = d->activated.admin;

	if (fd >= 0) {
		log_listening(fd, "admin", " (socket activation)");
	} else if (d->cfg->admin_listen.ss.ss_family == AF_UNSPEC) {
		return 0;
	} else if ((fd = bind_logged(&d->cfg->admin_listen, "admin")) < 0) {
		return fd;
	}
	struct admin_options o = {
		.listen_fd = fd,
		.max_connections = d->cfg->admin_max_connections,
		.connections_per_address = d->cfg->admin_connections_per_address,
		.connection_timeout = d->cfg->admin_connection_timeout,
		.request_timeout = d->cfg->admin_request_timeout,
		.requests_per_second = d->cfg->admin_requests_per_second,
		.loopcall = d->loopcall,
		.roles = roles_on_loop,
		.roles_data = d,
		.api = adminapi_handle,
		.api_data = &d->api,
		.ready = { { strcmp(d->cfg->rooms_store, "redis") == 0 ? redis_store_ready : store_ready,
			     d->store },
			   { keys_ready, d->auth } },
		.cluster = d->cluster != NULL,
	};
	if (d->cluster)
		o.ready[2].fn = cluster_ready;
	d->api = (struct adminapi){ .cfg = (const struct config *const *)&d->cfg, .rooms = d->rooms,
				    .roomsvc = d->roomsvc, .reg = d->reg, .router = d->router,
				    .auth = d->auth, .audit = audit_new(d->cfg->admin_audit_entries) };
	int r = admin_start(&o, &d->admin);
	if (r < 0) {
		log_err("cannot start the admin port");
		close(fd);
		return r;
	}
	admin_set_tokens(d->admin, d->cfg->admin_token, d->cfg->metrics_token);
	return 0;
}

/* "1204 peers in 37 rooms, 812 msg/s" */
static char *status_line(struct daemon *d)
{
	uint64_t total = 0;
	for (int t = 0; t < MSG__COUNT; t++)
		total += metrics_get(messages_received[t]);
	uint64_t rate = (total - d->last_messages) * 1000 / TICK_MS;
	d->last_messages = total;
	return g_strdup_printf("%" G_GINT64_FORMAT " peers in %" G_GINT64_FORMAT " rooms, %" G_GUINT64_FORMAT
			       " msg/s", (gint64)metrics_get(peers), (gint64)metrics_get(rooms), rate);
}

/* The room service's hook: a room that went loses its peers. */
static unsigned close_room(void *data, const char *room_id, const char *reason)
{
	struct daemon *d = data;
	return router_close_room(d->router, room_id, reason);
}

static void on_tick(uv_timer_t *t)
{
	struct daemon *d = t->data;
	g_autofree char *status = status_line(d);
	struct addrlimit_stats al;

	metrics_heartbeat();
	roomsvc_expire(d->roomsvc, g_get_real_time() / G_USEC_PER_SEC);
	addrlimit_sweep(d->addrlimit, g_get_monotonic_time());
	addrlimit_get_stats(d->addrlimit, &al);
	metrics_set(address_evictions_total, al.reg_evictions);
	metrics_set(store_pending_writes, d->store ? store_pending(d->store) : 0);
	if (!d->stopping && g_strcmp0(status, d->status) != 0) {
		systemd_notify_status(status);
		g_free(d->status);
		d->status = g_steal_pointer(&status);
	}
}

/* From the loop itself, so a hung loop stops the pings and systemd
 * restarts the service. */
static void on_watchdog(uv_timer_t *t)
{
	systemd_notify_watchdog();
}

/* Key-set fetches end before the loop's handles are closed. */
static void stop_fetching(struct daemon *d)
{
	auth_stop_fetching(d->auth);
	fetch_client_free(g_steal_pointer(&d->fetch));
}

static void stop_cluster(struct daemon *d)
{
	d->routerio.cluster = NULL;
	cluster_free(g_steal_pointer(&d->cluster));
}

static void finish(void *data)
{
	struct daemon *d = data;

	uv_close((uv_handle_t *)&d->drain_timer, NULL);
	uv_close((uv_handle_t *)&d->tick, NULL);
	uv_close((uv_handle_t *)&d->watchdog, NULL);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	loopcall_close(d->loopcall);
	/* The store first: its last completions may answer admin requests
	 * still waiting for a write.  It is freed only when the loop runs
	 * again, after admin_stop has joined the admin thread, which may be
	 * asking it for /ready until then. */
	if (store_close(d->store, STORE_CLOSE_TIMEOUT_MS) < 0)
		log_err("room store: gave up on writes still pending at shutdown");
	d->store = NULL; /* released by the loop */
	rsync_stop(g_steal_pointer(&d->rsync));
	admin_stop(g_steal_pointer(&d->admin));
	stop_fetching(d);
	ws_server_stop(d->ws);
	/* After the sessions: their withdraws went out first. */
	stop_cluster(d);
}

static void on_drain_timeout(uv_timer_t *t)
{
	struct daemon *d = t->data;
	log_notice("drain timeout: closing %u remaining sessions", ws_server_sessions(d->ws));
	finish(d);
}

static void stop(struct daemon *d, int signum)
{
	if (d->stopping)
		return;
	d->stopping = true;
	metrics_set(draining, true);
	g_autofree char *status = g_strdup_printf("Stopping: draining %u sessions",
						  ws_server_sessions(d->ws));
	systemd_notify_stopping(status);
	log_event(LOG_NOTICE, LOG_EVENT_STOPPING, NULL, "stopping on %s, draining %u sessions",
		  strsignal(signum), ws_server_sessions(d->ws));
	close_listeners(d);
	uv_timer_start(&d->drain_timer, on_drain_timeout, (uint64_t)d->cfg->drain_timeout * 1000, 0);
	ws_server_drain(d->ws, finish, d);
}

static void log_change(const char *group, const char *key, bool applied, void *data)
{
	unsigned *restart = data;
	if (applied) {
		log_info("reload: [%s] %s changed, applied", group, key);
	} else {
		log_warning("reload: [%s] %s changed, needs a restart; keeping the running value",
			    group, key);
		(*restart)++;
	}
}

static int set_addrlimits(struct daemon *d, const struct config *cfg)
{
	/* A table as large as the session limit is never full. */
	const struct addrlimit_limits l = {
		.max_addresses = cfg->max_sessions,
		.conns_per_address = cfg->connections_per_address,
		.regs_per_minute = cfg->registrations_per_address_per_minute,
		.failed_per_minute = cfg->failed_registrations_per_address_per_minute,
	};
	return d->addrlimit ? addrlimit_set_limits(d->addrlimit, &l) : addrlimit_new(&l, &d->addrlimit);
}

static void log_auth_mode(struct daemon *d);

/* SIGHUP: the new file wholly, or nothing of it. */
static void reload(struct daemon *d)
{
	g_autoptr(GError) err = NULL;
	struct config *cfg = NULL;
	struct tlscert *tls = NULL;
	unsigned restart = 0;

	reloadstate_begin();
	systemd_notify_reloading();
	/* Renewed TLS files are read (and checked) before anything applies. */
	if (auth_load_config(d->reload_path, &d->ov, &cfg, &err) < 0 ||
	    tlscert_load_config(cfg, &tls, &err) < 0 || auth_configure(d->auth, cfg, &err) < 0) {
		log_event(LOG_ERR, LOG_EVENT_RELOAD_FAILED, NULL,
			  "reload failed, keeping the running configuration: %s", err->message);
		tlscert_free(tls);
		reloadstate_finish(false, err->message);
		config_free(cfg);
	} else {
		config_carry_over(cfg, d->cfg, log_change, &restart);
		log_set_level(cfg->log_level);
		log_set_repeats(cfg->log_repeat_interval, cfg->log_repeat_burst);
		ws_server_set_config(d->ws, cfg);
		ws_server_set_tls(d->ws, g_steal_pointer(&tls));
		router_set_config(d->router, cfg);
		roomsvc_set_config(d->roomsvc, cfg);
		set_addrlimits(d, cfg);
		store_set_retry_timeout(d->store, cfg->rooms_store_retry_timeout * 1000);
		admin_set_tokens(d->admin, cfg->admin_token, cfg->metrics_token);
		config_free(d->cfg);
		d->cfg = cfg;
		log_auth_mode(d);
		log_event(LOG_NOTICE, LOG_EVENT_RELOADED, NULL, "configuration reloaded%s",
			  restart ? "; some changes need a restart" : "");
		reloadstate_finish(true, restart ? "some changes need a restart" : NULL);
	}
	/* The last tick's line: computing one now would count the messages
	 * of part of a second as a second's, here and at the next tick. */
	systemd_notify_ready(d->status);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	if (signum == SIGHUP)
		reload(d);
	else
		stop(d, signum);
}

static void start_signal(struct daemon *d, uv_signal_t *h, int signum)
{
	uv_signal_init(&d->loop, h);
	h->data = d;
	uv_signal_start(h, on_signal, signum);
}

static void rsync_close_room(void *data, const char *room_id, const char *reason)
{
	struct daemon *d = data;
	if (d->router) /* none yet when a start fails */
		router_close_room(d->router, room_id, reason);
}

static void rsync_close_principal(void *data, const char *principal, const char *reason)
{
	struct daemon *d = data;
	if (d->router)
		router_close_principal(d->router, principal, reason);
}

/* Persistent rooms: the store opened and read before anything serves. */
static int open_rooms(struct daemon *d)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(GPtrArray) rooms = NULL, keys = NULL, members = NULL;
	int r;

	d->instance_id = rsync_instance_id(d->cfg->cluster_instance_id);
	const struct store_params sp = { .state_dir = d->cfg->state_dir, .redis = d->cfg->cluster_redis,
		.password = d->cfg->cluster_password, .instance_id = d->instance_id,
		.key_prefix = d->cfg->cluster_key_prefix ? d->cfg->cluster_key_prefix : "" };
	if (d->cfg->cluster_redis)
		log_notice("cluster: instance %s, Redis %s", d->instance_id, d->cfg->cluster_redis);
	if ((r = store_open_with(&d->loop, d->cfg->rooms_store, &sp, &d->store, &err)) < 0 ||
	    (r = store_load(d->store, &rooms, &keys, &err)) < 0 ||
	    (r = store_load_members(d->store, &members, &err)) < 0) {
		log_err("room store: %s", err->message);
		return r;
	}
	store_set_retry_timeout(d->store, d->cfg->rooms_store_retry_timeout * 1000);
	g_autoptr(GPtrArray) pubkeys = NULL;
	if ((r = store_load_pubkeys(d->store, &pubkeys, &err)) < 0) {
		log_err("room store: %s", err->message);
		return r;
	}
	d->rooms = rooms_new(d->store);
	unsigned n_rooms = rooms->len, n_keys = keys->len;
	rooms_load(d->rooms, rooms, keys);
	/* Revoked and expired keys are kept (for their history), not counted. */
	unsigned active = rooms_count_active_keys(d->rooms, g_get_real_time() / G_USEC_PER_SEC);
	log_info("room store %s: %u rooms, %u API keys in force (%u revoked or expired), %u public keys",
		 d->cfg->state_dir, n_rooms, active, n_keys - active, pubkeys->len);
	rooms_load_members(d->rooms, members);
	d->pubkeys = pubkeys_new();
	pubkeys_load(d->pubkeys, pubkeys);
	if (strcmp(d->cfg->rooms_store, "redis") == 0) {
		const struct rsync_params rp = { .loop = &d->loop, .store_params = &sp, .store = d->store,
			.rooms = d->rooms, .pubkeys = d->pubkeys, .close_room = rsync_close_room,
			.close_principal = rsync_close_principal, .data = d };
		if ((r = rsync_start(&rp, &d->rsync, &err)) < 0) {
			log_err("room store: %s", err->message);
			return r;
		}
	}
	return 0;
}

/* The mode comes from the configuration alone (auth_required): said at
 * start and on every reload, so a change is in the log. */
static void log_auth_mode(struct daemon *d)
{
	metrics_set(auth_mode, auth_required(d->auth) ? METRICS_AUTH_REQUIRED
			       : d->cfg->allow_anonymous ? METRICS_AUTH_OFF_ANYONE : METRICS_AUTH_OFF_LOOPBACK);
	if (auth_required(d->auth)) {
		log_notice("authentication: required (%u [issuer] groups%s): every register needs a JWT "
			   "or an API key", auth_n_issuers(d->auth),
			   d->cfg->require_auth ? ", [server] require_auth = true" : "");
		return;
	}
	if (d->cfg->allow_anonymous)
		log_warning("authentication is off and allow_anonymous is true: anyone who can reach the "
			    "port can join any room");
	else
		log_warning("authentication is off: only loopback clients are served "
			    "(configure an [issuer] or [server] require_auth, or set allow_anonymous)");
	/* Keys once switched authentication on by existing; no longer. */
	if (rooms_any_active_key(d->rooms, g_get_real_time() / G_USEC_PER_SEC))
		log_warning("authentication is off although API keys are stored: they admit to their "
			    "rooms but are not required; set [server] require_auth = true to require "
			    "them");
}

int daemon_new(struct config *cfg, const char *reload_path, const struct config_overrides *ov,
	       struct daemon **out)
{
	struct daemon *d = g_new0(struct daemon, 1);
	/* Before the first goto: its cleanup runs at every return. */
	g_autoptr(GError) err = NULL;
	int r;

	d->cfg = cfg;
	d->reload_path = reload_path;
	if (ov)
		d->ov = *ov;
	d->listeners = g_ptr_array_new();
	uv_loop_init(&d->loop);
	signal(SIGPIPE, SIG_IGN);
	log_set_level(cfg->log_level);
	log_set_repeats(cfg->log_repeat_interval, cfg->log_repeat_burst);
	log_event(LOG_INFO, LOG_EVENT_STARTED, NULL, "rtcsignald %s starting", PACKAGE_VERSION);
	metrics.start_time = g_get_real_time() / G_USEC_PER_SEC;
	metrics_heartbeat();
	if ((r = systemd_listen_fds(&d->activated)) < 0)
		goto fail;

	d->reg = registry_new();
	if ((r = loopcall_new(&d->loop, &d->loopcall)) < 0 || (r = open_rooms(d)) < 0)
		goto fail;
	d->auth = auth_new();
	if ((r = auth_configure(d->auth, cfg, &err)) < 0) {
		log_err("%s", err->message);
		goto fail;
	}
	if ((r = set_addrlimits(d, cfg)) < 0)
		goto fail;
	/* The core and its edges, each handed what it needs. */
	d->roomsvc = roomsvc_new(d->rooms, cfg);
	d->routerio = (struct routerio){ .auth = d->auth, .roomsvc = d->roomsvc };
	const struct router_env renv = { .rooms = d->rooms, .addrlimit = d->addrlimit };
	d->router = router_new(cfg, d->reg, &renv,
			       cfg->cluster_redis ? &routerio_cluster_services : &routerio_services,
			       &d->routerio);
	d->routerio.router = d->router;
	if (cfg->cluster_redis && (r = start_cluster(d)) < 0)
		goto fail;
	roomsvc_set_close(d->roomsvc, close_room, d);
	const struct ws_env wenv = {
		.router = d->router,
		.addrlimit = d->addrlimit,
		.keys = { .rooms = d->rooms, .auth = d->auth, .addrlimit = d->addrlimit,
			  .pubkeys = d->pubkeys, .store = d->store },
		.rooms = { .auth = d->auth, .roomsvc = d->roomsvc },
	};
	r = ws_server_new(&d->loop, cfg, &wenv, &d->ws);
	if (r < 0) {
		log_err("cannot create the WebSocket server");
		goto fail;
	}
	log_auth_mode(d);
	if ((r = fetch_client_new(&d->loop, &d->fetch)) < 0) {
		log_err("cannot create the key set fetcher");
		goto fail;
	}
	auth_start_fetching(d->auth, &d->loop, d->fetch);
	if ((r = open_listeners(d)) < 0 || (r = start_admin(d)) < 0)
		goto fail;
	uv_timer_init(&d->loop, &d->tick);
	d->tick.data = d;
	uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
	uv_timer_init(&d->loop, &d->watchdog);
	uint64_t wd = systemd_watchdog_usec();
	if (wd)
		uv_timer_start(&d->watchdog, on_watchdog, 0, MAX(wd / 2000, 1));
	uv_timer_init(&d->loop, &d->drain_timer);
	d->drain_timer.data = d;
	start_signal(d, &d->sig_term, SIGTERM);
	start_signal(d, &d->sig_int, SIGINT);
	start_signal(d, &d->sig_hup, SIGHUP);
	*out = d;
	return 0;
fail:
	close_listeners(d);
	if (d->loopcall)
		loopcall_close(d->loopcall);
	admin_stop(g_steal_pointer(&d->admin));
	if (d->store)
		store_close(d->store, STORE_CLOSE_TIMEOUT_MS);
	rsync_stop(g_steal_pointer(&d->rsync));
	if (d->auth)
		stop_fetching(d);
	if (d->ws)
		ws_server_stop(d->ws);
	stop_cluster(d);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	daemon_free(d);
	return r;
}

int daemon_run(struct daemon *d)
{
	metrics_set(ready, true);
	d->status = status_line(d);
	systemd_notify_ready(d->status);
	log_event(LOG_NOTICE, LOG_EVENT_READY, NULL, "rtcsignald %s ready", PACKAGE_VERSION);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	log_event(LOG_NOTICE, LOG_EVENT_STOPPED, NULL, "stopped");
	return 0;
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	/* The admin thread may be waiting on the loop: stop it first. */
	admin_stop(d->admin);
	/* The transport's last closes still reach the router. */
	ws_server_free(d->ws);
	router_free(d->router);
	loopcall_free(d->loopcall);
	roomsvc_free(d->roomsvc);
	rooms_free(d->rooms);
	audit_free(d->api.audit); /* after the last store completion */
	pubkeys_free(d->pubkeys);
	auth_free(d->auth);
	addrlimit_free(d->addrlimit);
	registry_free(d->reg);
	uv_loop_close(&d->loop);
	g_ptr_array_unref(d->listeners);
	config_free(d->cfg);
	g_free(d->status);
	g_free(d->instance_id);
	g_free(d);
}
