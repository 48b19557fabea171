/* filter: the discovery filter language (docs/protocol.md,
 * "discover_peers"), compiled once per request and matched against each
 * peer of a room.
 *
 * A query's work is bounded: every comparison counts (meta.h's work
 * units) against the budget given at compile time; once it is spent every
 * later match fails and filter_exhausted() says so, so the caller answers
 * with an error rather than a partial list. */
#pragma once

#include "core/meta.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

struct filter;

/* Compiles FILTERS (a JSON object; NULL matches every peer) with a budget
 * of MAX_WORK units.  Returns -EINVAL with a message in *WHY (owned by
 * the caller, g_free) for an unknown operator or an ill-formed criterion. */
int filter_compile(json_object *filters, uint64_t max_work, struct filter **out, char **why);
bool filter_match(struct filter *f, const char *role, const struct meta *m);
/* True once the budget ran out: matches since then were refused. */
bool filter_exhausted(const struct filter *f);
/* Units spent so far. */
uint64_t filter_work(const struct filter *f);
void filter_free(struct filter *f);
