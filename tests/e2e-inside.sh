#!/bin/bash
# Runs inside the booted test container (e2e.service, see
# tests/e2e-systemd.sh): checks the installed rtcsignald package under the
# container's systemd.  Writes "ok - ..." or "FAIL - ..." per check, detail
# lines indented, and "done" at the end to $1.  Every wait is bounded.
set -u
out=${1:-/e2e/results}
: >"$out"
py=/usr/bin/python3
url=ws://127.0.0.1:8080/
client=/tmp/e2e-client.py

ok() { echo "ok - $*" >>"$out"; }
fail() { echo "FAIL - $*" >>"$out"; }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds; its output is
# kept as detail when it fails.
check() {
	local what=$1
	shift
	if "$@" >/tmp/check.out 2>&1; then
		ok "$what"
	else
		fail "$what"
		head -n 20 /tmp/check.out | sed 's/^/    /' >>"$out"
	fi
}
# wait_for SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
	local n=$(($1 * 10))
	shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	"$@"
}
svc() { systemctl show -p "$1" --value rtcsignald.service; }
is_state() { [ "$(systemctl is-active "$1")" = "$2" ]; }
journal_has() { # FIELD=VALUE...: some entry of the service has them all
	journalctl -u rtcsignald.service -o json --no-pager |
		"$py" -c 'import json, sys
want = dict(a.split("=", 1) for a in sys.argv[1:])
sys.exit(0 if any(all(e.get(k) == v for k, v in want.items())
                  for e in map(json.loads, sys.stdin)) else 1)' "$@"
}
count_reloaded() {
	journalctl -u rtcsignald.service -o json --no-pager MESSAGE_ID=14016d7f96324c1180dc1d7950104852 | wc -l
}
# ctl EXPECTED-STATUS ARGS...: rtcsignalctl ARGS, as root with the
# package's config; its output in /tmp/ctl.out and shown.
ctl() {
	local want=$1 rc
	shift
	timeout 20 rtcsignalctl "$@" >/tmp/ctl.out 2>/tmp/ctl.err
	rc=$?
	echo "rtcsignalctl $* -> $rc"
	cat /tmp/ctl.out /tmp/ctl.err
	[ "$rc" -eq "$want" ]
}
ctl_status() { # the table, then --json
	ctl 0 status && grep -q '^Health: *healthy$' /tmp/ctl.out &&
		grep -q '^Readiness: *ready$' /tmp/ctl.out && grep -qx "Version: *$version" /tmp/ctl.out &&
		grep -Eq '^Connections: *[0-9]+$' /tmp/ctl.out &&
		grep -qx 'Auth: *off: loopback clients only' /tmp/ctl.out &&
		ctl 0 status --json && "$py" -c 'import json, sys
o = json.load(open("/tmp/ctl.out"))
assert o["health"]["status"] == "healthy" and o["ready"]["status"] == "ready", o
assert o["health"]["version"] == sys.argv[1], o
assert isinstance(o["metrics"]["active_connections"], int), o' "$version"
}
ctl_rooms() { # create, list (table and JSON), delete
	local id
	ctl 0 rooms create --name e2e-lab --max-peers 2 --expires-in 1h || return
	id=$(sed -n 's/^Room ID: *//p' /tmp/ctl.out)
	[ -n "$id" ] && grep -Eq '^Token: *[0-9a-f]{32,}$' /tmp/ctl.out &&
		grep -q 'not shown again' /tmp/ctl.err &&
		ctl 0 rooms list && grep -Eq "^$id +e2e-lab +0 +2 " /tmp/ctl.out &&
		ctl 0 --json rooms list && "$py" -c 'import json, sys
rooms = {r["room_id"]: r for r in json.load(open("/tmp/ctl.out"))["rooms"]}
assert rooms[sys.argv[1]]["name"] == "e2e-lab" and rooms[sys.argv[1]]["max_peers"] == 2, rooms' "$id" &&
		ctl 0 rooms delete "$id" && grep -qx "Room $id deleted; 0 peers closed." /tmp/ctl.out &&
		ctl 1 rooms delete "$id" && grep -q 'HTTP 404' /tmp/ctl.err
}
ctl_keys() { # a room's API key: create, list, revoke
	local room key
	ctl 0 rooms create --name e2e-keys || return
	room=$(sed -n 's/^Room ID: *//p' /tmp/ctl.out)
	ctl 0 keys create --room "$room" --name ci --expires-in 1d || return
	key=$(sed -n 's/^Key ID: *//p' /tmp/ctl.out)
	[ -n "$key" ] && grep -q "^API key: *$key\." /tmp/ctl.out &&
		ctl 0 keys list && grep -Eq "^$key +$room +ci " /tmp/ctl.out &&
		ctl 0 keys revoke "$key" && grep -qx "Key $key revoked." /tmp/ctl.out &&
		ctl 0 rooms delete "$room"
}

