/* registration: the register message, the router's admission half:
 * credentials (API key, JWT, room token), the per-address attempt limit,
 * parking while an issuer's keys load, and a peer id registered again
 * (replace, or supersede for a v2.0 session). */
#pragma once

#include "core/protocol.h"
#include "core/router.h"

struct router;

/* C sent register M (decoded and valid). */
void registration_handle(struct router *r, struct client *c, struct msg *m);
/* A register of C waiting for keys is dropped (C moves on or goes). */
void registration_unpark(struct client *c);
