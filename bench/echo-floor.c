/* echo-floor: the cost floor for rtcsignald's transport.  A bare
 * libwebsockets echo server set up exactly as the daemon's ws.c (lws 4.1
 * on a foreign libuv loop, rx_buffer_size 256, the same options and
 * keepalive policy, sockets accepted by the daemon's own listener and
 * adopted), that sends every message straight back: queued in RECEIVE,
 * one lws_write per SERVER_WRITEABLE.  What the daemon spends per routed
 * message above this floor is JSON, routing and bookkeeping.
 *
 *   echo-floor [--listen 127.0.0.1:PORT] [--rx-buffer-size BYTES]
 *              [--tx-packet-size BYTES] [--no-nodelay] [--lws-keepalive]
 *
 * The other options depart from the daemon's settings, to measure what
 * they cost: lws reads at most rx_buffer_size bytes per recv(), and sends
 * at most tx_packet_size bytes per send(), 0 meaning rx_buffer_size, each
 * chunk on its own writeable event; Nagle holds small segments for the
 * peer's delayed ACK; and lws's validity timers re-sort a list of every
 * connection at each message received.
 *
 * Prints "pid=PID port=PORT" on stdout and "listening on ADDR:PORT" on
 * stderr once ready; SIGTERM or SIGINT exits cleanly. */
#include "util/config.h"
#include "daemon/listener.h"
#include "util/netaddr.h"

#include <glib.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define EXIT_USAGE 64
#define RX_CHUNK 256           /* as src/daemon/ws.c */
#define TX_MAX (16 << 20)      /* as src/daemon/ws.c */
#define MAX_MESSAGE (1u << 20) /* as the daemon's default max_message_bytes */
#define MAX_QUEUED (4u << 20)  /* as the daemon's default max_queued_bytes */

struct msg {
	size_t len;
	bool binary;
	unsigned char data[]; /* LWS_PRE bytes, then the message */
};

struct session {
	GQueue outq; /* of struct msg */
	size_t queued;
	unsigned char *rx;
	size_t rx_len, rx_cap;
	bool established;
};

struct echo {
	uv_loop_t loop;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct listener *listener;
	bool nodelay;
	uv_signal_t sig_term, sig_int;
	lws_retry_bo_t retry;
};

static struct msg *msg_new(const void *data, size_t len, bool binary)
{
	struct msg *m = g_malloc(sizeof *m + LWS_PRE + len);
	m->len = len;
	m->binary = binary;
	memcpy(m->data + LWS_PRE, data, len);
	return m;
}

static int on_receive(struct session *s, struct lws *wsi, const void *in, size_t len)
{
	size_t remaining = lws_remaining_packet_payload(wsi);
	bool complete = lws_is_final_fragment(wsi) && remaining == 0;
	bool binary = lws_frame_is_binary(wsi);
	struct msg *m;

	if (s->rx_len + len + remaining > MAX_MESSAGE || s->queued > MAX_QUEUED) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
		return -1;
	}
	if (s->rx_len == 0 && complete) {
		m = msg_new(in, len, binary); /* one chunk: no reassembly */
	} else {
		if (s->rx_len + len > s->rx_cap) {
			s->rx_cap = MAX(s->rx_len + len + remaining, s->rx_cap * 2);
			s->rx = g_realloc(s->rx, s->rx_cap);
		}
		memcpy(s->rx + s->rx_len, in, len);
		s->rx_len += len;
		if (!complete)
			return 0;
		m = msg_new(s->rx, s->rx_len, binary);
		s->rx_len = 0;
	}
	if (g_queue_is_empty(&s->outq))
		lws_callback_on_writable(wsi);
	g_queue_push_tail(&s->outq, m);
	s->queued += m->len;
	return 0;
}

