/* filter: the discovery filter language of PROTOCOL.md 3.2, compiled once
 * per request and matched against each peer of a room. */
#pragma once

#include "meta.h"

#include <json-c/json.h>
#include <stdbool.h>

struct filter;

/* Compiles FILTERS (a JSON object; NULL matches every peer).  Returns
 * -EINVAL with a message in *WHY (owned by the caller, g_free) for an
 * unknown operator or an ill-formed criterion. */
int filter_compile(json_object *filters, struct filter **out, char **why);
bool filter_match(const struct filter *f, const char *role, const struct meta *m);
void filter_free(struct filter *f);
