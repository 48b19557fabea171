#!/usr/bin/env python3
"""Issue 17: real WebRTC stacks and a real TURN server through rtcsignald.

docs/protocol.md's browser example, extracted as printed, runs in headless
Chromium (selenium, chromium-driver) against the real daemon: a worker
page and a client page find each other by a metadata filter and open an
RTCDataChannel; data goes both ways.  Then a client page and an aiortc
worker.  coturn runs with the daemon's [turn] secret: the credentials
registered_auth hands out get an allocation, expired or forged ones do
not, and the browser pair connects with iceTransportPolicy "relay".
Everything listens on 127.0.0.1, on free ports, in a temporary directory.
TAP on stdout.  Without chromium, chromedriver, python3-selenium, coturn
or python3-aiortc: "1..0 # SKIP" and exit 77 (a failure instead when
RTCSIGNALD_REQUIRE_BROWSERS=1, as .ci/run sets)."""
import asyncio
import atexit
import base64
import functools
import hashlib
import hmac
import http.server
import json
import os
import queue
import random
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(TOP, "tests", "browser")

sys.path.insert(0, HERE)
import browserlib  # noqa: E402
from browserlib import DAEMON, WAIT, procs, report, tail, wait_for  # noqa: E402,F401

# aiortc-worker.py imports aiortc
tmp = browserlib.setup("the browser tests", "rtcsignald-browsers-",
                       {"chromium": "chromium", "chromium-driver": "chromedriver", "coturn": "turnserver"},
                       {"selenium": "python3-selenium", "aiortc": "python3-aiortc",
                        "websockets": "python3-websockets"})

import websockets  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402


def first_lines(e):
    """An exception's message without WebDriver's native stack trace."""
    return str(e).split("\nStacktrace:")[0]


def free_udp_tcp_port():
    """A loopback port free for UDP and TCP alike (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            u.bind(("127.0.0.1", 0))
            try:
                t.bind(("127.0.0.1", u.getsockname()[1]))
            except OSError:
                continue
            return u.getsockname()[1]
    raise RuntimeError("no free port")


# --- coturn and a TURN client of our own -------------------------------

SECRET = secrets.token_hex(16)
REALM = "rtcsignald.test"
MAGIC = 0x2112A442


def stun(mtype, tid, attrs, key=None):
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
    if key:  # MESSAGE-INTEGRITY over the header with its length included
        head = struct.pack("!HHI12s", mtype, len(body) + 24, MAGIC, tid)
        body += struct.pack("!HH", 0x0008, 20) + hmac.new(key, head + body, hashlib.sha1).digest()
    return struct.pack("!HHI12s", mtype, len(body), MAGIC, tid) + body


def parse_stun(data):
    mtype, length, _, _ = struct.unpack("!HHI12s", data[:20])
    attrs, i = {}, 20
    while i + 4 <= 20 + length:
        t, n = struct.unpack("!HH", data[i:i + 4])
        attrs[t] = data[i + 4:i + 4 + n]
        i += 4 + n + (-n % 4)
    return mtype, attrs


def turn_allocate(port, username, password):
    """A TURN Allocate (RFC 5766) over UDP: "success", or the error code."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)

        def ask(attrs, key=None):
            tid = secrets.token_bytes(12)
            for _ in range(3):  # UDP: retransmit, bounded
                s.sendto(stun(0x0003, tid, attrs, key), ("127.0.0.1", port))
                try:
                    data = s.recv(2048)
                except socket.timeout:
                    continue
                return parse_stun(data)
            raise TimeoutError("no answer from coturn")

        transport = [(0x0019, b"\x11\0\0\0")]  # REQUESTED-TRANSPORT: UDP
        mtype, attrs = ask(transport)
        if mtype != 0x0113 or 0x0015 not in attrs:
            return f"unexpected first answer {mtype:#x}"
        realm, nonce = attrs[0x0014], attrs[0x0015]
        key = hashlib.md5(f"{username}:{realm.decode()}:{password}".encode()).digest()
        mtype, attrs = ask(transport + [(0x0006, username.encode()), (0x0014, realm),
                                        (0x0015, nonce)], key)
        if mtype == 0x0103:
            return "success"
        err = attrs.get(0x0009, b"\0\0\0\0")
        return f"error {err[2] * 100 + err[3]}"


def turn_credential(username):
    return base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()