static int on_writeable(struct session *s, struct lws *wsi)
{
	struct msg *m = g_queue_pop_head(&s->outq);

	if (!m)
		return 0;
	s->queued -= m->len;
	int n = lws_write(wsi, m->data + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
	g_free(m);
	if (n < 0)
		return -1;
	if (!g_queue_is_empty(&s->outq))
		lws_callback_on_writable(wsi);
	return 0;
}

static void on_closed(struct session *s)
{
	struct msg *m;

	if (!s->established)
		return;
	while ((m = g_queue_pop_head(&s->outq)))
		g_free(m);
	g_clear_pointer(&s->rx, g_free);
	s->established = false;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	struct session *s = user;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		g_queue_init(&s->outq);
		s->established = true;
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return on_receive(s, wsi, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(s, wsi);
	case LWS_CALLBACK_CLOSED:
		on_closed(s);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

/* Not const: --rx-buffer-size and --tx-packet-size set the first entry's. */
static struct lws_protocols protocols[] = {
	{ .name = "echo", .callback = callback, .per_session_data_size = sizeof(struct session),
	  .rx_buffer_size = RX_CHUNK },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void on_accept(void *data, int fd)
{
	struct echo *e = data;
	int one = 1;

	if (e->nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (!lws_adopt_socket_vhost(e->vh, fd))
		fprintf(stderr, "echo-floor: could not adopt a connection\n");
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct echo *e = h->data;

	listener_close(e->listener);
	e->listener = NULL;
	uv_close((uv_handle_t *)&e->sig_term, NULL);
	uv_close((uv_handle_t *)&e->sig_int, NULL);
	lws_context_destroy(e->ctx); /* first half: lws closes its handles */
}

static void lws_emit(int level, const char *line)
{
	fprintf(stderr, "echo-floor: lws: %s", line);
}

int main(int argc, char *argv[])
{
	g_autofree char *listen_text = NULL;
	gint tx_packet_size = TX_MAX, rx_buffer_size = RX_CHUNK;
	gboolean no_nodelay = FALSE, lws_keepalive = FALSE;
	g_autoptr(GError) err = NULL;
	struct listen_addr addr;
	struct echo e = { 0 };
	struct lws_context_creation_info info;
	void *loops[1] = { &e.loop };
	char where[80];
	const GOptionEntry entries[] = {
		{ "listen", 'l', 0, G_OPTION_ARG_STRING, &listen_text,
		  "Loopback address to listen on (127.0.0.1:0: any free port)", "ADDR:PORT" },
		{ "rx-buffer-size", 0, 0, G_OPTION_ARG_INT, &rx_buffer_size,
		  "lws rx_buffer_size (256, as the daemon)", "BYTES" },
		{ "tx-packet-size", 0, 0, G_OPTION_ARG_INT, &tx_packet_size,
		  "Largest send() lws makes (16777216, as the daemon; 0: rx_buffer_size)", "BYTES" },
		{ "no-nodelay", 0, 0, G_OPTION_ARG_NONE, &no_nodelay,
		  "Leave Nagle on: no TCP_NODELAY on accepted sockets (the daemon sets it)", NULL },
		{ "lws-keepalive", 0, 0, G_OPTION_ARG_NONE, &lws_keepalive,
		  "Let lws keep per-connection validity timers (ping 20 s, hang up 30 s; the daemon does its own)",
		  NULL },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);

	g_option_context_set_summary(ctx, "Bare libwebsockets echo server on libuv: the cost floor for rtcsignald.");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "echo-floor: %s\n", err->message);
		return EXIT_USAGE;
	}
	if (config_parse_listen(listen_text ? listen_text : "127.0.0.1:0", &addr) < 0 ||
	    !netaddr_is_loopback((struct sockaddr *)&addr.ss)) {
		fprintf(stderr, "echo-floor: --listen takes a loopback ADDR:PORT\n");
		return EXIT_USAGE;
	}
	if (tx_packet_size < 0 || tx_packet_size > (1 << 24) || rx_buffer_size < 128 ||
	    rx_buffer_size > (1 << 24)) {
		fprintf(stderr, "echo-floor: --rx-buffer-size and --tx-packet-size must be within 128 (0 for tx)..16777216\n");
		return EXIT_USAGE;
	}
	protocols[0].rx_buffer_size = (size_t)rx_buffer_size;
	protocols[0].tx_packet_size = (size_t)tx_packet_size;
	e.nodelay = !no_nodelay;
	int fd = listener_bind(&addr);
	if (fd < 0) {
		fprintf(stderr, "echo-floor: cannot listen on %s: %s\n", addr.text, g_strerror(-fd));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&e.loop);

	/* The daemon's settings (src/daemon/ws.c), so that only what happens
	 * between RECEIVE and WRITEABLE differs: no lws validity timers (the
	 * daemon sweeps its sessions once a second instead). */
	if (lws_keepalive) {
		e.retry.secs_since_valid_ping = 20;
		e.retry.secs_since_valid_hangup = 30;
	}
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
	info.foreign_loops = loops;
	info.retry_and_idle_policy = &e.retry;
	info.pcontext = &e.ctx;
	info.max_http_header_pool = 256;
	info.timeout_secs = 10;
	info.uid = (uid_t)-1;
	info.gid = (gid_t)-1;
	info.vhost_name = "default";
	e.ctx = lws_create_context(&info);
	if (!e.ctx) {
		fprintf(stderr, "echo-floor: cannot create the libwebsockets context\n");
		close(fd);
		uv_loop_close(&e.loop);
		return 1;
	}
	e.vh = lws_get_vhost_by_name(e.ctx, "default");
	if (listener_new(&e.loop, fd, on_accept, &e, &e.listener) < 0) {
		close(fd);
		lws_context_destroy(e.ctx);
		uv_run(&e.loop, UV_RUN_DEFAULT);
		return 1;
	}
	uv_signal_init(&e.loop, &e.sig_term);
	uv_signal_init(&e.loop, &e.sig_int);
	e.sig_term.data = e.sig_int.data = &e;
	uv_signal_start(&e.sig_term, on_signal, SIGTERM);
	uv_signal_start(&e.sig_int, on_signal, SIGINT);

	listener_describe(fd, where, sizeof where);
	printf("pid=%d port=%s\n", (int)getpid(), strrchr(where, ':') + 1);
	fflush(stdout);
	fprintf(stderr, "echo-floor: listening on %s\n", where);

	uv_run(&e.loop, UV_RUN_DEFAULT);
	/* With a foreign loop lws finishes destroying its context in a
	 * second call, once its handles have closed (pcontext tells). */
	if (e.ctx) {
		lws_context_destroy(e.ctx);
		uv_run(&e.loop, UV_RUN_DEFAULT);
	}
	int r = uv_loop_close(&e.loop);
	fprintf(stderr, "echo-floor: stopped%s\n", r ? " (handles left open)" : "");
	return 0;
}
