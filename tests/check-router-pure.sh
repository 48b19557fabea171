#!/bin/sh
# The router is a pure core (src/core/router.h): router.c, registration.c,
# events.c and watch.c log, read clocks, verify, fetch, write and answer
# HTTP only through the services and the transport they are handed.  A direct call to any
# of those APIs here is a regression.  TAP.
# Usage: check-router-pure.sh [SRCDIR]
src=${1:-${G_TEST_SRCDIR:-$(dirname "$0")}/..}
# log_event/log_full/log_<level>(), GLib and POSIX clocks, metrics' clock,
# auth's network side, the room service and store, the loop, lws, MHD.
calls='(^|[^>.[:alnum:]_])(log_(event|full|err|warning|notice|info|debug)|g_get_(real|monotonic)_time|clock_gettime|time|metrics_now_ns|auth_(verify|await_keys|wait_cancel|required)|roomsvc_[a-z_]+|rooms_(create|create_key|delete|revoke_key|take_expired)|store_[a-z_]+|uv_[a-z_]+|lws_[a-z_]+|MHD_[a-z_]+|fetch_[a-z_]+)[[:space:]]*\('
files="core/router.c core/registration.c core/events.c core/watch.c"
echo "1..4"
status=0
n=0
for f in $files; do
	n=$((n + 1))
	if [ ! -r "$src/src/$f" ]; then
		echo "not ok $n - src/$f is missing"
		status=1
		continue
	fi
	hits=$(grep -nE "$calls" "$src/src/$f" | grep -vE '^[0-9]+:[[:space:]]*(/\*|\*)')
	if [ -z "$hits" ]; then
		echo "ok $n - src/$f calls no I/O, clock or logging API"
	else
		echo "not ok $n - src/$f calls an I/O, clock or logging API directly:"
		echo "$hits" | sed 's/^/# /'
		status=1
	fi
done
exit $status
