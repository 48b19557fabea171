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
/* A fresh budget: a watch (core/watch.h) matches one peer at a time. */
void filter_rearm(struct filter *f);
void filter_free(struct filter *f);

/* For indexing watches: something a peer must have for F to match it.
 * ROLE: its role is KEY; TAG: it has tag KEY; KEY: it has public property
 * KEY; VALUE: property KEY equals VALUE, a string or a boolean. */
enum filter_anchor { FILTER_ANCHOR_ROLE, FILTER_ANCHOR_TAG, FILTER_ANCHOR_KEY, FILTER_ANCHOR_VALUE };
typedef void (*filter_anchor_fn)(enum filter_anchor kind, const struct meta_str *key,
				 const struct meta_value *value, void *data);
/* Calls FN for each anchor of the most selective criterion of F that has
 * them: F matches only peers that have at least one.  False, without a
 * call, when no criterion does (an empty filter, or only $ne, $nin,
 * $exists:false and null comparisons): F may match any peer. */
bool filter_anchors(const struct filter *f, filter_anchor_fn fn, void *data);
/* What F reads of a peer's metadata, beyond its role: FN for each
 * property it names, and once with a NULL key if it reads the tags. */
typedef void (*filter_read_fn)(const struct meta_str *key, void *data);
void filter_reads(const struct filter *f, filter_read_fn fn, void *data);