def start_coturn():
    port = free_udp_tcp_port()
    relay = random.randrange(20000, 60000, 200)
    log = os.path.join(tmp, "coturn.log")
    p = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", f"--min-port={relay}", f"--max-port={relay + 199}",
         "--use-auth-secret", f"--static-auth-secret={SECRET}", f"--realm={REALM}",
         "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli", "--no-rfc5780",
         "--no-stun-backward-compatibility", "--no-multicast-peers",
         # the test's peers are all on loopback; nothing else is relayed to
         "--allow-loopback-peers", "--denied-peer-ip=0.0.0.0-126.255.255.255",
         "--denied-peer-ip=128.0.0.0-255.255.255.255", "--verbose",
         f"--log-file={log}", "--simple-log", f"--pidfile={tmp}/coturn.pid",
         f"--userdb={tmp}/turndb"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    procs.append(p)

    def answers():  # a STUN Binding request answered: coturn is up
        if p.poll() is not None:
            raise RuntimeError("coturn exited: " + tail(log))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            s.sendto(stun(0x0001, secrets.token_bytes(12), []), ("127.0.0.1", port))
            try:
                return parse_stun(s.recv(2048))[0] == 0x0101
            except OSError:
                return False
    try:
        wait_for(answers, "coturn")
    except TimeoutError as e:
        raise TimeoutError(f"{e}\n{tail(log)}") from None
    return port, log


# --- the daemon -----------------------------------------------------------

def start_daemon(name, turn_port, ttl=600):
    d = os.path.join(tmp, name)
    os.mkdir(d)
    conf = os.path.join(d, "rtcsignald.conf")
    with open(conf, "w") as f:
        f.write(f"[turn]\nturn_uris = turn:127.0.0.1:{turn_port}?transport=udp\n"
                f"secret = {SECRET}\ncredential_ttl = {ttl}\n")
    log = os.path.join(d, "log")
    with open(log, "w") as out:
        p = subprocess.Popen([DAEMON, "--config", conf, "--listen", "127.0.0.1:0",
                              "--admin-listen", "", "--state-dir", os.path.join(d, "state")],
                             stdout=out, stderr=subprocess.STDOUT)
    procs.append(p)

    def port():
        if p.poll() is not None:
            raise RuntimeError("the daemon exited: " + tail(log))
        with open(log, errors="replace") as f:
            m = re.search(r"WebSocket listening on 127\.0\.0\.1:(\d+)", f.read())
        return m and int(m.group(1))
    return p, f"ws://127.0.0.1:{wait_for(port, 'the daemon')}/", log


def stop(p, name, log):
    """Stops a daemon; one that does not exit 0 (a sanitizer report, a
    crash) fails the case."""
    p.terminate()
    try:
        rc = p.wait(WAIT)
    except subprocess.TimeoutExpired:
        rc = "a timeout"
    if rc != 0:
        report(False, f"{name}: the daemon exited with {rc}", tail(log, 60))


async def registered_auth(url, peer_id):
    async with websockets.connect(url) as ws:
        await ws.send(f'{{"type":"register","peer_id":"{peer_id}","room_id":"turn"}}')
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if msg["type"] in ("registered_auth", "error"):
                return msg


# --- the pages and the browser -------------------------------------------

def serve_pages():
    www = os.path.join(tmp, "www")
    os.mkdir(www)
    with open(os.path.join(TOP, "docs", "protocol.md")) as f:
        m = re.search(r"^### Browser JavaScript$.*?^```javascript\n(.*?)^```$", f.read(), re.M | re.S)
    if not m:
        raise RuntimeError("no javascript example in docs/protocol.md")
    with open(os.path.join(www, "example.js"), "w") as f:
        f.write(m.group(1))
    shutil.copy(os.path.join(HERE, "harness.js"), www)
    with open(os.path.join(www, "page.html"), "w") as f:
        f.write('<!doctype html><meta charset="utf-8"><title>rtcsignald test</title>\n'
                '<script src="harness.js"></script>\n'
                '<script type="module" src="example.js"></script>\n')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=www))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/page.html"