# A small client for the checks that the documented example does not cover.
cat >"$client" <<'EOF'
import asyncio, json, sys, time
import websockets

async def expect(ws, wanted):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m["type"] in (wanted, "error"):
            return m

async def register(ws, room, peer, protocol=None):
    msg = {"type": "register", "room_id": room, "peer_id": peer}
    if protocol:
        msg["protocol"] = protocol
    await ws.send(json.dumps(msg))
    return await expect(ws, "registered_auth")

async def room_full(url):
    """Two registrations in one room: the second one's answer."""
    async with websockets.connect(url) as a, websockets.connect(url) as b:
        assert (await register(a, "full", "a"))["type"] == "registered_auth"
        m = await register(b, "full", "b")
        print(m.get("code", m["type"]))

async def hammer(url, seconds):
    """Connects, pings and closes in 3 loops for SECONDS; counts outcomes."""
    stats = {"ok": 0, "refused": 0, "other": 0}
    async def loop():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                async with websockets.connect(url, open_timeout=20, close_timeout=2) as ws:
                    await ws.send('{"type":"ping"}')
                    await expect(ws, "pong")
                stats["ok"] += 1
            except ConnectionRefusedError:
                stats["refused"] += 1
            except Exception as e:
                stats["other"] += 1
                print("other:", type(e).__name__, e, file=sys.stderr)
            await asyncio.sleep(0.02)
    await asyncio.gather(loop(), loop(), loop())
    print(json.dumps(stats))

async def hold(url, protocol):
    """Registers (declaring PROTOCOL unless it is 2.0), says so, and
    reports how the server ends the session."""
    async with websockets.connect(url) as ws:
        await register(ws, "stop", "holder" + protocol.replace(".", ""),
                       None if protocol == "2.0" else protocol)
        print("registered", flush=True)
        code = None
        try:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if m["type"] == "error":
                    code = m["code"]
        except websockets.ConnectionClosed:
            pass
        print("close", ws.close_code, code, flush=True)

cmd, args = sys.argv[1], sys.argv[2:]
asyncio.run({"room-full": room_full, "hammer": lambda u, s: hammer(u, float(s)),
             "hold": hold}[cmd](*args))
EOF

# Sockets: enabled and listening from the package's postinst; the service
# waits for its first connection.
check "rtcsignald.socket and rtcsignald-admin.socket are enabled" \
	test "$(systemctl is-enabled rtcsignald.socket rtcsignald-admin.socket | sort -u)" = enabled
check "both sockets are active" wait_for 10 eval 'is_state rtcsignald.socket active && is_state rtcsignald-admin.socket active'
check "listening on *:8080 and 127.0.0.1:8001" \
	eval 'ss -Hltn | grep -q "\*:8080 " && ss -Hltn | grep -q "127.0.0.1:8001 "'
check "the service is not started before a connection" eval '! is_state rtcsignald.service active'

# The first documented Python example, from the installed protocol reference.
awk '/^```python$/ { k++; on = k == 1; next } /^```$/ { on = 0 } on' /usr/share/doc/rtcsignald/protocol.md >/tmp/example.py
check "a connection to 8080 starts the service; two peers register, discover each other and exchange a message" \
	eval 'timeout 30 "$py" /tmp/example.py "$url" lab | tee /dev/stderr |
		grep -q "^worker-1 got {.app_message_type.: .job_request., .job_id.: .42.} from client-1$" &&
		is_state rtcsignald.service active'
check "StatusText is the daemon's STATUS line" \
	eval 'svc StatusText | tee /dev/stderr | grep -Eq "^[0-9]+ peers in [0-9]+ rooms, [0-9]+ msg/s$"'
check "journalctl -o json: MESSAGE_ID and RTCSIGNALD_* fields" \
	wait_for 5 journal_has MESSAGE_ID=2180d2758bec449892ad663d1d675932 \
	RTCSIGNALD_EVENT=peer_registered RTCSIGNALD_ROOM=lab RTCSIGNALD_PEER=worker-1
