#!/bin/bash
# Issue 17: docs/protocol.md's browser example in headless Chromium, an
# aiortc peer and coturn against the real daemon (test-browsers.py, TAP).
# test-browsers.py exits 77 when chromium, chromium-driver,
# python3-selenium, coturn or python3-aiortc is missing, after a
# "1..0 # SKIP" plan that the TAP driver counts as skipped; 77 becomes 0
# here, as the TAP driver takes any other status for an error.
set -u
src=${G_TEST_SRCDIR:-$(dirname "$0")/..}
export RTCSIGNALD=${RTCSIGNALD:-src/rtcsignald}
# Debian's python3 (python3-selenium, python3-aiortc), not one on PATH first.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
run=(timeout 170 "$py" "$src/browser/test-browsers.py" "$@")
# In a network namespace of its own where it can have one (unprivileged:
# a user namespace too), with loopback as its only interface: the
# browsers' ICE candidates are then 127.0.0.1 only, and nothing can leave
# the machine.  Elsewhere it runs as it is (all its servers are on
# 127.0.0.1 anyway; a direct WebRTC pair may use the host's own address).
if [ -z "${RTCSIGNALD_BROWSERS_NETNS:-}" ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
	unshare -rn true 2>/dev/null; then
	RTCSIGNALD_BROWSERS_NETNS=1 unshare -rn sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
else
	"${run[@]}"
fi
rc=$?
[ "$rc" -eq 77 ] && exit 0
exit "$rc"
