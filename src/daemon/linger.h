/* linger: a server-side close that lets the close frame arrive.
 *
 * Closing a TCP socket with unread input makes the kernel send a reset,
 * which discards whatever the peer has not read yet: the close frame with
 * its code, when the peer was flooding us or is slow to read.  So a socket
 * we close on a peer that still sends is kept (a dup of it, after lws has
 * sent its FIN) and drained until the peer closes too or the grace time
 * ends, like a web server's lingering close. */
#pragma once

#include <uv.h>

struct linger_pool;

struct linger_pool *linger_new(uv_loop_t *loop, unsigned max_sockets, unsigned grace_ms);
/* Takes FD: drains and closes it within the grace time, or closes it at
 * once when max_sockets are lingering already. */
void linger_add(struct linger_pool *l, int fd);
/* Closes every lingering socket (shutdown); frees L once their handles
 * are closed, which takes one more loop iteration. */
void linger_free(struct linger_pool *l);