# Readable without -o verbose: the values in MESSAGE, and the catalog's
# @FIELD@ replaced by journalctl -x (issue 18, point 3).
check "journalctl -u rtcsignald (short output): peer, room, role and address in the message" \
	eval 'journalctl -u rtcsignald.service --no-pager -o short |
		grep -E "peer registered \[room=lab peer=worker-1 role=worker remote=127\.0\.0\.1\]$"'
check "journalctl -x: the catalog text with the entry's values, no field names" \
	eval 'journalctl -x -u rtcsignald.service --no-pager MESSAGE_ID=2180d2758bec449892ad663d1d675932 >/tmp/x.out;
		grep -q "from 127.0.0.1 registered as peer" /tmp/x.out && grep -q "worker-1 with role worker in room lab" /tmp/x.out &&
		! grep -q "@RTCSIGNALD_\|RTCSIGNALD_PEER" /tmp/x.out || { cat /tmp/x.out; false; }'
check "journalctl -o json: the ready event with its MESSAGE_ID" \
	journal_has MESSAGE_ID=6769361fd5e2402993acf351b44c4eca RTCSIGNALD_EVENT=ready
curl -fsS --max-time 10 http://127.0.0.1:8001/metrics >/tmp/metrics 2>&1
check "curl 127.0.0.1:8001/metrics: Prometheus text" \
	eval 'grep -q "^# TYPE rtcsignald_connections gauge$" /tmp/metrics &&
		grep -q "^rtcsignald_registrations_total{result=\"ok\"} [1-9]" /tmp/metrics'
version=$(dpkg-query -W -f '${Version}' rtcsignald)
version=${version%-*}
check "/health and --version report the package's version ($version)" \
	eval 'curl -fsS --max-time 10 http://127.0.0.1:8001/health | grep -q "\"version\":\"$version\"" &&
		test "$(rtcsignald --version)" = "rtcsignald $version"'
check "rtcsignald --help and rtcsignalctl --help in German with LANGUAGE=de" \
	eval 'LANGUAGE=de LANG=C.UTF-8 rtcsignald --help | grep -q "Konfiguration prüfen und beenden" &&
		LANGUAGE=de LANG=C.UTF-8 rtcsignalctl --help | grep -q "über seinen Admin-Port bedienen"'

