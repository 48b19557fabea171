#!/bin/bash
# The Python example of docs/protocol.md, as printed there, against the
# real daemon on a free loopback port.  TAP.
set -u
src=${G_TEST_SRCDIR:-$(dirname "$0")}/..
daemon=${RTCSIGNALD:-src/rtcsignald}
echo "1..1"
py=
for p in /usr/bin/python3 python3; do
	if "$p" -c 'import websockets' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
	echo "ok 1 # SKIP python3-websockets is not installed"
	exit 0
fi
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait; rm -rf "$tmp"' EXIT
sed -n '/^```python$/,/^```$/{/^```/d;p}' "$src/docs/protocol.md" >"$tmp/example.py"
# Its own state directory: the default is the installed one (distcheck:
# files left after uninstall).
: >"$tmp/empty.conf"
"$daemon" --config "$tmp/empty.conf" --listen 127.0.0.1:0 --admin-listen "" --state-dir "$tmp/state" \
	2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/.*WebSocket listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log" | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "not ok 1 the daemon did not start"
	sed 's/^/# /' "$tmp/log"
	exit 1
fi
out=$(timeout 30 "$py" "$tmp/example.py" "ws://127.0.0.1:$port/" example 2>&1)
if grep -q "^worker-1 got {'app_message_type': 'job_request', 'job_id': '42'} from client-1$" <<<"$out"; then
	echo "ok 1 the Python example of docs/protocol.md"
else
	echo "not ok 1 the Python example of docs/protocol.md"
	sed 's/^/# /' <<<"$out"
	exit 1
fi
