/* ws: the WebSocket transport.  libwebsockets on the daemon's libuv loop;
 * sockets come from the listener and are adopted into one vhost.  Each
 * session has a bounded outbound queue; complete messages go to the
 * router. */
#pragma once

#include "util/addrlimit.h"
#include "util/config.h"
#include "daemon/keyapi.h"
#include "daemon/roomhttp.h"
#include "core/router.h"

#include <uv.h>

struct ws_server;

/* What the transport serves; all of it outlives the server. */
struct ws_env {
	/* Gets every complete message; the server sets itself as its
	 * transport (router_set_transport).  NULL: no session is served. */
	struct router *router;
	struct addrlimit *addrlimit;  /* connections per address */
	struct keyapi_env keys;       /* POST /api/auth/public-keys, GET .../authorized-keys */
	struct roomhttp_env rooms;    /* POST /create-room */
};

int ws_server_new(uv_loop_t *loop, const struct config *cfg, const struct ws_env *env,
		  struct ws_server **out);
/* Takes ownership of an accepted socket. */
void ws_server_adopt(struct ws_server *ws, int fd);
/* The transport's own limits; the router has its own call. */
void ws_server_set_config(struct ws_server *ws, const struct config *cfg);
/* Reload: new wss:// connections get TC (tlscert_load_config(); taken
 * over, NULL for plain ws://); open ones keep theirs.  Switching TLS on
 * or off needs a restart and is only logged. */
struct tlscert;
void ws_server_set_tls(struct ws_server *ws, struct tlscert *tc);
unsigned ws_server_sessions(const struct ws_server *ws);

/* Graceful shutdown: every session gets a 1001 close, after
 * SERVER_SHUTTING_DOWN when it speaks 2.1; DONE runs once the last one
 * is gone. */
void ws_server_drain(struct ws_server *ws, void (*done)(void *data), void *data);
/* Destroys the lws context (inside the loop; completes asynchronously). */
void ws_server_stop(struct ws_server *ws);
/* Frees what is left, after the loop has returned. */
void ws_server_free(struct ws_server *ws);
