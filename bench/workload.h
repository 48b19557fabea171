/* workload: where the generator connects from and to, and the messages
 * it sends (register with typical metadata, discovery filters). */
#pragma once

#include "wsconn.h"

#include <glib.h>
#include <stdbool.h>
#include <sys/socket.h>

/* Source addresses are 127.0.1.1 .. 127.0.1.N (IPv4 targets only). */
#define WORKLOAD_MAX_SOURCES 250

struct target {
	struct sockaddr_storage dst;
	socklen_t dst_len;
	char text[64];
	unsigned sources; /* 0: let the kernel pick the source address */
};

/* Parses ADDR:PORT and refuses anything that is not loopback
 * (127.0.0.0/8 or ::1): -EINVAL, -EPERM. */
int target_parse(const char *text, unsigned sources, struct target *out);
/* Opens connection number I (its source address rotates with I). */
struct wsconn *target_open(struct wsloop *l, const struct target *t, unsigned i,
			   const struct wsconn_ops *ops, void *user);

enum meta_kind {
	META_CLIENT, /* role "client", empty metadata */
	META_WORKER, /* role "worker", the same typical worker metadata */
	META_VARIED, /* role and metadata vary with the peer's number */
};

/* A register message for peer ID in ROOM; VARIANT picks the metadata of
 * META_VARIED peers. */
void workload_register(GString *out, const char *id, const char *room, enum meta_kind kind,
		       unsigned variant);

/* Typical discover_peers requests (what clients looking for a worker
 * send); request I uses filter I % workload_n_filters. */
extern const unsigned workload_n_filters;
const char *workload_discover(unsigned i, unsigned limit, GString *out);
