#!/usr/bin/env python3
"""Issue 17: the admin dashboard in headless Chromium against the real daemon.

The daemon runs with an admin token and an [issuer] whose JWTs name their
groups in cognito:groups ([admin] jwt_group = admins); keys are made with
the openssl command and tokens signed here.  The page: a wrong token is
refused with a message; the admin token signs in; the numbers move while
test peers (WebSocket clients of this script) join and send, without a
reload; the room list shows their room; a room's workers are listed; a
room created through the page shows in the audit list; an administrator's
JWT signs in, a JWT without the group is refused.  No console errors
(a CSP violation would be one) while signed in.  The page's screenshot is
kept as tests/dashboard-screenshot.png.  TAP on stdout; without chromium,
chromium-driver or python3-selenium: "1..0 # SKIP" and exit 77 (a failure
when RTCSIGNALD_REQUIRE_BROWSERS=1)."""
import asyncio
import atexit
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

SHOT = os.path.abspath(os.path.join("tests", "dashboard-screenshot.png"))
ADMIN = "admin-" + secrets.token_hex(16)
ISS = "https://id.example.org/realms/lab"
AUD = "rtcsignald"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browserlib  # noqa: E402
from browserlib import DAEMON, WAIT, procs, report, tail, wait_for  # noqa: E402,F401

tmp = browserlib.setup("the dashboard test", "rtcsignald-dashboard-",
                       {"chromium": "chromium", "chromium-driver": "chromedriver", "openssl": "openssl"},
                       {"selenium": "python3-selenium", "websockets": "python3-websockets"})

import websockets  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


# --- keys and tokens (the openssl command; no Python crypto package) -----

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_key():
    key = os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    out = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True,
                         capture_output=True, text=True).stdout
    n = bytes.fromhex(out.strip().split("=", 1)[1])
    jwks = os.path.join(tmp, "jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                             "n": b64url(n), "e": "AQAB"}]}, f)
    return key, jwks


def jwt(key, sub, groups):
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": sub, "iat": now - 5, "exp": now + 600}
    if groups is not None:
        claims["cognito:groups"] = groups
    head = b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{body}".encode(),
                         check=True, capture_output=True).stdout
    return f"{head}.{body}.{b64url(sig)}"


# --- the daemon -----------------------------------------------------------

def start_daemon(jwks):
    conf = os.path.join(tmp, "rtcsignald.conf")
    with open(conf, "w") as f:
        f.write(f"[admin]\ntoken = {ADMIN}\njwt_group = admins\n"
                f"[issuer lab]\nissuer = {ISS}\naudience = {AUD}\njwks_file = {jwks}\n")
    log = os.path.join(tmp, "log")
    with open(log, "w") as out:
        p = subprocess.Popen([DAEMON, "--config", conf, "--listen", "127.0.0.1:0",
                              "--admin-listen", "127.0.0.1:0", "--state-dir", os.path.join(tmp, "state")],
                             stdout=out, stderr=subprocess.STDOUT)
    procs.append(p)

    def ports():
        if p.poll() is not None:
            raise RuntimeError("the daemon exited: " + tail(log))
        with open(log, errors="replace") as f:
            text = f.read()
        ws = re.search(r"WebSocket listening on 127\.0\.0\.1:(\d+)", text)
        admin = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", text)
        return ws and admin and (int(ws.group(1)), int(admin.group(1)))
    ws, admin = wait_for(ports, "the daemon")
    return p, ws, admin, log


