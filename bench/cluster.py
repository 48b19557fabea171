"""bench/run's scenarios for several instances sharing a redis-server
(issue 14): cluster-relay, cluster-lag and cluster-peers.  See
bench/README.md and docs/performance.md, "Several instances".

Python only (asyncio and a minimal WebSocket client of its own, so no
module beyond the standard library): the figures that matter are the
servers' CPU from /proc and latencies compared within one run, where the
client's own cost is the same on both sides of each comparison.
"""

import asyncio
import base64
import json
import os
import re
import socket
import struct
import subprocess
import time

SCENARIOS = ["cluster-relay", "cluster-lag", "cluster-peers"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLUSTER_CONFIG = """[rooms]
store = redis
[cluster]
redis = redis://127.0.0.1:%d
key_prefix = bench:
instance_id = %s
instance_ttl = 2
"""


class Failure(Exception):
    pass


# ---- measurements ---------------------------------------------------------

def cpu_s(pid):
    """User plus system CPU seconds of PID so far (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def lat(values_s):
    us = [x * 1e6 for x in values_s]
    return {"p50": pct(us, 50), "p99": pct(us, 99), "p999": pct(us, 99.9), "max": max(us) if us else None}


# ---- a minimal WebSocket client (RFC 6455, text frames) -------------------

class WS:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def connect(cls, address):
        host, port = address.rsplit(":", 1)
        r, w = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (address, key)).encode())
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 20)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise Failure("handshake refused: %r" % head[:80])
        return cls(r, w)

    def send(self, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0xFF, n)
        mask = os.urandom(4)
        full = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(data, "big") ^ int.from_bytes(full, "big")).to_bytes(n, "big")
        self.w.write(head + mask + masked)

    async def recv_raw(self):
        """The next text message's bytes; answers pings, skips others."""
        while True:
            b0, b1 = await self.r.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.r.readexactly(8))[0]
            data = await self.r.readexactly(n)
            op = b0 & 0x0F
            if op == 0x8:
                raise Failure("closed by the server: %r" % data[:60])
            if op == 0x9:
                mask = os.urandom(4)
                self.w.write(struct.pack("!BB", 0x8A, 0x80 | len(data)) + mask +
                             bytes(c ^ mask[i % 4] for i, c in enumerate(data)))
                continue
            if op in (0x1, 0x0):
                return data

    async def expect(self, wanted, timeout=20, parse=True):
        """The next message of type WANTED; an error raises.  parse=False
        returns the raw bytes (registered_auth of a big room is large)."""
        tag = b'"type":"%s"' % wanted.encode()
        while True:
            data = await asyncio.wait_for(self.recv_raw(), timeout)
            if tag in data[:64] or tag in data:
                return json.loads(data) if parse else data
            if b'"type":"error"' in data[:64]:
                raise Failure("error: %s" % data[:200].decode(errors="replace"))

    def close(self):
        self.w.close()


async def register(address, room, peer, metadata=None, parse=False):
    ws = await WS.connect(address)
    msg = {"type": "register", "room_id": room, "peer_id": peer}
    if metadata:
        msg["metadata"] = metadata
    ws.send(msg)
    await ws.expect("registered_auth", parse=parse)
    return ws


async def gather_bounded(coros, limit=200):
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c
    return await asyncio.gather(*(one(c) for c in coros))


# ---- processes ------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        for _ in range(200):
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.025)
        self.stop()
        raise Failure("redis-server did not start")

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=10)
        return out.stdout

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"cmdstat_([a-z|_-]+):calls=(\d+)", self.cli("INFO", "commandstats"))}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def delta(before, after):
    # less the INFO that took the snapshot
    d = {k: after.get(k, 0) - before.get(k, 0) - (k == "info") for k in after}
    return {k: v for k, v in sorted(d.items()) if v}


def start_daemon(env, name, redis=None):
    conf = os.path.join(env.tmp, name + ".conf")
    with open(conf, "w") as f:
        f.write(env.base_config)
        if redis:
            f.write(CLUSTER_CONFIG % (redis.port, name))
    argv = [env.program(env.args, "src/rtcsignald"), "--listen", "127.0.0.1:0", "--admin-listen", "",
            "--state-dir", os.path.join(env.tmp, name + ".state"), "--config", conf]
    return env.Server(argv, os.path.join(env.tmp, name + ".log"))


