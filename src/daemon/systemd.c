#include "daemon/systemd.h"

#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

int systemd_listen_fds(struct systemd_fds *out)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), r = 0;

	out->n_ws = 0;
	out->admin = -1;
	if (n <= 0)
		return n < 0 ? n : 0;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names ? names[i] : "unknown";

		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			log_err("passed descriptor %d (%s) is not a listening stream socket", fd, name);
			r = -EINVAL;
		} else if (strcmp(name, "admin") == 0 && out->admin < 0) {
			out->admin = fd;
		} else if ((strcmp(name, "ws") == 0 || strcmp(name, "unknown") == 0) &&
			   out->n_ws < SYSTEMD_MAX_WS_FDS) {
			out->ws[out->n_ws++] = fd;
		} else {
			log_err("passed socket %d has an unexpected name \"%s\" (want \"ws\" or \"admin\")",
				fd, name);
			r = -EINVAL;
		}
	}
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	if (r < 0) {
		for (int i = 0; i < n; i++)
			close(SD_LISTEN_FDS_START + i);
		out->n_ws = 0;
		out->admin = -1;
		return r;
	}
	return n;
}

void systemd_notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void systemd_notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void systemd_notify_reloading(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading configuration",
		   (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
}

void systemd_notify_stopping(const char *status)
{
	sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

void systemd_notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

uint64_t systemd_watchdog_usec(void)
{
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
