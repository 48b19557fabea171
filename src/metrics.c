#include "metrics.h"

struct metrics metrics;

static const char *const limit_names[LIMIT__COUNT] = {
	[LIMIT_MESSAGE_BYTES] = "max_message_bytes",
	[LIMIT_JSON_DEPTH] = "max_json_depth",
	[LIMIT_METADATA_BYTES] = "max_metadata_bytes",
	[LIMIT_QUEUED_BYTES] = "max_queued_bytes",
	[LIMIT_SESSIONS] = "max_sessions",
	[LIMIT_PEERS_PER_ROOM] = "max_peers_per_room",
};

const char *metrics_limit_name(enum metrics_limit l)
{
	return l < LIMIT__COUNT ? limit_names[l] : "unknown";
}