async def until_seen(address, room, peer, timeout=10, filters=None):
    """Waits until discovery on ADDRESS in ROOM (with FILTERS: a room may
    be over discovery's 1,000) lists PEER (the instances see each other);
    returns the seconds it took."""
    t0 = time.monotonic()
    ws = await register(address, room, "probe-%d" % os.getpid())
    try:
        while time.monotonic() - t0 < timeout:
            ws.send({"type": "discover_peers", "filters": filters or {}})
            m = await ws.expect("peer_list")
            if any(p["peer_id"] == peer for p in m["peers"]):
                return time.monotonic() - t0
            await asyncio.sleep(0.02)
        raise Failure("%s never seen on %s" % (peer, address))
    finally:
        ws.close()


# ---- cluster-relay --------------------------------------------------------

async def relay(client_addr, worker_addr, tag, pairs, window, messages, payload):
    """PAIRS client/worker pairs (rooms TAG-i), clients on CLIENT_ADDR,
    workers on WORKER_ADDR; each worker echoes; WINDOW in flight per pair,
    MESSAGES round trips per pair.  Returns (round trips, seconds, rtts)."""
    workers = await gather_bounded(register(worker_addr, "%s-%d" % (tag, i), "w%s-%d" % (tag, i))
                                   for i in range(pairs))
    clients = await gather_bounded(register(client_addr, "%s-%d" % (tag, i), "c%s-%d" % (tag, i))
                                   for i in range(pairs))
    if client_addr != worker_addr:
        await until_seen(client_addr, "%s-0" % tag, "w%s-0" % tag)
    body = "x" * payload
    rtts = []

    async def echo(i, ws):
        for _ in range(messages):
            m = await ws.expect("peer_message")
            ws.send({"type": "peer_message", "to_peer_id": m["from_peer_id"], "payload": m["payload"]})

    async def drive(i, ws):
        sent = {}
        for k in range(min(window, messages)):
            sent[k] = time.monotonic()
            ws.send({"type": "peer_message", "to_peer_id": "w%s-%d" % (tag, i), "payload": {"k": k, "d": body}})
        nxt = min(window, messages)
        for _ in range(messages):
            m = await ws.expect("peer_message")
            k = m["payload"]["k"]
            rtts.append(time.monotonic() - sent.pop(k))
            if nxt < messages:
                sent[nxt] = time.monotonic()
                ws.send({"type": "peer_message", "to_peer_id": "w%s-%d" % (tag, i), "payload": {"k": nxt, "d": body}})
                nxt += 1
    return workers, clients, echo, drive, rtts


async def measured_relay(procs, client_addr, worker_addr, tag, a, stats=dict):
    workers, clients, echo, drive, rtts = await relay(client_addr, worker_addr, tag, a["pairs"],
                                                      a["window"], a["messages"], a["payload"])
    s0 = stats()
    cpu0 = {p: cpu_s(p) for p in procs}
    t0 = time.monotonic()
    await asyncio.gather(*(echo(i, w) for i, w in enumerate(workers)),
                         *(drive(i, c) for i, c in enumerate(clients)))
    elapsed = time.monotonic() - t0
    cpu = {p: cpu_s(p) - cpu0[p] for p in procs}
    calls = delta(s0, stats())  # the messages only: not registration, not closing
    for ws in workers + clients:
        ws.close()
    msgs = 2 * a["pairs"] * a["messages"]
    return {"messages": msgs, "seconds": elapsed, "messages_per_s": msgs / elapsed,
            "cpu_s": cpu, "cpu_us_per_message": sum(cpu.values()) * 1e6 / msgs, "rtt_us": lat(rtts), "redis_calls": calls}


