/* listener: listening TCP sockets on the event loop.  The daemon binds
 * its configured addresses here, or is handed sockets (systemd socket
 * activation); either way each accepted connection goes to ON_ACCEPT. */
#pragma once

#include "util/config.h"

#include <uv.h>

struct listener;

/* Called with a connected, non-blocking socket it now owns. */
typedef void (*listener_accept_fn)(void *data, int fd);

/* Binds and listens on ADDR; returns the socket or a negative errno. */
int listener_bind(const struct listen_addr *addr);
/* The bound address of FD as text ("127.0.0.1:41234"). */
void listener_describe(int fd, char *buf, size_t len);

int listener_new(uv_loop_t *loop, int fd, listener_accept_fn fn, void *data,
		 struct listener **out);
/* Stops accepting and closes the socket (asynchronously). */
void listener_close(struct listener *l);
