#include "daemon.h"

#include "listener.h"
#include "log.h"
#include "registry.h"
#include "ws.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

struct daemon {
	uv_loop_t loop;
	struct config *cfg;
	char *reload_path;
	char *ov_listen, *ov_log_level;
	struct registry *reg;
	struct ws_server *ws;
	GPtrArray *listeners;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t drain_timer;
	bool stopping;
};

static void on_accept(void *data, int fd)
{
	ws_server_adopt(data, fd);
}

static int open_listeners(struct daemon *d)
{
	for (guint i = 0; i < d->cfg->listen->len; i++) {
		const struct listen_addr *a = &g_array_index(d->cfg->listen, struct listen_addr, i);
		struct listener *l;
		char where[80];
		int fd = listener_bind(a);

		if (fd < 0) {
			log_err("cannot listen on %s: %s", a->text, g_strerror(-fd));
			return fd;
		}
		int r = listener_new(&d->loop, fd, on_accept, d->ws, &l);
		if (r < 0) {
			close(fd);
			return r;
		}
		g_ptr_array_add(d->listeners, l);
		listener_describe(fd, where, sizeof where);
		struct log_fields f = { .remote = NULL };
		log_event(LOG_INFO, LOG_EVENT_LISTENING, &f, "listening on %s", where);
	}
	return 0;
}

static void close_listeners(struct daemon *d)
{
	for (guint i = 0; i < d->listeners->len; i++)
		listener_close(g_ptr_array_index(d->listeners, i));
	g_ptr_array_set_size(d->listeners, 0);
}

static void finish(void *data)
{
	struct daemon *d = data;

	uv_timer_stop(&d->drain_timer);
	uv_close((uv_handle_t *)&d->drain_timer, NULL);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	ws_server_stop(d->ws);
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
	log_event(LOG_NOTICE, LOG_EVENT_STOPPING, NULL, "stopping on %s, draining %u sessions",
		  strsignal(signum), ws_server_sessions(d->ws));
	close_listeners(d);
	uv_timer_start(&d->drain_timer, on_drain_timeout, (uint64_t)d->cfg->drain_timeout * 1000, 0);
	ws_server_drain(d->ws, finish, d);
}

static void reload(struct daemon *d)
{
	struct config_overrides ov = { .listen = d->ov_listen, .log_level = d->ov_log_level };
	g_autoptr(GError) err = NULL;
	struct config *cfg;

	if (config_load(d->reload_path, &ov, &cfg, &err) < 0) {
		log_event(LOG_ERR, LOG_EVENT_RELOAD_FAILED, NULL,
			  "reload failed, keeping the running configuration: %s", err->message);
		return;
	}
	log_set_level(cfg->log_level);
	ws_server_set_config(d->ws, cfg);
	config_free(d->cfg);
	d->cfg = cfg;
	log_event(LOG_NOTICE, LOG_EVENT_RELOADED, NULL, "configuration reloaded");
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

int daemon_new(struct config *cfg, const char *reload_path, const struct config_overrides *ov,
	       struct daemon **out)
{
	struct daemon *d = g_new0(struct daemon, 1);
	int r;

	d->cfg = cfg;
	d->reload_path = g_strdup(reload_path);
	d->ov_listen = g_strdup(ov ? ov->listen : NULL);
	d->ov_log_level = g_strdup(ov ? ov->log_level : NULL);
	d->listeners = g_ptr_array_new();
	uv_loop_init(&d->loop);
	signal(SIGPIPE, SIG_IGN);
	log_set_level(cfg->log_level);

	d->reg = registry_new();
	r = ws_server_new(&d->loop, cfg, d->reg, &d->ws);
	if (r < 0) {
		log_err("cannot create the WebSocket server");
		goto fail;
	}
	r = open_listeners(d);
	if (r < 0)
		goto fail;
	uv_timer_init(&d->loop, &d->drain_timer);
	d->drain_timer.data = d;
	start_signal(d, &d->sig_term, SIGTERM);
	start_signal(d, &d->sig_int, SIGINT);
	start_signal(d, &d->sig_hup, SIGHUP);
	*out = d;
	return 0;
fail:
	close_listeners(d);
	if (d->ws) {
		ws_server_stop(d->ws);
		uv_run(&d->loop, UV_RUN_DEFAULT);
	}
	daemon_free(d);
	return r;
}

int daemon_run(struct daemon *d)
{
	log_event(LOG_NOTICE, LOG_EVENT_READY, NULL, "rtcsignald %s ready", PACKAGE_VERSION);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	log_event(LOG_NOTICE, LOG_EVENT_STOPPED, NULL, "stopped");
	return 0;
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	ws_server_free(d->ws);
	registry_free(d->reg);
	uv_loop_close(&d->loop);
	g_ptr_array_unref(d->listeners);
	config_free(d->cfg);
	g_free(d->reload_path);
	g_free(d->ov_listen);
	g_free(d->ov_log_level);
	g_free(d);
}
