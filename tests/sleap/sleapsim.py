"""A stand-in for today's sleap-rtc worker and client (talmolab/sleap-rtc at
c81005d), written from a study of their wire behaviour (no code of theirs):
the frames they send, in their order and shape, and how they react to what
the server sends.  Plus a runner for the real rtcsignald on loopback.

Nothing here sleeps to assert: tests await conditions with wait_until(),
which wakes on every state change of any simulated peer or daemon log line.
Everything speaks to 127.0.0.1 only.
"""
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import websockets

# ---------------------------------------------------------------- waiting

_waiters = []


def changed():
    """Wakes every wait_until() to re-check its condition."""
    global _waiters
    ws, _waiters = _waiters, []
    for f in ws:
        if not f.done():
            f.set_result(None)


async def wait_until(pred, timeout, what):
    """Awaits PRED() becoming true; AssertionError naming WHAT after TIMEOUT s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        f = loop.create_future()
        _waiters.append(f)
        try:
            await asyncio.wait_for(f, left)
        except asyncio.TimeoutError:
            pass


def log(*a):
    print("#", *a, flush=True)


# ---------------------------------------------------------------- HTTP

async def http(port, method, path, headers=None, body=None, timeout=5.0):
    """One HTTP/1.1 request to 127.0.0.1:PORT: (status, body text).  Raises
    (OSError, asyncio.TimeoutError, ValueError) when the connection is
    refused, reset or closed without an answer, as requests would."""
    async def go():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            data = b"" if body is None else (body if isinstance(body, bytes) else
                                              json.dumps(body).encode())
            h = {"Host": "127.0.0.1:%d" % port, "Connection": "close",
                 "Content-Length": str(len(data)), "User-Agent": "python-requests/2.31.0",
                 "Accept": "*/*"}
            if body is not None and not isinstance(body, bytes):
                h["Content-Type"] = "application/json"
            h.update(headers or {})
            req = "%s %s HTTP/1.1\r\n" % (method, path)
            req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
            w.write(req.encode() + data)
            await w.drain()
            raw = await r.read()
        finally:
            w.close()
        if not raw:
            raise ConnectionResetError("connection closed without an answer")
        head, _, rest = raw.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        if not m:
            raise ValueError("not an HTTP answer: %r" % raw[:80])
        return int(m.group(1)), rest.decode("utf-8", "replace")
    return await asyncio.wait_for(go(), timeout)


def http_port(url):
    m = re.match(r"https?://127\.0\.0\.1:(\d+)", url)
    assert m, url
    return int(m.group(1))


# ---------------------------------------------------------------- daemon

class Daemon:
    """The real rtcsignald: its own config and state directory, stderr
    captured.  With SOCKETS (listening ws, admin), they are passed as systemd
    passes them (LISTEN_FDS, LISTEN_FDNAMES=ws:admin, LISTEN_PID), so they
    outlive the process like rtcsignald.socket does across a restart.  With
    ACTIVATE too, systemd-socket-activate (when installed) receives them and
    starts the daemon on the first connection, as the socket unit does; it
    cannot hold them across its child's exit itself (it execs the daemon),
    so the caller holds them."""

    def __init__(self, conf="", sockets=None, state_dir=None, tmp=None, activate=False):
        self.tmp = tmp or tempfile.mkdtemp(prefix="sleapsim-")
        self.conf_path = os.path.join(self.tmp, "rtcsignald.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.state = state_dir or os.path.join(self.tmp, "state")
        self.sockets = sockets
        self.activated = False
        self.lines = []
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        binary = os.environ.get("RTCSIGNALD", "src/rtcsignald")
        argv = [binary, "--config", self.conf_path, "--log-level", "debug",
                "--state-dir", self.state]
        wrapper = os.environ.get("RTCSIGNALD_WRAPPER", "").split()
        env = dict(os.environ)
        pass_fds = ()
        if sockets:
            ws, adm = sockets
            # A tiny exec wrapper puts them at 3 and 4 with LISTEN_PID = its
            # own pid, which exec keeps.
            shim = ("import fcntl,os,sys\n"
                    "a=fcntl.fcntl(int(sys.argv[1]),fcntl.F_DUPFD,64)\n"
                    "b=fcntl.fcntl(int(sys.argv[2]),fcntl.F_DUPFD,64)\n"
                    "os.dup2(a,3);os.dup2(b,4);os.close(a);os.close(b)\n"
                    "os.environ['LISTEN_PID']=str(os.getpid())\n"
                    "os.execvp(sys.argv[3],sys.argv[3:])\n")
            tool = shutil.which("systemd-socket-activate") if activate else None
            self.activated = tool is not None
            if tool:
                wrapper = [tool, "--fdname=ws:admin"] + wrapper
            argv = [sys.executable, "-c", shim, str(ws.fileno()), str(adm.fileno())] + wrapper + argv
            env.update(LISTEN_FDS="2", LISTEN_FDNAMES="ws:admin")
            pass_fds = (ws.fileno(), adm.fileno())
            self.port = ws.getsockname()[1]
            self.admin_port = adm.getsockname()[1]
        else:
            argv = wrapper + argv + ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
            self.port = self.admin_port = None
            for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
                env.pop(k, None)
        self.proc = subprocess.Popen(argv, env=env, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            self.loop.call_soon_threadsafe(changed)
        self.loop.call_soon_threadsafe(changed)

    def count(self, needle):
        with self.lock:
            return sum(needle in line for line in self.lines)

    def text(self):
        with self.lock:
            return "\n".join(self.lines)

    async def ready(self, timeout=20):
        if self.activated:
            # The first connection starts it (one made here, or a client's).
            await wait_until(lambda: self.count("Listening on") >= 2 or self.proc.poll() is not None,
                             timeout, "systemd-socket-activate listening")
            _r, w = await asyncio.open_connection("127.0.0.1", self.port)
            w.close()
        await wait_until(lambda: self.count("event=ready") > 0 or self.proc.poll() is not None,
                         timeout, "the daemon's event=ready")
        if self.proc.poll() is not None:
            raise AssertionError("the daemon exited (%s):\n%s" % (self.proc.returncode, self.text()))
        if self.port is None:
            self.port = int(re.search(r"WebSocket listening on 127\.0\.0\.1:(\d+)", self.text()).group(1))
            self.admin_port = int(re.search(r"admin listening on 127\.0\.0\.1:(\d+)", self.text()).group(1))
        return self

    @property
    def url(self):
        return "ws://127.0.0.1:%d/" % self.port

    @property
    def http_url(self):
        """Where sleap-rtc's SLEAP_RTC_SIGNALING_HTTP points: the WebSocket
        port (the issue puts /delete-peer and the key endpoints there)."""
        return "http://127.0.0.1:%d" % self.port

    async def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await loop.run_in_executor(None, self.proc.wait)
            raise AssertionError("the daemon did not stop within %d s" % timeout)
        await loop.run_in_executor(None, self.reader.join, 5)
        return self.proc.returncode

    async def admin(self, token, method, path, body=None, want=None):
        st, text = await http(self.admin_port, method, path,
                              {"Authorization": "Bearer " + token}, body)
        if want is not None and st != want:
            raise AssertionError("admin %s %s: %d, wanted %d: %s" % (method, path, st, want, text))
        return st, (json.loads(text) if text.strip().startswith(("{", "[")) else text)


def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.set_inheritable(True)
    return s


# ---------------------------------------------------------------- worker

FAKE_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" \
           "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n" \
           "a=ice-ufrag:sim1\r\na=ice-pwd:simsimsimsimsimsimsimsimsi\r\na=setup:%s\r\n"

ICE_SERVER_KEYS = {"urls", "username", "credential", "credentialType"}


class SimWorker:
    """`sleap-rtc worker`: one process, one fixed peer id reused on every
    reconnect, `is_admin:true` claimed on every register, `api_key` always
    sent, `room_id` only when a room was given.  Its main loop ends the
    process on ANY `error` frame; a 1000/1001 close reconnects at once, any
    other close or failure after 1, 2, 4, ... 300 s (times BACKOFF_SCALE).
    An admin (and a demoted worker's second socket) only logs errors."""

    def __init__(self, url, http_url, api_key, room_id=None, metadata=None, hostname="labgpu01",
                 backoff_scale=0.05, name=None):
        self.url, self.http_url, self.api_key, self.room_arg = url, http_url, api_key, room_id
        self.name = name or "sim-worker"
        self.peer_id = "worker-%s-%s-%s" % (api_key[4:12], hostname[:8], secrets.token_hex(3))
        self.scale = backoff_scale
        self.props = {"gpu_memory_mb": 24576, "gpu_model": "NVIDIA RTX A5000",
                      "sleap_version": "1.4.1", "sleap_nn_version": "0.1.0", "cuda_version": "12.4",
                      "hostname": hostname, "worker_name": self.name, "status": "available",
                      "max_concurrent_jobs": 1, "supported_models": ["unet", "centroid"],
                      "supported_job_types": ["training", "inference"], "mounts": []}
        if metadata:
            self.props.update(metadata)
        self.room_id = None          # from registered_auth
        self.shutting_down = False
        self.ended = False           # the process is over for good
        self.end_reason = None
        self.exit_code = None        # 1: a traceback from an unanswered /delete-peer
        self.peer_id_for_cleanup = self.peer_id
        self.is_admin = False
        self.admin_peer_id = None
        self.mesh_initialized = False
        self.main_ws = None          # the reconnect loop's socket (the main loop reads it)
        self.ws = None               # worker.websocket / state_manager.websocket
        self.mesh_ws = None          # mesh_coordinator.websocket
        self.sockets = []            # every socket opened, to close at exit
        self.tasks = []
        self.connects = 0            # successful main-socket connections
        self.registered = []         # (socket label, registered_auth frame)
        self.errors = []             # (socket label, error frame)
        self.main_closes = []        # close codes seen by the main socket
        self.backoffs = []           # unscaled seconds slept before reconnects
        self.loop_exceptions = []
        self.unhandled = []
        self.offers = []
        self.answers_sent = []
        self.rejections_sent = []
        self.delete_results = []     # HTTP status or the exception text
        self.answer_gate = None      # an asyncio.Event: the answer waits for it (ICE gathering)
        self.mesh_answers = []

    # -- what it sends

    def _metadata(self, mounts=True):
        props = dict(self.props)
        if not mounts:
            props.pop("mounts", None)
        return {"tags": ["sleap-rtc", "training-worker", "inference-worker"], "properties": props}

    def _first_register(self):
        m = {"type": "register", "peer_id": self.peer_id, "role": "worker", "is_admin": True,
             "metadata": self._metadata(), "api_key": self.api_key}
        if self.room_arg:
            m["room_id"] = self.room_arg
        return m

    def _mesh_register(self, is_admin):
        return {"type": "register", "peer_id": self.peer_id, "room_id": self.room_id,
                "token": None, "api_key": self.api_key, "role": "worker", "is_admin": is_admin,
                "metadata": self._metadata()}

    async def _send(self, ws, msg):
        await ws.send(json.dumps(msg))

    # -- life

    def start(self):
        self.tasks.append(asyncio.ensure_future(self.run()))
        return self

    async def run(self):
        attempt = 0
        try:
            while not self.shutting_down:
                try:
                    if attempt > 0:
                        backoff = min(2 ** (attempt - 1), 300)
                        self.backoffs.append(backoff)
                        changed()
                        await asyncio.sleep(backoff * self.scale)
                    async with websockets.connect(self.url, open_timeout=20) as ws:
                        self.main_ws = self.ws = ws
                        self.sockets.append(ws)
                        attempt = 0
                        self.connects += 1
                        changed()
                        await self._send(ws, self._first_register())
                        await self._main_loop(ws)
                    # "Signaling connection ended. Reconnecting..."
                except websockets.ConnectionClosed as e:
                    self.main_closes.append(e.code)
                    attempt += 1
                except OSError:
                    attempt += 1
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the loop's own failures (see _main_loop)
                    self.loop_exceptions.append(repr(e))
                    attempt += 1
                changed()
        finally:
            if not self.ended:
                await self.clean_exit("reconnect loop ended")

    async def _main_loop(self, ws):
        async for raw in ws:
            data = json.loads(raw)   # a bad frame raises, and the loop reconnects
            t = data.get("type")
            if t == "offer":
                if self.is_admin:
                    continue     # the admin loop answers
                await self._handle_offer(ws, data)
            elif t == "registered_auth":
                self._registered("main", data)
                if not self.mesh_initialized:
                    self.mesh_initialized = True
                    self.mesh_ws = ws
                    self.admin_peer_id = data.get("admin_peer_id")
                    self.is_admin = self.admin_peer_id in (None, self.peer_id)
                    if not self.is_admin:
                        await self._mesh_connect(ws)
                elif self.is_admin:
                    self.mesh_ws = ws
                if self.is_admin:
                    # The main loop hands the socket to the admin loop and
                    # returns when it ends, whatever the close code.
                    await self._admin_loop(ws, "main")
                    return
            elif t in ("mesh_offer", "mesh_answer", "ice_candidate"):
                await self._mesh_frame(ws, data)
            elif t == "admin_conflict":
                self.is_admin = False
                self.admin_peer_id = data.get("current_admin")
                changed()
                if self.mesh_initialized and self.mesh_ws is not None:
                    await self.on_admin_demotion()
            elif t == "candidate":
                raise TypeError("addIceCandidate() of a dict")
            elif t == "error":
                self.errors.append(("main", data))
                log("%s: Error received from server: %s" % (self.peer_id, data.get("reason")))
                await self.clean_exit("error frame on the main socket: %s" % json.dumps(data))
                return
            elif t == "quit":
                await self.clean_exit("quit")
                return
            elif t == "peer_message":
                pass
            elif t == "metadata_updated":
                _ = data["metadata"]["properties"]["status"]
            elif t == "ping":
                self.last_ping = time.monotonic()
            else:
                self.unhandled.append(t)
            changed()

    def _registered(self, label, data):
        for e in data.get("ice_servers", []) + data.get("mesh_ice_servers", []):
            bad = set(e) - ICE_SERVER_KEYS  # RTCIceServer(**entry)
            if bad:
                raise TypeError("RTCIceServer() got unexpected keyword(s) %s" % sorted(bad))
        if data.get("room_id"):
            self.room_id = data["room_id"]
        self.registered.append((label, data))
        changed()

    async def _handle_offer(self, ws, data):
        self.offers.append(data)
        changed()
        status = self.props["status"]
        if status in ("busy", "reserved"):
            rej = {"type": "error", "target": data.get("sender"), "reason": "worker_busy",
                   "message": "Worker is currently %s. Please try another worker." % status,
                   "current_status": status}
            await self._send(self.ws, rej)
            self.rejections_sent.append(rej)
            changed()
            return
        await self.set_status("reserved")
        if self.answer_gate is not None:
            await self.answer_gate.wait()
        ans = {"type": "answer", "sender": self.peer_id, "target": data.get("sender"),
               "sdp": FAKE_SDP % "active"}
        await self._send(self.ws, ans)
        self.answers_sent.append(ans)
        changed()

    async def set_status(self, status, **extra):
        """update_metadata on a status change (no tags)."""
        self.props["status"] = status
        props = {"status": status}
        props.update(extra)
        await self._send(self.ws, {"type": "update_metadata", "peer_id": self.peer_id,
                                   "metadata": {"properties": props}})

    async def ice_ended(self):
        """The client's ICE connection closed or failed: available again,
        re-registered on the socket it has (the server moves it)."""
        self.props["status"] = "available"
        m = {"type": "register", "peer_id": self.peer_id, "role": "worker",
             "metadata": self._metadata(mounts=False)}
        if self.is_admin:
            m["is_admin"] = True
        m["api_key"] = self.api_key
        m["room_id"] = self.room_id
        await self._send(self.ws, m)

    async def _mesh_connect(self, ws):
        if self.admin_peer_id and self.admin_peer_id != self.peer_id:
            await self._send(ws, {"type": "mesh_connect", "from_peer_id": self.peer_id,
                                  "target_peer_id": self.admin_peer_id,
                                  "offer": {"sdp": FAKE_SDP % "actpass", "type": "offer"}})

    async def _mesh_frame(self, ws, data):
        if data.get("type") == "mesh_offer" and self.is_admin:
            await self._send(ws, {"type": "mesh_answer", "from_peer_id": self.peer_id,
                                  "target_peer_id": data.get("from_peer_id"),
                                  "answer": {"sdp": FAKE_SDP % "active", "type": "answer"}})
        elif data.get("type") == "mesh_answer":
            self.mesh_answers.append(data)

    async def _admin_loop(self, ws, label):
        """The admin's reader: errors logged only, per-frame failures
        ignored; ends when the socket closes (any code)."""
        try:
            async for raw in ws:
                try:
                    data = json.loads(raw)
                    t = data.get("type")
                    if t == "registered_auth":
                        self._registered(label, data)
                    elif t == "offer":
                        await self._handle_offer(ws, data)
                    elif t in ("mesh_offer", "ice_candidate", "candidate"):
                        await self._mesh_frame(ws, data)
                    elif t == "admin_conflict":
                        self.is_admin = False
                        self.admin_peer_id = data.get("current_admin")
                        await self.on_admin_demotion()
                        return
                    elif t == "error":
                        self.errors.append((label, data))
                    elif t == "ping":
                        self.last_ping = time.monotonic()
                    changed()
                except websockets.ConnectionClosed:
                    raise
                except Exception as e:
                    self.loop_exceptions.append("admin loop: %r" % e)
        except websockets.ConnectionClosed:
            pass
        changed()

    async def _demoted_loop(self, ws, label):
        try:
            async for raw in ws:
                data = json.loads(raw)
                t = data.get("type")
                if t == "registered_auth":
                    self._registered(label, data)
                elif t == "mesh_answer":
                    self.mesh_answers.append(data)
                elif t == "error":
                    self.errors.append((label, data))
                changed()
        except websockets.ConnectionClosed:
            pass
        changed()

    async def _second_socket(self, is_admin):
        ws = await websockets.connect(self.url, open_timeout=20)
        self.sockets.append(ws)
        self.mesh_ws = self.ws = ws
        await self._send(ws, self._mesh_register(is_admin))
        return ws

    async def on_admin_promotion(self):
        """The mesh elected this worker after the admin left: a SECOND
        socket registers the same peer id as admin; the first stays open
        and its main loop keeps reading it."""
        self.is_admin = True
        self.admin_peer_id = self.peer_id
        try:
            ws = await self._second_socket(True)
            self.tasks.append(asyncio.ensure_future(self._admin_loop(ws, "promoted")))
        except Exception as e:  # logged only
            self.loop_exceptions.append("promotion: %r" % e)
        changed()

    async def on_admin_demotion(self):
        old, self.mesh_ws = self.mesh_ws, None
        if old is not None:
            await old.close()
        if not self.admin_peer_id or self.admin_peer_id == self.peer_id:
            return
        try:
            ws = await self._second_socket(False)
            self.tasks.append(asyncio.ensure_future(self._demoted_loop(ws, "demoted")))
            await self._mesh_connect(ws)
        except Exception as e:  # logged only
            self.loop_exceptions.append("demotion: %r" % e)
        changed()

    async def clean_exit(self, reason):
        if self.ended:
            return
        self.shutting_down = True
        self.ended = True
        self.end_reason = reason
        log("%s ends: %s" % (self.peer_id, reason))
        for ws in self.sockets:
            try:
                await asyncio.wait_for(ws.close(), 2)
            except Exception:
                pass
        # POST /delete-peer; a refused, reset or unanswered request raises,
        # and the finally of run_worker posts again and dies with exit 1.
        self.exit_code = 0
        for _ in range(2):
            try:
                st, _body = await http(http_port(self.http_url), "POST", "/delete-peer",
                                       body={"peer_id": self.peer_id_for_cleanup})
                self.delete_results.append(st)
                self.peer_id_for_cleanup = None
                break
            except Exception as e:
                self.delete_results.append("%s: %s" % (type(e).__name__, e))
                self.exit_code = 1
        changed()

    async def leave(self):
        """Ctrl-C: the worker's own exit (admin or not)."""
        await self.clean_exit("left")
        await self.cancel()

    async def cancel(self):
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me and not t.done():
                t.cancel()
        for t in self.tasks:
            if t is not me:
                try:
                    await t
                except BaseException:
                    pass
        for ws in self.sockets:
            try:
                ws.transport.abort()
            except Exception:
                pass

    def registered_count(self):
        return len(self.registered)


# ---------------------------------------------------------------- client

class SimClient:
    """`sleap-rtc train`: one socket, no reconnect.  Registers with `jwt`
    and `"token":""`, discovers with `room_id` inside `filters`, offers
    without `role`, ignores every error (and ping), ends its session when
    the socket closes, and POSTs /delete-peer twice when it exits."""

    def __init__(self, url, http_url, username, jwt, room_id, protocol=None):
        self.url, self.http_url, self.peer_id, self.jwt, self.room_id = url, http_url, username, jwt, room_id
        self.protocol = protocol
        self.ws = None
        self.frames = []
        self.errors = []
        self.answers = []
        self.registered = None
        self.session_ended = False
        self.close_code = None
        self.delete_results = []
        self.killed = False
        self._queue = asyncio.Queue()
        self.reader = None

    async def connect(self):
        self.ws = await websockets.connect(self.url)
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                self.frames.append(data)
                t = data.get("type")
                if t == "answer":
                    self.answers.append(data)
                elif t in ("registered_auth", "peer_list"):
                    await self._queue.put(data)
                elif t == "error":
                    self.errors.append(data)   # "Unhandled message type"
                changed()
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self.session_ended = True
        changed()
        if not self.killed:
            # run_client: the socket closed, so the session is over; it
            # posts /delete-peer, and clean_exit posts it again.
            for _ in range(2):
                try:
                    st, _b = await http(http_port(self.http_url), "POST", "/delete-peer",
                                        body={"peer_id": self.peer_id})
                    self.delete_results.append(st)
                except Exception as e:
                    self.delete_results.append("%s: %s" % (type(e).__name__, e))
            changed()

    async def _next(self, want, timeout=5):
        try:
            while True:
                m = await asyncio.wait_for(self._queue.get(), timeout)
                if m.get("type") == want:
                    return m
        except asyncio.TimeoutError:
            return None

    async def register(self):
        m = {"type": "register", "peer_id": self.peer_id, "room_id": self.room_id, "token": "",
             "role": "client",
             "metadata": {"tags": ["sleap-rtc", "training-client"],
                          "properties": {"sleap_version": "1.4.1", "platform": "Linux",
                                         "user_id": self.peer_id}},
             "jwt": self.jwt}
        if self.protocol:
            m["protocol"] = self.protocol
        await self.ws.send(json.dumps(m))
        self.registered = await self._next("registered_auth")  # 5 s, then it goes on
        return self.registered

    async def discover(self, gpu_memory_mb=None):
        props = {"status": "available"}
        if gpu_memory_mb:
            props["gpu_memory_mb"] = {"$gte": gpu_memory_mb}
        await self.ws.send(json.dumps({"type": "discover_peers", "from_peer_id": self.peer_id,
                                       "filters": {"role": "worker", "room_id": self.room_id,
                                                   "tags": ["sleap-rtc"], "properties": props}}))
        pl = await self._next("peer_list")
        return [] if pl is None else pl.get("peers", [])

    async def offer(self, target):
        await self.ws.send(json.dumps({"type": "offer", "sender": self.peer_id, "target": target,
                                       "sdp": FAKE_SDP % "actpass"}))

    async def exit(self):
        """The CLI's exit: the socket closes, the session ends (and posts
        /delete-peer twice)."""
        if self.ws is not None and not self.session_ended:
            await self.ws.close()
        if self.reader is not None:
            await self.reader

    async def vanish(self):
        """The process is killed: the kernel drops the TCP connection."""
        self.killed = True
        self.ws.transport.abort()
        if self.reader is not None:
            await self.reader


# ---------------------------------------------------------------- credentials

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Issuer:
    """A JWT issuer: an RSA key, its JWKS in a file the daemon reads, and
    RS256 tokens for any subject.  The openssl command does the RSA work
    (it is in tools/debian-packages; no Python crypto package needed)."""

    ISS = "https://id.example.org/realms/lab"
    AUD = "rtcsignald"

    def __init__(self, tmp):
        self.key_path = os.path.join(tmp, "issuer.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", self.key_path], check=True, capture_output=True)
        out = subprocess.run(["openssl", "rsa", "-in", self.key_path, "-noout", "-modulus"],
                             check=True, capture_output=True, text=True).stdout
        n = bytes.fromhex(out.strip().split("=", 1)[1])
        self.jwks_path = os.path.join(tmp, "jwks.json")
        with open(self.jwks_path, "w") as f:
            json.dump({"keys": [{"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256",
                                 "n": b64url(n), "e": b64url((65537).to_bytes(3, "big"))}]}, f)

    def conf(self):
        return ("[issuer lab]\nissuer = %s\naudience = %s\njwks_file = %s\n"
                % (self.ISS, self.AUD, self.jwks_path))

    def token(self, sub):
        now = int(time.time())
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "r1"}).encode())
        body = b64url(json.dumps({"iss": self.ISS, "aud": self.AUD, "sub": sub, "exp": now + 600,
                                  "iat": now - 5}).encode())
        signing_input = (head + "." + body).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key_path], input=signing_input,
                             check=True, capture_output=True).stdout
        return head + "." + body + "." + b64url(sig)


def ed25519_public_key(tmp):
    """A client's Ed25519 public key as sleap-rtc stores it: raw 32 bytes,
    URL-safe base64 without padding (43 characters)."""
    path = os.path.join(tmp, "ed25519-%s.pem" % secrets.token_hex(4))
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return b64url(der[-32:])  # SubjectPublicKeyInfo ends with the raw key
