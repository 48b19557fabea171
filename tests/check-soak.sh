#!/bin/bash
# Issue 16: the soak's short form (bench/soak, 20 s over wss:// with a
# reload every 5 s): descriptors back to baseline, RSS not growing
# clearly, every reload applied, no client errors.  TAP.
set -u
src=${G_TEST_SRCDIR:-$(dirname "$0")}/..
build=${G_TEST_BUILDDIR:-$(dirname "$0")}/..
if ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
	echo "1..0 # SKIP python3-websockets is not installed"
	exit 0
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
/usr/bin/python3 "$src/bench/soak" --build-dir "$build" --duration 20 --tls --check --tap --out "$out"