def cluster_relay(env, a):
    redis = Redis(env.tmp)
    servers = []
    try:
        single = start_daemon(env, "single")
        servers.append(single)
        da = start_daemon(env, "a", redis)
        servers.append(da)
        db = start_daemon(env, "b", redis)
        servers.append(db)
        loop = asyncio.new_event_loop()
        one = loop.run_until_complete(measured_relay([single.pid], single.address, single.address, "s", a))
        across = loop.run_until_complete(measured_relay([da.pid, db.pid, redis.pid], da.address,
                                                        db.address, "x", a, redis.commandstats))
        # Same-instance relay and discovery on a cluster instance: the
        # Redis commands they cause should be only the background ones
        # (heartbeat and sweep), measured alone for as long just after.
        within = loop.run_until_complete(measured_relay([da.pid, db.pid, redis.pid], da.address,
                                                        da.address, "y", a, redis.commandstats))

        async def discover(n):
            ws = await register(da.address, "x-0", "disc")
            s2 = redis.commandstats()
            t0 = time.monotonic()
            for _ in range(n):
                ws.send({"type": "discover_peers"})
                await ws.expect("peer_list")
            took = time.monotonic() - t0
            s3 = redis.commandstats()
            ws.close()
            return took, delta(s2, s3)
        disc_s, disc_calls = loop.run_until_complete(discover(a["queries"]))
        s3 = redis.commandstats()
        idle_s = max(1.0, within["seconds"] + disc_s)
        time.sleep(idle_s)
        s4 = redis.commandstats()
        loop.close()
    finally:
        statuses = [s.stop() for s in servers]
        redis.stop()
    cross = across["redis_calls"]
    background = delta(s3, s4)
    return {"scenario": "cluster-relay", "op": "1 KiB peer_message", "single": one, "across": across,
            "within_cluster_instance": within,
            "cpu_ratio_across_over_single": across["cpu_us_per_message"] / one["cpu_us_per_message"],
            "redis_calls": {"across": cross, "across_per_message": sum(cross.values()) / across["messages"],
                            "publish_per_message": cross.get("publish", 0) / across["messages"],
                            "within": within["redis_calls"], "within_seconds": within["seconds"],
                            "discovery": disc_calls, "discovery_queries": a["queries"],
                            "discovery_seconds": disc_s,
                            "background_idle": background, "background_seconds": idle_s},
            "ops": across["messages"], "ops_per_s": across["messages_per_s"], "latency_us": across["rtt_us"],
            "server_proc": {"cpu_us_per_op": {"total": across["cpu_us_per_message"]}},
            "counts": {}, "completed": True, "server_exit": max(statuses)}


# ---- cluster-lag ----------------------------------------------------------

async def lag_run(addr_a, addr_b, n, rate, rooms):
    """N registrations on A at RATE/s (connections opened first), peer k
    in room lag-(k mod ROOMS); an observer per room on B keeps asking
    discovery for the ones not seen yet.  Rooms, so that the lag is not
    that of registered_auth listing one ever bigger room."""
    conns = await gather_bounded(WS.connect(addr_a) for _ in range(n))
    observers = [await register(addr_b, "lag-%d" % r, "observer") for r in range(rooms)]
    sent, seen = {}, {}
    done = asyncio.Event()

    async def observe(r, obs):
        low = r
        while not done.is_set() or any(k not in seen for k in range(r, len(sent), rooms)):
            obs.send({"type": "discover_peers", "filters": {"properties": {"seq": {"$gte": low}}}})
            m = await obs.expect("peer_list")
            now = time.monotonic()
            for p in m["peers"]:
                k = int(p["peer_id"][1:])
                seen.setdefault(k, now)
            while low in seen:
                low += rooms
            if done.is_set() and now - done.t > 10:
                break

    async def registrar():
        t0 = time.monotonic()
        for k, ws in enumerate(conns):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[k] = time.monotonic()
            ws.send({"type": "register", "room_id": "lag-%d" % (k % rooms), "peer_id": "p%d" % k,
                     "metadata": {"properties": {"seq": k}}})
        achieved = n / (time.monotonic() - t0)
        await asyncio.gather(*(ws.expect("registered_auth", parse=False) for ws in conns))
        done.t = time.monotonic()
        done.set()
        return achieved

    achieved = (await asyncio.gather(registrar(), *(observe(r, o) for r, o in enumerate(observers))))[0]
    for ws in conns + observers:
        ws.close()
    lags = [seen[k] - sent[k] for k in sent if k in seen]
    return achieved, lags, n - len(lags)


def cluster_lag(env, a):
    redis = Redis(env.tmp)
    servers = []
    try:
        da = start_daemon(env, "a", redis)
        servers.append(da)
        db = start_daemon(env, "b", redis)
        servers.append(db)
        loop = asyncio.new_event_loop()
        # both instances up and seeing each other first
        loop.run_until_complete(asyncio.sleep(0))
        achieved, lags, missing = loop.run_until_complete(
            lag_run(da.address, db.address, a["lag_registrations"], a["lag_rate"], a["lag_rooms"]))
        loop.close()
    finally:
        statuses = [s.stop() for s in servers]
        redis.stop()
    return {"scenario": "cluster-lag", "op": "register on a until discovery on b", "ops": len(lags),
            "ops_per_s": achieved, "target_rate": a["lag_rate"], "latency_us": lat(lags),
            "rooms": a["lag_rooms"], "missing": missing, "counts": {}, "completed": missing == 0, "server_exit": max(statuses)}


# ---- cluster-peers --------------------------------------------------------

