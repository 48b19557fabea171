/* systemd: socket activation, readiness and watchdog notifications.
 * Outside systemd every call is a no-op and no descriptors are passed. */
#pragma once

#include <stdint.h>

#define SYSTEMD_MAX_WS_FDS 16

struct systemd_fds {
	int ws[SYSTEMD_MAX_WS_FDS]; /* named "ws", or unnamed */
	unsigned n_ws;
	int admin; /* named "admin", or -1 */
};

/* The listening sockets systemd passed.  0 with none passed; -EINVAL when
 * one is not a listening stream socket or has an unknown name (all passed
 * descriptors are then closed). */
int systemd_listen_fds(struct systemd_fds *out);

void systemd_notify_ready(const char *status);
void systemd_notify_status(const char *status);
/* RELOADING=1 with MONOTONIC_USEC (what Type=notify-reload expects). */
void systemd_notify_reloading(void);
void systemd_notify_stopping(const char *status);
void systemd_notify_watchdog(void);
/* Microseconds between the pings systemd expects, or 0. */
uint64_t systemd_watchdog_usec(void);
