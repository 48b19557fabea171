#!/bin/bash
# Each Python example of docs/protocol.md, as printed there and as its own
# program, against the real daemon on a free loopback port.  TAP.
set -u
src=${G_TEST_SRCDIR:-$(dirname "$0")}/..
daemon=${RTCSIGNALD:-src/rtcsignald}
doc=$src/docs/protocol.md
# The examples this script knows how to check, in the order printed.
checks=(check_job check_wait)
n=$(grep -c '^```python$' "$doc")
echo "1..$n"
py=
for p in /usr/bin/python3 python3; do
	if "$p" -c 'import websockets' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
	for i in $(seq "$n"); do echo "ok $i # SKIP python3-websockets is not installed"; done
	exit 0
fi
tmp=$(mktemp -d)
pid=
bg=()
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done; wait; rm -rf "$tmp"' EXIT
# Block I (1-based) into FILE.
extract() {
	awk -v want="$1" '/^```python$/ { k++; on = k == want; next } /^```$/ { on = 0 } on' "$doc" >"$2"
}
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
	for i in $(seq "$n"); do echo "not ok $i the daemon did not start"; done
	sed 's/^/# /' "$tmp/log"
	exit 1
fi
url="ws://127.0.0.1:$port/"

# Waits up to 20 s for a line matching PATTERN in FILE.
wait_line() {
	for _ in $(seq 200); do
		grep -q "$1" "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# The first example: a worker and a client, a filter and a job.
check_job() {
	timeout 30 "$py" "$1" "$url" example-job >"$tmp/out" 2>&1
	grep -q "^worker-1 got {'app_message_type': 'job_request', 'job_id': '42'} from client-1$" "$tmp/out"
}

# A worker for the waiting example: one too small, then a big one that
# registers busy and becomes available once the example waits; it prints
# the jobs it gets and ends after COUNT.
worker_py='
import asyncio, json, sys
import websockets

async def main(url, room, count):
    async def register(ws, peer, gb, status):
        await ws.send(json.dumps({"type": "register", "peer_id": peer, "room_id": room, "role": "worker",
                                  "metadata": {"properties": {"gpu_memory_gb": gb, "status": status}}}))
        while json.loads(await ws.recv())["type"] != "registered_auth":
            pass
    async with websockets.connect(url) as small, websockets.connect(url) as big:
        await register(small, "worker-small", 4, "available")
        await register(big, "worker-big", 24, "busy")
        await big.send(json.dumps({"type": "update_metadata", "metadata": {"properties": {"status": "available"}}}))
        got = 0
        while got < count:
            msg = json.loads(await asyncio.wait_for(big.recv(), timeout=20))
            if msg["type"] == "peer_message":
                print("worker-big got", msg["payload"], flush=True)
                got += 1

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
'

# The second example: it waits (nothing matches yet), the worker comes
# (peer_joined of its watch); run again, it finds the worker in the
# first answer.
check_wait() {
	timeout 30 "$py" "$1" "$url" example-wait >"$tmp/out" 2>&1 &
	local ex=$!
	bg+=("$ex")
	wait_line '^waiting for a worker' "$tmp/out" || return 1
	timeout 60 "$py" -c "$worker_py" "$url" example-wait 2 >"$tmp/worker" 2>&1 &
	local wk=$!
	bg+=("$wk")
	wait "$ex" || return 1
	grep -q "^found worker-big: 24 GiB, available$" "$tmp/out" || return 1
	timeout 30 "$py" "$1" "$url" example-wait >"$tmp/out2" 2>&1 || return 1
	cat "$tmp/out2" >>"$tmp/out"
	grep -q "^found worker-big: 24 GiB, available$" "$tmp/out2" || return 1
	! grep -q "^waiting" "$tmp/out2" || return 1
	wait "$wk" || return 1
	[ "$(grep -c "^worker-big got {'app_message_type': 'job_request', 'job_id': '43'}$" "$tmp/worker")" = 2 ]
}

status=0
for i in $(seq "$n"); do
	extract "$i" "$tmp/example-$i.py"
	check=${checks[i - 1]:-}
	: >"$tmp/out"
	: >"$tmp/worker"
	if [ -z "$check" ]; then
		echo "not ok $i Python example $i of docs/protocol.md: tests/check-examples.sh has no check for it"
		status=1
	elif "$check" "$tmp/example-$i.py"; then
		echo "ok $i Python example $i of docs/protocol.md ($check)"
	else
		echo "not ok $i Python example $i of docs/protocol.md ($check)"
		sed 's/^/# /' "$tmp/out" "$tmp/worker"
		status=1
	fi
done
exit $status