def start_browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    # --no-sandbox: CI runs as root, where Chromium's sandbox will not start.
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp}/chromium", "--no-first-run", "--disable-sync",
              "--disable-background-networking", "--disable-component-update",
              "--disable-default-apps", "--disable-extensions",
              # no name resolves: the pages, daemon and TURN server are 127.0.0.1
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
              # WebRTC on a machine whose peers are all on loopback
              "--allow-loopback-in-peer-connection",
              "--disable-features=WebRtcHideLocalIpsWithMdns"):
        opts.add_argument(a)
    svc = Service(executable_path=shutil.which("chromedriver"),
                  log_path=os.path.join(tmp, "chromedriver.log"))
    driver = webdriver.Chrome(service=svc, options=opts)
    procs.append(svc.process)
    atexit.register(driver.quit)  # runs before cleanup(): registered later
    driver.set_script_timeout(WAIT + 5)
    return driver


def js(driver, body):
    """Runs an async function body in the current tab; its value, or raises."""
    r = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "(async () => {" + body + "})().then((v) => done({ v: v === undefined ? null : v }),"
        " (e) => done({ e: String(e) }));")
    if "e" in r:
        raise RuntimeError(r["e"])
    return r["v"]


REGISTERED = ('return (await __h.until(() => __h.rx.find((m) => m.type === "registered_auth"),'
              f' {WAIT * 1000}, "registered_auth")).peer_id;')
OPEN = ('await __h.until(() => __h.channels.find((c) => c.readyState === "open"),'
        f' {WAIT * 1000}, "an open data channel");')


def send_and_expect(driver, text, expect):
    """Sends text on the tab's open channel, waits for expect to arrive."""
    return js(driver, OPEN + f'__h.channels.find((c) => c.readyState === "open").send({text!r});'
              f'await __h.until(() => __h.data.includes({expect!r}), {WAIT * 1000}, {expect!r});'
              'return true;')


def new_tab(driver, url):
    driver.switch_to.new_window("tab")
    driver.get(url)
    return driver.current_window_handle


def close_tabs(driver, keep):
    for h in driver.window_handles:
        if h != keep:
            driver.switch_to.window(h)
            driver.close()
    driver.switch_to.window(keep)
    driver.get("about:blank")


def page_errors(driver):
    return js(driver, "return __h.errors;")


def browser_pair(driver, base, turn_port, turn_log, relay):
    name = "two Chromium pages" + (" over TURN (relay only)" if relay else "")
    daemon, url, log = start_daemon("pair-relay" if relay else "pair", turn_port)
    q = f"&ws={url}&relay={1 if relay else 0}"
    home = driver.current_window_handle
    try:
        driver.get(base + "?role=worker" + q)
        worker = js(driver, REGISTERED)
        wtab = driver.current_window_handle
        ctab = new_tab(driver, base + "?role=client" + q)
        client = js(driver, REGISTERED)
        found = js(driver, 'return (await __h.until(() => __h.rx.find((m) => m.type === "peer_list"),'
                   f' {WAIT * 1000}, "peer_list")).peers.map((p) => p.peer_id);')
        report(found == [worker], f"{name}: the client page found the worker page by its filter",
               f"worker {worker}, found {found}")
        nonce = secrets.token_hex(4)
        send_and_expect(driver, f"job {nonce}", f"done: job {nonce}")
        driver.switch_to.window(wtab)
        js(driver, OPEN)
        result = f"result {nonce}"
        js(driver, f'__h.channels.find((c) => c.readyState === "open").send({result!r});')
        driver.switch_to.window(ctab)
        js(driver, f'await __h.until(() => __h.data.includes({result!r}), {WAIT * 1000},'
           ' "the worker\'s message"); return true;')
        pairs = []
        for tab in (ctab, wtab):
            driver.switch_to.window(tab)
            pairs.append(js(driver, "return await __h.selectedPair();"))
        errors = page_errors(driver)
        driver.switch_to.window(wtab)
        errors += page_errors(driver)
        # Without the relay policy the pair is direct: coturn is not needed.
        direct = relay or all(p and "relay" not in (p["local"], p["remote"]) for p in pairs)
        report(not errors and direct, f"{name}: {client} and {worker} exchanged data both ways",
               f"selected candidate pairs {pairs}\nerrors {errors}")
        if relay:
            relayed = all(p and p["local"] == "relay" and p["remote"] == "relay" for p in pairs)
            with open(turn_log, errors="replace") as f:
                tl = f.read()
            users = [u for u in (client, worker)
                     if re.search(r"user <\d+:" + re.escape(u) + r">.*ALLOCATE processed, success", tl)]
            report(relayed and len(users) == 2,
                   f"{name}: the data went through coturn, with the daemon's credentials",
                   f"selected pairs {pairs}\ncoturn allocations for {users}")
    except Exception as e:  # noqa: BLE001 (a failure of this case, reported)
        report(False, f"{name}: {e.__class__.__name__}", f"{first_lines(e)}\n{tail(log)}")
    finally:
        close_tabs(driver, home)
        stop(daemon, name, log)