def admin_api(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + ADMIN,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        return json.load(r)


# --- test peers: two workers and a client that keeps sending -------------

class Peers:
    def __init__(self, ws_port, room, api_key):
        self.url = f"ws://127.0.0.1:{ws_port}/"
        self.room, self.api_key = room, api_key
        self.stop = threading.Event()
        self.registered = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    async def register(self, peer_id, role):
        ws = await websockets.connect(self.url)
        await ws.send(json.dumps({"type": "register", "peer_id": peer_id, "room_id": self.room,
                                  "role": role, "api_key": self.api_key, "protocol": "2.1",
                                  "metadata": {"tags": ["gpu"], "properties": {"secret": "meta-value"}}}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if msg["type"] == "registered_auth":
                return ws
            if msg["type"] == "error":
                raise RuntimeError(f"{peer_id}: {msg}")

    async def drain(self, ws):
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    async def run(self):
        try:
            w1 = await self.register("worker-1", "worker")
            w2 = await self.register("worker-2", "worker")
            c = await self.register("client-1", "client")
            drains = [asyncio.create_task(self.drain(w)) for w in (w1, w2)]
            self.registered.set()
            n = 0
            while not self.stop.is_set():  # about 50 messages a second
                await c.send(json.dumps({"type": "peer_message", "to_peer_id": f"worker-{n % 2 + 1}",
                                         "payload": {"n": n}}))
                n += 1
                await asyncio.sleep(0.02)
            for ws in (w1, w2, c):
                await ws.close()
            for t in drains:
                t.cancel()
        except Exception as e:  # reported by the main thread
            self.error = e
            self.registered.set()


# --- the browser ----------------------------------------------------------

def start_browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp}/chromium", "--no-first-run", "--disable-sync",
              "--disable-background-networking", "--disable-component-update",
              "--disable-default-apps", "--disable-extensions", "--window-size=1280,1400",
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    svc = Service(executable_path=shutil.which("chromedriver"),
                  log_path=os.path.join(tmp, "chromedriver.log"))
    driver = webdriver.Chrome(service=svc, options=opts)
    procs.append(svc.process)
    atexit.register(driver.quit)
    return driver


def shown(driver, id_):
    return driver.find_element(By.ID, id_).is_displayed()


def value(driver, name):
    return driver.execute_script(
        "const e = document.querySelector('#summary dd[data-name=\"' + arguments[0] + '\"]');"
        "return e ? e.textContent : null;", name)


def sign_in(driver, url, token):
    driver.get(url)
    wait_for(lambda: shown(driver, "signin"), "the sign-in form")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def main():
    key, jwks = make_key()
    daemon, ws_port, admin_port, log = start_daemon(jwks)
    url = f"http://127.0.0.1:{admin_port}/"
    room = admin_api(admin_port, "POST", "/api/rooms", {"name": "lab"})["room_id"]
    api_key = admin_api(admin_port, "POST", "/api/keys", {"room_id": room})["api_key"]
    driver = start_browser()
    print("1..10", flush=True)

    # A wrong token: refused, said so, and not kept.
    sign_in(driver, url, "not-the-token")
    msg = wait_for(lambda: driver.find_element(By.ID, "signin-error").text, "the refusal")
    report("refused" in msg and not shown(driver, "main") and
           driver.execute_script("return sessionStorage.length") == 0,
           "a wrong token is refused with a message", msg)
    console_errors(driver)  # the 401 itself is logged; what follows must be clean

    # The admin token: signed in, numbers before any peer.
    driver.find_element(By.ID, "token").send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait_for(lambda: shown(driver, "main") and value(driver, "peers") is not None, "the dashboard")
    before = value(driver, "peers")
    report(before == "0" and driver.execute_script("return sessionStorage.length") == 1,
           "the admin token signs in; kept in sessionStorage", f"peers {before}")
    cluster = value(driver, "cluster")
    report(cluster == "single instance", "a daemon without [cluster] redis says it is a single instance",
           f"cluster {cluster!r}")

    peers = Peers(ws_port, room, api_key)
    peers.thread.start()
    peers.registered.wait(WAIT)
    if peers.error:
        raise peers.error
    try:
        # Live: the same page (no reload) shows the peers and a message rate.
        marker = driver.execute_script("window.notReloaded = 1; return window.notReloaded")
        got = wait_for(lambda: value(driver, "peers") == "3" and value(driver, "messages/s") not in
                       (None, "…", "0.0") and value(driver, "messages/s"), "live numbers")
        report(marker == 1 and driver.execute_script("return window.notReloaded") == 1,
               "peers and messages/s move while peers join and send, without a reload",
               f"peers 3, messages/s {got}")
        roles = wait_for(lambda: driver.find_element(By.ID, "roles").text, "roles")
        report("worker 2" in roles and "client 1" in roles, "peers by role", roles)
        rooms = wait_for(lambda: room in driver.find_element(By.ID, "rooms").text and
                         driver.find_element(By.ID, "rooms").text, "the room list")
        report(re.search(re.escape(room) + r" 3 client: 1, worker: 2", rooms) is not None,
               "the room list: the room, its peers by role", rooms)

        # A room's workers.
        driver.find_element(By.LINK_TEXT, room).click()
        workers = wait_for(lambda: "worker-2" in driver.find_element(By.ID, "workers").text and
                           driver.find_element(By.ID, "workers").text, "the workers")
        report("worker-1 worker" in workers and "meta-value" not in driver.page_source,
               "a room's workers for the admin; no metadata value on the page", workers)

        # An action through the page, in the audit list.
        driver.find_element(By.ID, "create-name").send_keys("made-in-the-page")
        driver.find_element(By.CSS_SELECTOR, "#create-form button").click()
        # The room made with the API is listed already: await the second.
        audit = wait_for(lambda: driver.find_element(By.ID, "audit").text.count("room_create") == 2 and
                         driver.find_element(By.ID, "audit").text, "the audit list")
        report(audit.count("room_create") == 2 and "admin-token" in audit,
               "a room created through the page is in the audit list", audit)
        wait_for(lambda: int(driver.find_element(By.ID, "chart").get_attribute("data-points") or 0) >= 4,
                 "a few points of the chart")
        driver.save_screenshot(SHOT)
        errors = console_errors(driver)
        report(not errors and ADMIN not in driver.page_source and api_key not in driver.page_source,
               "no console errors while signed in; no token on the page",
               "\n".join(e["message"] for e in errors) + f"\nscreenshot: {SHOT}")
    finally:
        peers.stop.set()
        peers.thread.join(WAIT)

    # JWTs: an administrator's signs in, one without the group is refused.
    driver.find_element(By.ID, "signout").click()
    sign_in(driver, url, jwt(key, "sub-admin", ["users", "admins"]))
    admin_ok = wait_for(lambda: shown(driver, "main") and value(driver, "peers") is not None, "JWT sign-in")
    driver.find_element(By.ID, "signout").click()
    sign_in(driver, url, jwt(key, "sub-user", ["users"]))
    msg = wait_for(lambda: driver.find_element(By.ID, "signin-error").text, "the non-admin refusal")
    report(admin_ok and "not an administrator" in msg and not shown(driver, "main"),
           "an administrator's JWT signs in; a JWT without the group is refused", msg)

    daemon.terminate()
    rc = daemon.wait(WAIT)
    if rc != 0:
        report(False, f"the daemon exited with {rc}", tail(log, 60))
    return 1 if browserlib.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a broken step: one failure, with its reason
        report(False, "the dashboard test could not go on", str(e).split("\nStacktrace:")[0])
        sys.exit(1)
