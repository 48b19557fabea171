"""What the headless-browser tests share: their processes and temporary
directory (ended and removed at exit), the skip-or-fail rule for missing
packages, TAP reporting and bounded waits."""
import atexit
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

WAIT = 20  # seconds: the bound of every wait for an event
DAEMON = os.path.abspath(os.environ.get("RTCSIGNALD", "src/rtcsignald"))

procs = []  # every process the test started, ended at exit
tmp = None
count = 0
failed = 0


def skip_or_fail(what, why):
    """Missing packages skip (exit 77), unless RTCSIGNALD_REQUIRE_BROWSERS=1
    (.ci/run) makes them a failure."""
    if os.environ.get("RTCSIGNALD_REQUIRE_BROWSERS") == "1":
        print(f"1..1\nnot ok 1 cannot run {what}: " + why)
        sys.exit(1)
    print("1..0 # SKIP " + why)
    sys.exit(77)


def _cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def setup(what, prefix, programs, modules):
    """Checks PROGRAMS (package: command) and MODULES (module: package) and
    the daemon; makes the temporary directory; returns it."""
    global tmp
    missing = [pkg for pkg, cmd in programs.items() if not shutil.which(cmd)]
    missing += [pkg for mod, pkg in modules.items() if importlib.util.find_spec(mod) is None]
    if missing:
        skip_or_fail(what, "not installed: " + ", ".join(missing))
    if not os.access(DAEMON, os.X_OK):  # a broken build, not a missing package
        print("1..1\nnot ok 1 no daemon at " + DAEMON)
        sys.exit(1)
    tmp = tempfile.mkdtemp(prefix=prefix)
    atexit.register(_cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return tmp


def report(ok, name, detail=""):
    global count, failed
    count += 1
    if not ok:
        failed += 1
    print(("ok " if ok else "not ok ") + f"{count} {name}", flush=True)
    for line in str(detail).splitlines():
        if line:
            print("# " + line, flush=True)


def wait_for(cond, what, timeout=WAIT):
    """Polls cond() (a file or a process being read) until it is true."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError("timed out waiting for " + what)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