def browser_aiortc(driver, base, turn_port):
    name = "a Chromium page and an aiortc worker"
    daemon, url, log = start_daemon("aiortc", turn_port)
    hello = "hello from aiortc " + secrets.token_hex(4)
    lines = queue.Queue()
    w = subprocess.Popen([sys.executable, os.path.join(HERE, "aiortc-worker.py"), url, "lab",
                          "gpu-worker-1", hello],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(w)
    seen = []
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in w.stdout], daemon=True).start()

    def saw(prefix):
        def cond():
            try:
                seen.append(lines.get(timeout=0.05))
            except queue.Empty:
                pass
            return any(x.startswith(prefix) for x in seen)
        return cond
    home = driver.current_window_handle
    try:
        wait_for(saw("registered"), "the aiortc worker to register")
        driver.get(base + f"?role=client&ws={url}")
        found = js(driver, 'return (await __h.until(() => __h.rx.find((m) => m.type === "peer_list"),'
                   f' {WAIT * 1000}, "peer_list")).peers.map((p) => p.peer_id);')
        report(found == ["gpu-worker-1"], f"{name}: the page found the worker by its filter", found)
        nonce = secrets.token_hex(4)
        send_and_expect(driver, f"job {nonce}", f"done: job {nonce}")
        js(driver, f'await __h.until(() => __h.data.includes({hello!r}), {WAIT * 1000}, {hello!r});'
           'return true;')
        wait_for(saw(f"received job {nonce}"), "the worker's report")
        errors = page_errors(driver)
        report(not errors, f"{name}: data both ways", "\n".join(seen) + f"\nerrors {errors}")
    except Exception as e:  # noqa: BLE001
        report(False, f"{name}: {e.__class__.__name__}", first_lines(e) + "\n" + "\n".join(seen) + "\n" + tail(log))
    finally:
        w.terminate()
        w.wait(10)
        close_tabs(driver, home)
        stop(daemon, name, log)


def turn_credentials(turn_port):
    daemon, url, log = start_daemon("turn", turn_port, ttl=600)
    try:
        before = int(time.time())
        msg = asyncio.run(registered_auth(url, "turn-user"))
        servers = [s for s in msg.get("ice_servers", []) if "username" in s]
        if len(servers) != 1:
            report(False, "registered_auth hands out a TURN server", msg)
            return
        s = servers[0]
        expiry, _, peer = s["username"].partition(":")
        good_form = (s["urls"] == [f"turn:127.0.0.1:{turn_port}?transport=udp"] and peer == "turn-user"
                     and before + 600 - 5 <= int(expiry) <= time.time() + 600 + 5
                     and s["credential"] == turn_credential(s["username"]))
        report(good_form, "registered_auth's TURN credential is coturn's use-auth-secret HMAC, "
               "valid for credential_ttl", s)
        got = turn_allocate(turn_port, s["username"], s["credential"])
        report(got == "success", "coturn gives registered_auth's credential an allocation", got)
        wrong = turn_credential(s["username"] + "x")
        got = turn_allocate(turn_port, s["username"], wrong)
        report(got == "error 401", "coturn refuses that username with another password", got)
        expired = f"{int(time.time()) - 60}:turn-user"
        got = turn_allocate(turn_port, expired, turn_credential(expired))
        report(got == "error 401", "coturn refuses an expired credential of the same secret", got)
    finally:
        stop(daemon, "TURN credentials", log)


def main():
    started = time.monotonic()
    try:
        turn_port, turn_log = start_coturn()
        turn_credentials(turn_port)
        base = serve_pages()
        driver = start_browser()
        browser_pair(driver, base, turn_port, turn_log, relay=False)
        browser_aiortc(driver, base, turn_port)
        browser_pair(driver, base, turn_port, turn_log, relay=True)
    except Exception as e:  # noqa: BLE001 (coturn, the browser: the rest cannot run)
        report(False, f"setup: {e.__class__.__name__}", first_lines(e))
    print(f"# {time.monotonic() - started:.1f} s", flush=True)
    print(f"1..{browserlib.count}", flush=True)
    return 1 if browserlib.failed or browserlib.count != 11 else 0


sys.exit(main())
