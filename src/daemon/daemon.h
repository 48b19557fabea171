/* daemon: owns the event loop and brings the modules up and down in
 * order: registry, transport, listeners, signals. */
#pragma once

#include "util/config.h"

struct daemon;

/* Takes ownership of CFG.  RELOAD_PATH and OV (which must outlive the
 * daemon) are what SIGHUP re-reads. */
int daemon_new(struct config *cfg, const char *reload_path, const struct config_overrides *ov,
	       struct daemon **out);
/* Runs until SIGTERM/SIGINT and the drain that follows; returns the exit
 * status. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);