# The CLI as packaged: rtcsignalctl finds the admin port in
# /etc/rtcsignald/rtcsignald.conf; status needs no token, the admin API
# does.
check "rtcsignalctl --version and its bash completion (rooms <TAB>: list create delete members add-member remove-member)" \
	eval 'test "$(rtcsignalctl --version)" = "rtcsignalctl $version" &&
		bash -c "source /usr/share/bash-completion/completions/rtcsignalctl &&
			COMP_WORDS=(rtcsignalctl rooms \"\") COMP_CWORD=2 && _rtcsignalctl &&
			test \"\${COMPREPLY[*]}\" = \"list create delete members add-member remove-member\""'
check "rtcsignalctl status and status --json: healthy, ready, version $version, auth mode, without a token" ctl_status
check "rtcsignalctl rooms list without an admin token: exit 77, says where to set one" \
	eval 'ctl 77 rooms list && grep -q "no admin token found; set \[admin\] token or token_file in /etc/rtcsignald/rtcsignald.conf" /tmp/ctl.err'
# Secrets as docs/operations.md says: root-only files handed to the
# service with LoadCredential= and named by relative token_file and
# secret_file.  The service gets credentials when it starts, so a restart,
# not a reload; rtcsignalctl, as root, reads the same file next to the
# config.  They stay until the purge, which removes them (issue 18).
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/etc/rtcsignald/admin-token
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/etc/rtcsignald/turn-secret
umask 022
mkdir -p /etc/systemd/system/rtcsignald.service.d
printf '[Service]\nLoadCredential=admin-token:/etc/rtcsignald/admin-token\nLoadCredential=turn-secret:/etc/rtcsignald/turn-secret\n' \
	>/etc/systemd/system/rtcsignald.service.d/override.conf
sed -i -e 's/^#token_file =$/token_file = admin-token/' -e 's/^#secret_file =$/secret_file = turn-secret/' \
	-e 's|^#turn_uris =$|turn_uris = turn:turn.example.org:3478|' /etc/rtcsignald/rtcsignald.conf
systemctl daemon-reload
timeout 40 systemctl restart rtcsignald
check "admin token and TURN secret by LoadCredential=, token_file = admin-token, then restart: rtcsignalctl rooms create, list, delete" \
	eval 'grep -qx "token_file = admin-token" /etc/rtcsignald/rtcsignald.conf &&
		grep -qx "secret_file = turn-secret" /etc/rtcsignald/rtcsignald.conf && ctl_rooms'
check "rtcsignalctl keys create, list, revoke" ctl_keys
check "rtcsignalctl with a wrong token: exit 77, refused" \
	eval 'RTCSIGNALD_ADMIN_TOKEN=not-the-token ctl 77 rooms list &&
		grep -q "refused the admin token from \$RTCSIGNALD_ADMIN_TOKEN" /tmp/ctl.err'

# Reload: one peer per room, then back; the process stays.
pid=$(svc MainPID)
reloads=$(count_reloaded)
cp /etc/rtcsignald/rtcsignald.conf /tmp/rtcsignald.conf
check "with every secret a credential, systemctl reload of the unchanged file succeeds" \
	eval 'timeout 20 systemctl reload rtcsignald &&
		wait_for 10 eval "[ \$(count_reloaded) -gt $reloads ]" && test "$(svc MainPID)" = "$pid"'
reloads=$(count_reloaded)
sed -i 's/^#max_peers_per_room = 1000$/max_peers_per_room = 1/' /etc/rtcsignald/rtcsignald.conf
check "systemctl reload applies a config change (max_peers_per_room = 1: ROOM_FULL)" \
	eval 'grep -q "^max_peers_per_room = 1$" /etc/rtcsignald/rtcsignald.conf &&
		timeout 20 systemctl reload rtcsignald &&
		wait_for 10 eval "[ \$(count_reloaded) -gt $reloads ]" &&
		test "$(timeout 20 "$py" "$client" room-full "$url")" = ROOM_FULL &&
		test "$(svc MainPID)" = "$pid"'
echo 'max_peers_per_room = lots' >>/etc/rtcsignald/rtcsignald.conf
check "systemctl reload of a bad configuration fails and says why; the daemon runs on" \
	eval '! timeout 20 systemctl reload rtcsignald 2>/tmp/reload.err &&
		journalctl -u rtcsignald.service --no-pager | grep -q "invalid configuration: .*max_peers_per_room" &&
		journalctl -u rtcsignald.service --no-pager | grep -q "keeps its running configuration" &&
		test "$(svc MainPID)" = "$pid" && test "$(svc ActiveState)" = active'
cp /tmp/rtcsignald.conf /etc/rtcsignald/rtcsignald.conf
timeout 20 systemctl reload rtcsignald
wait_for 10 eval "[ \$(count_reloaded) -gt $((reloads + 1)) ]"

pid=$(svc MainPID)

# Restart while clients keep connecting: the socket holds the backlog.
timeout 60 "$py" "$client" hammer "$url" 8 >/tmp/hammer.out 2>/tmp/hammer.err &
hammer=$!
sleep 2
timeout 40 systemctl restart rtcsignald
restart_rc=$?
wait $hammer
stats=$(tail -n 1 /tmp/hammer.out)
check "systemctl restart while clients keep connecting: no connection refused ($stats)" \
	eval 'echo "restart exit $restart_rc, MainPID $pid -> $(svc MainPID)";
		[ $restart_rc -eq 0 ] && [ "$(svc MainPID)" != "$pid" ] &&
		"$py" -c "import json, sys; s = json.loads(sys.argv[1]); sys.exit(not (s[\"refused\"] == 0 and s[\"ok\"] > 0))" "$stats" ||
		{ cat /tmp/hammer.err; false; }'

# Upgrade (the same package again, as dpkg runs an upgrade: postinst
# configure OLD-VERSION) while clients keep connecting: the sockets stay,
# the running service is restarted, nothing is refused.
pid=$(svc MainPID)
timeout 60 "$py" "$client" hammer "$url" 8 >/tmp/hammer.out 2>/tmp/hammer.err &
hammer=$!
sleep 2
DEBIAN_FRONTEND=noninteractive timeout 60 dpkg -i /e2e/rtcsignald_*.deb >/tmp/upgrade.out 2>&1
upgrade_rc=$?
wait $hammer
stats=$(tail -n 1 /tmp/hammer.out)
check "upgrade (dpkg -i) while clients keep connecting: service restarted, sockets kept, none refused ($stats)" \
	eval 'echo "dpkg exit $upgrade_rc, MainPID $pid -> $(svc MainPID)"; cat /tmp/upgrade.out;
		[ $upgrade_rc -eq 0 ] && [ "$(svc MainPID)" != "$pid" ] && [ "$(svc MainPID)" != 0 ] &&
		is_state rtcsignald.socket active && is_state rtcsignald-admin.socket active &&
		"$py" -c "import json, sys; s = json.loads(sys.argv[1]); sys.exit(not (s[\"refused\"] == 0 and s[\"ok\"] > 0))" "$stats" ||
		{ cat /tmp/hammer.err; false; }'

# Stop: a client that declared protocol 2.1 gets SERVER_SHUTTING_DOWN and
# close 1001; a v2.0 client (sleap-rtc) the close alone, as it reconnects
# on a close and would end for good on an error frame.
timeout 60 "$py" "$client" hold "$url" 2.1 >/tmp/hold21.out 2>&1 &
holder21=$!
timeout 60 "$py" "$client" hold "$url" 2.0 >/tmp/hold20.out 2>&1 &
holder20=$!
wait_for 10 grep -q registered /tmp/hold21.out
wait_for 10 grep -q registered /tmp/hold20.out
timeout 40 systemctl stop rtcsignald.service
wait $holder21 $holder20
check "systemctl stop: a 2.1 client gets SERVER_SHUTTING_DOWN and close 1001, a v2.0 client close 1001 alone" \
	eval 'grep -qx "close 1001 SERVER_SHUTTING_DOWN" /tmp/hold21.out && grep -qx "close 1001 None" /tmp/hold20.out ||
		{ cat /tmp/hold21.out /tmp/hold20.out; false; }'

# Stopped for good as docs/operations.md says: the sockets with the
# service, so that a probe (Prometheus, a load balancer) is refused
# instead of starting it again.
curl -fsS --max-time 10 http://127.0.0.1:8001/health >/dev/null
check "a probe of the admin port after systemctl stop rtcsignald starts it again (socket activation)" \
	is_state rtcsignald.service active
check "systemctl stop rtcsignald.socket rtcsignald-admin.socket rtcsignald.service: probes refused, nothing starts it" \
	eval 'timeout 40 systemctl stop rtcsignald.socket rtcsignald-admin.socket rtcsignald.service &&
		! curl -sS --max-time 5 http://127.0.0.1:8001/health && ! curl -sS --max-time 5 http://127.0.0.1:8080/ &&
		is_state rtcsignald.service inactive && is_state rtcsignald.socket inactive &&
		is_state rtcsignald-admin.socket inactive'
timeout 20 systemctl start rtcsignald.socket rtcsignald-admin.socket

# Two instances sharing the container's redis-server (issue 14): the
# packaged service as instance a, a second service with its own config
# and ports (8081, admin 8002) as instance b; a client on each, discovery
# sees both, messages cross both ways.
cat >/tmp/e2e-cluster.py <<'EOF'
import asyncio, json, sys, time
import websockets

async def expect(ws, wanted):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m["type"] == "error":
            raise RuntimeError(m)
        if m["type"] == wanted:
            return m

def ids(peers):
    return {p if isinstance(p, str) else p["peer_id"] for p in peers}

async def main(url_a, url_b):
    async with websockets.connect(url_a) as a, websockets.connect(url_b) as b:
        await a.send(json.dumps({"type": "register", "room_id": "cl", "peer_id": "on-a"}))
        await expect(a, "registered_auth")
        await b.send(json.dumps({"type": "register", "room_id": "cl", "peer_id": "on-b"}))
        seen = ids((await expect(b, "registered_auth"))["peer_list"])
        print("on-b registered, sees", sorted(seen))
        assert "on-a" in seen, seen
        end = time.monotonic() + 5  # replication lag: bounded poll
        while True:
            await a.send(json.dumps({"type": "discover_peers"}))
            found = ids((await expect(a, "peer_list"))["peers"])
            if "on-b" in found or time.monotonic() > end:
                break
            await asyncio.sleep(0.05)
        print("discovery on a sees", sorted(found))
        assert "on-b" in found, found
        await a.send(json.dumps({"type": "peer_message", "to_peer_id": "on-b", "payload": {"n": 1}}))
        m = await expect(b, "peer_message")
        assert m["from_peer_id"] == "on-a" and m["payload"] == {"n": 1}, m
        await b.send(json.dumps({"type": "peer_message", "to_peer_id": "on-a", "payload": {"n": 2}}))
        m = await expect(a, "peer_message")
        assert m["from_peer_id"] == "on-b" and m["payload"] == {"n": 2}, m
        print("crossed both ways")

asyncio.run(main(*sys.argv[1:3]))
EOF
cluster_conf() { # INSTANCE-ID: the package's config with [cluster] redis
	sed -e 's/^#store = sqlite$/store = redis/' -e 's|^#redis =$|redis = redis://127.0.0.1:6379|' \
		-e "s/^#instance_id =\$/instance_id = $1/" -e 's/^#instance_ttl = 10$/instance_ttl = 2/' \
		/tmp/rtcsignald.conf
}
cluster_metric() { # ADMIN-PORT METRIC-LINE-REGEX
	curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | grep -Eq "$2"
}
check "redis-server runs in the container" wait_for 20 is_state redis-server.service active
cluster_conf a >/etc/rtcsignald/rtcsignald.conf
cluster_conf b >/etc/rtcsignald/instance-b.conf
timeout 40 systemctl restart rtcsignald.service
timeout 40 systemd-run -q --unit=rtcsignald-b -p Type=notify -p DynamicUser=yes \
	-p StateDirectory=rtcsignald-b -p RuntimeDirectory=rtcsignald-b \
	-p LoadCredential=admin-token:/etc/rtcsignald/admin-token \
	-p LoadCredential=turn-secret:/etc/rtcsignald/turn-secret \
	/usr/sbin/rtcsignald -c /etc/rtcsignald/instance-b.conf \
	--listen 127.0.0.1:8081 --admin-listen 127.0.0.1:8002 >/tmp/run-b.out 2>&1
check "two instances with [cluster] redis: both ready, each sees two instances" \
	eval 'cat /tmp/run-b.out; is_state rtcsignald.service active && is_state rtcsignald-b.service active &&
		wait_for 10 eval "curl -fsS --max-time 5 http://127.0.0.1:8001/ready && curl -fsS --max-time 5 http://127.0.0.1:8002/ready" &&
		wait_for 10 eval "cluster_metric 8001 \"^rtcsignald_cluster_instances 2\$\" && cluster_metric 8002 \"^rtcsignald_cluster_instances 2\$\"" ||
		{ journalctl -u rtcsignald.service -u rtcsignald-b.service --no-pager | tail -n 20; false; }'
check "a client on each instance: registration and discovery see both, peer_message crosses both ways" \
	eval 'timeout 40 "$py" /tmp/e2e-cluster.py "$url" ws://127.0.0.1:8081/'
check "the crossing counted: rtcsignald_cluster_up 1 and forwarded/received on both instances" \
	eval 'for p in 8001 8002; do curl -fsS --max-time 5 http://127.0.0.1:$p/metrics | grep "^rtcsignald_cluster_\(up\|forwarded_total\|received_total\)"; done;
		cluster_metric 8001 "^rtcsignald_cluster_up 1\$" && cluster_metric 8002 "^rtcsignald_cluster_up 1\$" &&
		cluster_metric 8001 "^rtcsignald_cluster_forwarded_total [1-9]" && cluster_metric 8002 "^rtcsignald_cluster_received_total [1-9]" &&
		cluster_metric 8002 "^rtcsignald_cluster_forwarded_total [1-9]" && cluster_metric 8001 "^rtcsignald_cluster_received_total [1-9]"'
timeout 40 systemctl stop rtcsignald-b.service rtcsignald.service
cp /tmp/rtcsignald.conf /etc/rtcsignald/rtcsignald.conf
rm -f /etc/rtcsignald/instance-b.conf

# Purge: the package, its units, its config and its state go.
check "before the purge: the state directory, the credential files and the drop-in exist" \
	eval 'test -d /var/lib/private/rtcsignald && test -s /etc/rtcsignald/admin-token &&
		test -s /etc/systemd/system/rtcsignald.service.d/override.conf'
check "apt-get purge rtcsignald" \
	eval 'DEBIAN_FRONTEND=noninteractive timeout 120 apt-get purge -y -q rtcsignald'
check "after the purge: no daemon, config (nor the guide's admin-token and drop-in), state, units or listening socket" \
	eval '! dpkg -s rtcsignald 2>/dev/null | grep -q "^Status: install" &&
		! test -e /usr/sbin/rtcsignald && ! test -e /etc/rtcsignald &&
		! test -e /etc/systemd/system/rtcsignald.service.d &&
		! test -e /var/lib/rtcsignald && ! test -e /var/lib/private/rtcsignald &&
		! systemctl list-unit-files "rtcsignald*" --no-legend | grep -q . &&
		! ss -Hltn | grep -Eq ":(8080|8001) "'
echo done >>"$out"