async def hold(addrs, big, spread, room_size, tag):
    """BIG peers in room TAG-big and SPREAD peers in rooms of ROOM_SIZE,
    peer i of each room on instance i mod len(ADDRS)."""
    n = len(addrs)
    jobs = [register(addrs[i % n], tag + "-big", "%s-b%d" % (tag, i), {"properties": {"i": i}})
            for i in range(big)]
    jobs += [register(addrs[i % n], "%s-r%d" % (tag, i // room_size), "%s-s%d" % (tag, i))
             for i in range(spread)]
    return await gather_bounded(jobs, 64)


async def discovery_latency(addr, room, queries):
    ws = await register(addr, room, "disc-client")
    times, sizes = [], set()
    for _ in range(queries):
        t0 = time.monotonic()
        ws.send({"type": "discover_peers"})
        m = await ws.expect("peer_list")
        times.append(time.monotonic() - t0)
        sizes.add(len(m["peers"]))
    ws.close()
    return times, sorted(sizes)


def cluster_peers(env, a):
    out = {"scenario": "cluster-peers", "op": "discover_peers, room of %d" % a["big_room"],
           "big_room": a["big_room"], "spread_peers": a["spread_peers"], "counts": {}}
    redis = Redis(env.tmp)
    servers = []
    loop = asyncio.new_event_loop()
    try:
        ds = [start_daemon(env, name, redis) for name in ("a", "b", "c")]
        servers += ds
        rss0 = [rss_kib(d.pid) for d in ds]
        redis_rss0 = rss_kib(redis.pid)
        t0 = time.monotonic()
        conns = loop.run_until_complete(hold([d.address for d in ds], a["big_room"], a["spread_peers"], 20, "k"))
        out["register_seconds"] = time.monotonic() - t0
        total = a["big_room"] + a["spread_peers"]
        last = a["big_room"] - 1
        loop.run_until_complete(until_seen(ds[0].address, "k-big", "k-b%d" % last, 30,
                                           {"properties": {"i": last}}))
        per = [(total + 2 - i) // 3 for i in range(3)]
        out["instances"] = [{"peers": per[i], "rss_kib_before": rss0[i], "rss_kib_after": rss_kib(d.pid),
                             "bytes_per_peer": (rss_kib(d.pid) - rss0[i]) * 1024.0 / per[i]}
                            for i, d in enumerate(ds)]
        out["redis_bytes_per_peer"] = (rss_kib(redis.pid) - redis_rss0) * 1024.0 / total
        times, got = loop.run_until_complete(discovery_latency(ds[0].address, "k-big", a["queries"]))
        out["cluster_discovery_us"] = lat(times)
        out["results_per_query"] = got
        for ws in conns:
            ws.close()
    finally:
        statuses = [s.stop() for s in servers]
        redis.stop()
    try:
        single = start_daemon(env, "single")
        r0 = rss_kib(single.pid)
        conns = loop.run_until_complete(hold([single.address], a["big_room"], 0, 20, "o"))
        out["single_bytes_per_peer"] = (rss_kib(single.pid) - r0) * 1024.0 / a["big_room"]
        times, out["single_results_per_query"] = loop.run_until_complete(
            discovery_latency(single.address, "o-big", a["queries"]))
        out["single_discovery_us"] = lat(times)
        for ws in conns:
            ws.close()
    finally:
        statuses.append(single.stop())
        loop.close()
    out["discovery_p50_ratio"] = out["cluster_discovery_us"]["p50"] / out["single_discovery_us"]["p50"]
    out["discovery_p99_ratio"] = out["cluster_discovery_us"]["p99"] / out["single_discovery_us"]["p99"]
    out.update({"ops": a["queries"], "ops_per_s": None, "latency_us": out["cluster_discovery_us"],
                "completed": True, "server_exit": max(statuses)})
    return out


class Env:
    pass


def run(args, scenario, tmp, server_cls, program, base_config):
    """One cluster scenario; a result shaped like rtcsignal-bench's."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = Env()
    env.args, env.tmp, env.Server, env.program, env.base_config = args, tmp, server_cls, program, base_config
    if args.quick:
        a = dict(pairs=4, window=4, messages=200, payload=1024, queries=50, lag_registrations=200,
                 lag_rate=1000, lag_rooms=2, big_room=300, spread_peers=150)
    else:
        a = dict(pairs=20, window=8, messages=1000, payload=1024, queries=1000, lag_registrations=5000,
                 lag_rate=1000, lag_rooms=args.cluster_lag_rooms, big_room=args.cluster_big_room, spread_peers=args.cluster_spread_peers)
    result = {"cluster-relay": cluster_relay, "cluster-lag": cluster_lag,
              "cluster-peers": cluster_peers}[scenario](env, a)
    result["generator_exit"] = 0
    return result
