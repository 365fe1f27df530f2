"""Shared plumbing for bench/compare and bench/soak: child processes that are
always killed, temporary directories that are always removed, free loopback
ports, the rrnet-radius data set, the load generator and peak RSS.

Everything listens on 127.0.0.1; nothing here is meant to touch a real network.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The RADIUS shared secret of the one NAS (127.0.0.1) every row uses.
SECRET = "bench-secret-7f3a"
# Voucher codes are the load generator's default ones: PREFIX + 6 digits.
PREFIX = "LG"
PLAN = "bench"


def code(i):
    return f"{PREFIX}{i:06d}"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Cleanup:
    """Children (each in its own process group) and paths to remove, undone in
    reverse order on exit, on SIGINT/SIGTERM/SIGHUP and on errors."""

    def __init__(self):
        self.children = []
        self.dirs = []
        self.actions = []
        atexit.register(self.run)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.run()
        sys.exit(128 + signum)

    def tempdir(self, tag):
        d = Path(tempfile.mkdtemp(prefix=f"rrnet-bench-{tag}-"))
        self.dirs.append(d)
        return d

    def spawn(self, argv, log_path, env=None):
        out = open(log_path, "ab")
        p = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        out.close()
        self.children.append(p)
        return p

    def stop(self, p):
        """SIGTERM the child's process group, SIGKILL after 5 s."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if p in self.children:
            self.children.remove(p)

    def on_exit(self, fn):
        self.actions.append(fn)

    def run(self):
        for p in list(reversed(self.children)):
            self.stop(p)
        while self.actions:
            try:
                self.actions.pop()()
            except Exception as e:  # cleanup must go on
                log(f"cleanup: {e}")
        while self.dirs:
            shutil.rmtree(self.dirs.pop(), ignore_errors=True)


def free_port(kind=socket.SOCK_DGRAM):
    """A loopback port nothing is bound to right now."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bin_dir():
    """Where the rrnet binaries are: RRNET_BENCH_BIN_DIR (the smoke test points
    it at cargo's test build) or target/release."""
    d = Path(os.environ.get("RRNET_BENCH_BIN_DIR", REPO / "target" / "release"))
    for name in ("rrnet-radius", "rrnet-loadgen", "rrnet-ceiling"):
        if not (d / name).exists():
            sys.exit(f"error: {d / name} not found; run `cargo build --release --bins` first")
    return d


def peak_rss_mib(pid):
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mib(pid):
    """VmRSS (current resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def wait_until(pred, what, proc, log_path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{tail(log_path)}")


def tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


class Rrnet:
    """The rrnet-radius CLI and server on one database URL."""

    def __init__(self, bins, url, workdir, cleanup):
        self.bin = bins / "rrnet-radius"
        self.url = url
        self.dir = workdir
        self.cleanup = cleanup
        self.proc = None

    def cli(self, *args, quiet=True):
        r = subprocess.run(
            [str(self.bin), "--database", self.url, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if r.returncode != 0:
            raise RuntimeError(f"rrnet-radius {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r.stdout

    def setup(self, users, time_quota="1h", chunk=50_000, codes=None):
        """One NAS (127.0.0.1), one plan, `users` vouchers LG000000…, imported in
        chunks so a million vouchers never sit in one transaction."""
        self.cli("nas", "add", "--name", "bench", "--address", "127.0.0.1", "--secret", SECRET)
        plan = ["plan", "add", "--name", PLAN, "--rate-limit", "2M/2M"]
        if time_quota:
            plan += ["--time", time_quota]
        self.cli(*plan)
        start = time.monotonic()
        for lo in range(0, users, chunk):
            f = self.dir / "codes.txt"
            f.write_text("".join(code(i) + "\n" for i in range(lo, min(users, lo + chunk))))
            self.cli("voucher", "import", f, "--plan", PLAN)
            if users > chunk:
                log(f"  imported {min(users, lo + chunk)}/{users} vouchers ({time.monotonic() - start:.0f} s)")

    def serve(self, auth_port, acct_port, env=None, http_port=None):
        metrics = free_port(socket.SOCK_STREAM)
        argv = [
            self.bin, "--database", self.url, "serve",
            "--auth-listen", f"127.0.0.1:{auth_port}",
            "--acct-listen", f"127.0.0.1:{acct_port}",
            "--metrics-listen", f"127.0.0.1:{metrics}",
        ]
        if http_port:
            argv += ["--http-listen", f"127.0.0.1:{http_port}"]
        logf = self.dir / "rrnet-radius.log"
        self.proc = self.cleanup.spawn(argv, logf, env=env)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{metrics}/readyz"), "rrnet-radius", self.proc, logf)
        return self.proc


def loadgen(bins, port, mode, duration, warmup, window=64, rate=None, users=None,
            codes_file=None, label="", timeout_ms=1000, acct_port=None, fresh=None,
            fresh_start=None, mix=None):
    """One rrnet-loadgen run; its JSON report. For mode "mixed", `port` is the
    authentication port and `acct_port` the accounting one; `fresh` never-used
    vouchers from number `fresh_start` on serve the first logins, and `mix`
    ({"first", "repeat", "interim"}) sets the shares."""
    argv = [
        str(bins / "rrnet-loadgen"),
        "--target", f"127.0.0.1:{port}",
        "--secret", SECRET,
        "--mode", mode,
        "--prefix", PREFIX,
        "--window", str(window),
        "--duration", str(duration),
        "--warmup", str(warmup),
        "--timeout-ms", str(timeout_ms),
        "--format", "json",
        "--label", label,
    ]
    if rate:
        argv += ["--rate", str(int(rate))]
    if acct_port:
        argv += ["--acct-target", f"127.0.0.1:{acct_port}"]
    if fresh is not None:
        argv += ["--fresh", str(fresh)]
    if fresh_start is not None:
        argv += ["--fresh-start", str(fresh_start)]
    for k, v in (mix or {}).items():
        argv += [f"--mix-{k}", str(v)]
    if codes_file:
        argv += ["--codes-file", str(codes_file)]
    else:
        argv += ["--users", str(users)]
    # Mixed mode may warm up for up to 60 s more (until every user has logged in).
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=duration + warmup + (120 if mode == "mixed" else 60))
    if r.returncode != 0:
        raise RuntimeError(f"rrnet-loadgen {mode} failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])
