#!/usr/bin/env python3
"""Crash campaign: kill -9 a real `foryou serve` under write load, restart it,
and check that every acknowledged event survived.

Per trial (N trials per mode):

  1. a fresh temporary store; start the server on a free loopback port and
     load a catalog of 20 videos;
  2. 4 writer threads post batches of 1 to 20 `play` events for their own
     users; every `200 {"accepted": n}` adds n to that user's acknowledged
     count;
  3. after a random delay (0.1 to 1.0 s, from --seed) SIGKILL the server;
  4. restart it on the same store (a new port): it must print "listening on"
     within 60 s (else: FAILED RESTART, with its stderr tail);
  5. GET /v1/users/U for every user with acknowledged events: the stored play
     count must be >= the acknowledged count (more is allowed: a batch applied
     but not yet answered at the kill). Less is LOST EVENTS.

Modes:
  open    single-region open mode, no extra flags
  policy  --policy (region us, a service key and a replication key),
          --region us --region-key-file: personal data encrypted at rest,
          every request authenticated and audited
  backup  policy, plus a region sg server (started once per trial, kept running
          across the kill) that us backs up to with --backup-to; only us is
          killed

Run from the repository root (standard library only, Python 3.11):

    FORYOU=build/release/foryou python3 tests/crash_campaign.py --trials 5
    scripts/crash-campaign.sh 20 open backup

Prints one line per trial, a summary per mode and overall, then
`N passed, M failed` (a trial passes if it restarted and lost nothing);
exits 1 if any trial failed, 2 on a usage or setup error. Progress goes to
stderr. Every step is bounded in time; no server outlives the campaign.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import http.client
import json
import os
import queue
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("open", "policy", "backup")
NUM_VIDEOS = 20
NUM_WRITERS = 4
USERS_PER_WRITER = 3
MAX_BATCH = 20
KILL_DELAY_S = (0.1, 1.0)
READY_TIMEOUT_S = 60.0     # "listening on" after a start or restart
HTTP_TIMEOUT_S = 10.0      # one request (a backed-up write waits up to 2 s for sg)
WRITER_JOIN_S = HTTP_TIMEOUT_S + 5.0
STOP_TIMEOUT_S = 10.0      # SIGTERM, then SIGKILL
STDERR_TAIL_LINES = 30

REPO = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"^listening on http://127\.0\.0\.1:(\d+)\s*$")

# Servers die with the campaign even if it is killed -9 itself (Linux).
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _LIBC = None


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Server processes

LIVE: set["Server"] = set()
LIVE_LOCK = threading.Lock()


class Server:
    """One `foryou serve` process; stdout read line by line by a thread."""

    def __init__(self, name: str, argv: list[str], stderr_path: Path):
        self.name = name
        self.argv = argv
        self.stderr_path = stderr_path
        self.port: int | None = None
        self.startup_s: float = 0.0
        self._ports: queue.Queue[int] = queue.Queue()
        self._err = open(stderr_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, preexec_fn=_die_with_parent)
        self._t0 = t0
        with LIVE_LOCK:
            LIVE.add(self)
        self._reader = threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # drains until EOF so the pipe never fills
            m = LISTEN_RE.match(raw.decode(errors="replace"))
            if m:
                self._ports.put(int(m.group(1)))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> str | None:
        """None once "listening on" was printed; else why not."""
        deadline = self._t0 + timeout
        while True:
            try:
                self.port = self._ports.get(timeout=0.05)
                self.startup_s = time.monotonic() - self._t0
                return None
            except queue.Empty:
                pass
            rc = self.proc.poll()
            if rc is not None:
                # It may have printed the line just before exiting.
                try:
                    self.port = self._ports.get(timeout=0.5)
                except queue.Empty:
                    return f"exited with status {rc} before printing 'listening on'"
                return f"printed 'listening on' but exited with status {rc}"
            if time.monotonic() >= deadline:
                return f"did not print 'listening on' within {timeout:.0f} s"

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap(timeout=STOP_TIMEOUT_S)

    def stop(self) -> str | None:
        """SIGTERM, wait up to 10 s, then SIGKILL. None if it stopped cleanly."""
        note = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
                if rc != 0:
                    note = f"{self.name} exited with status {rc} on SIGTERM"
            except subprocess.TimeoutExpired:
                note = f"{self.name} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed"
                self.proc.kill()
        else:
            note = f"{self.name} had already exited with status {self.proc.returncode}"
        self._reap(timeout=STOP_TIMEOUT_S)
        return note

    def _reap(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # cannot happen after SIGKILL, but never hang
            pass
        self._reader.join(timeout=2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()
        with LIVE_LOCK:
            LIVE.discard(self)

    def force_kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        self._reap(timeout=STOP_TIMEOUT_S)


def kill_all_live() -> None:
    with LIVE_LOCK:
        servers = list(LIVE)
    for s in servers:
        s.force_kill()


# ---------------------------------------------------------------------------
# HTTP


def http_call(port: int, method: str, path: str, body: object | None, headers: dict[str, str],
              timeout: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Campaign set-up: keys and policy (policy and backup modes)


@dataclass
class Sovereign:
    policy: Path
    key_us: Path
    key_sg: Path
    svc_key: str
    replication_key_file: Path


def keygen(foryou: str, path: Path) -> None:
    out = subprocess.run([foryou, "keygen"], capture_output=True, timeout=30, check=False)
    key = out.stdout.decode(errors="replace").strip()
    if out.returncode != 0 or not re.fullmatch(r"[0-9a-fA-F]{64}", key):
        raise RuntimeError(f"`foryou keygen` failed (status {out.returncode}): "
                           f"{out.stderr.decode(errors='replace').strip()!r} {key!r}")
    path.write_text(key + "\n")
    path.chmod(0o600)


def make_sovereign(foryou: str, d: Path) -> Sovereign:
    sha = lambda k: hashlib.sha256(k.encode()).hexdigest()  # noqa: E731
    svc_key = "svc-" + secrets.token_hex(16)
    repl_key = "us-replication-" + secrets.token_hex(16)
    keygen(foryou, d / "us.region-key")
    keygen(foryou, d / "sg.region-key")
    repl_file = d / "us-replication.key"
    repl_file.write_text(repl_key)
    repl_file.chmod(0o600)
    policy = d / "policy.toml"
    policy.write_text(f"""\
[[regions]]
name = "us"
jurisdiction = "US"
operator = "Crash Campaign"
primary_for = ["US"]
backup_for = []

[[regions]]
name = "sg"
jurisdiction = "SG"
operator = "Crash Campaign"
primary_for = ["SG"]
backup_for = ["US"]

[[principals]]
name = "svc"
key_sha256 = "{sha(svc_key)}"
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "us-replication"
key_sha256 = "{sha(repl_key)}"
role = "replication"
read = ["US"]
write = ["US"]
region = "us"
""")
    return Sovereign(policy, d / "us.region-key", d / "sg.region-key", svc_key, repl_file)


# ---------------------------------------------------------------------------
# One trial


@dataclass
class Trial:
    mode: str
    index: int
    kill_delay_s: float
    users: int = 0
    acked_users: int = 0
    acked_events: int = 0
    checked_users: int = 0
    lost_events: int = 0
    lost_users: list[str] = field(default_factory=list)
    extra_events: int = 0           # stored beyond acknowledged: applied, answer lost in the kill
    duplicated_events: int = 0      # stored beyond everything ever sent: must be 0
    restart_s: float | None = None
    restarted: bool = False
    failed_restart: str | None = None
    error: str | None = None        # a failure other than a restart or lost events
    notes: list[str] = field(default_factory=list)
    pre_kill_errors: int = 0        # connection errors and non-200 answers before the kill
    backup_states: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.restarted and self.lost_events == 0 and not self.lost_users and self.error is None


class Writers:
    """NUM_WRITERS threads, each posting batches for its own users."""

    def __init__(self, port: int, headers: dict[str, str], users_of: list[list[str]], seed: str):
        self.port = port
        self.headers = dict(headers, **{"Content-Type": "application/json"})
        self.users_of = users_of
        self.seed = seed
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {u: 0 for us in users_of for u in us}
        self.sent: dict[str, int] = {u: 0 for us in users_of for u in us}  # acked or maybe applied
        self.killed = threading.Event()
        self.deadline = time.monotonic() + 3600
        self.pre_kill_errors: list[str] = []
        self.backup_states: dict[str, int] = {}
        self.threads = [threading.Thread(target=self._run, args=(k,), name=f"writer{k}", daemon=True)
                        for k in range(len(users_of))]

    def start(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> list[str]:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(timeout=max(0.0, end - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    def _run(self, k: int) -> None:
        rng = random.Random(f"{self.seed}/w{k}")
        users = self.users_of[k]
        conn: http.client.HTTPConnection | None = None
        try:
            while time.monotonic() < self.deadline:
                user = rng.choice(users)
                n = rng.randint(1, MAX_BATCH)
                body = json.dumps({"events": [
                    {"user_id": user, "video_id": f"v{rng.randrange(NUM_VIDEOS)}", "type": "play",
                     "watch_ratio": 0.5} for _ in range(n)]}).encode()
                with self.lock:
                    self.sent[user] += n
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
                    conn.request("POST", "/v1/events", body=body, headers=self.headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    backup = resp.getheader("X-Foryou-Backup")
                except (OSError, http.client.HTTPException) as e:
                    if conn is not None:
                        conn.close()
                        conn = None
                    if self.killed.is_set():
                        return  # expected: the server is gone
                    with self.lock:
                        self.pre_kill_errors.append(f"writer{k}: {type(e).__name__}: {e}")
                    time.sleep(0.02)
                    continue
                if resp.status == 200:
                    try:
                        accepted = int(json.loads(data)["accepted"])
                    except (ValueError, KeyError, TypeError):
                        with self.lock:
                            self.pre_kill_errors.append(f"writer{k}: 200 with unexpected body {data[:200]!r}")
                        continue
                    with self.lock:
                        self.acked[user] += accepted
                        if backup:
                            self.backup_states[backup] = self.backup_states.get(backup, 0) + 1
                        if accepted != n:
                            self.pre_kill_errors.append(f"writer{k}: sent {n} events, accepted {accepted}")
                else:
                    if self.killed.is_set():
                        return
                    with self.lock:
                        self.pre_kill_errors.append(f"writer{k}: HTTP {resp.status}: {data[:200]!r}")
                    time.sleep(0.02)
        finally:
            if conn is not None:
                conn.close()


def serve_argv(foryou: str, data: Path, extra: list[str]) -> list[str]:
    return [foryou, "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--threads", "2",
            "--log-level", "warn", *extra]


def run_trial(foryou: str, mode: str, index: int, kill_delay_s: float, seed: int,
              sov: Sovereign | None) -> Trial:
    tr = Trial(mode=mode, index=index, kill_delay_s=kill_delay_s)
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"foryou-crash-{mode}-{index}-"))
    servers: list[Server] = []
    try:
        data = tmp / "data"
        headers: dict[str, str] = {}
        extra: list[str] = []
        if sov is not None:
            headers = {"Authorization": f"Bearer {sov.svc_key}", "X-Foryou-Jurisdiction": "US"}
            extra = ["--policy", str(sov.policy), "--region", "us", "--region-key-file", str(sov.key_us)]
        if mode == "backup":
            assert sov is not None
            sg = Server("sg", serve_argv(foryou, tmp / "sg-data",
                                         ["--policy", str(sov.policy), "--region", "sg",
                                          "--region-key-file", str(sov.key_sg)]),
                        tmp / "sg.stderr")
            servers.append(sg)
            why = sg.wait_ready()
            if why:
                tr.error = f"region sg did not start: {why}\n{tail(sg.stderr_path)}"
                return tr
            extra += ["--backup-to", f"sg=http://127.0.0.1:{sg.port}",
                      "--backup-api-key-file", str(sov.replication_key_file)]
        argv = serve_argv(foryou, data, extra)

        # 1. start and load the catalog
        us = Server("us", argv, tmp / "us.stderr")
        servers.append(us)
        why = us.wait_ready()
        if why:
            tr.error = f"first start failed: {why}\n{tail(us.stderr_path)}"
            return tr
        assert us.port is not None
        catalog = {"videos": [{"id": f"v{i}", "creator_id": "c", "duration_ms": 10000}
                              for i in range(NUM_VIDEOS)]}
        cat_headers = {"Authorization": headers["Authorization"]} if sov is not None else {}
        try:
            status, body = http_call(us.port, "POST", "/v1/videos", catalog, cat_headers)
        except (OSError, http.client.HTTPException) as e:
            status, body = -1, repr(e).encode()
        if status != 200:
            tr.error = f"catalog load: HTTP {status}: {body[:300]!r}\n{tail(us.stderr_path)}"
            return tr

        # 2. write load, 3. kill -9
        users_of = [[f"t{index}w{k}u{j}" for j in range(USERS_PER_WRITER)] for k in range(NUM_WRITERS)]
        tr.users = NUM_WRITERS * USERS_PER_WRITER
        writers = Writers(us.port, headers, users_of, f"{seed}/{mode}/{index}")
        writers.start(budget_s=kill_delay_s + WRITER_JOIN_S)
        time.sleep(kill_delay_s)
        writers.killed.set()  # before the signal: every later error is expected
        us.kill9()  # os.kill(pid, SIGKILL), then waitpid
        stuck = writers.join(WRITER_JOIN_S)
        if stuck:
            tr.error = f"writers still running {WRITER_JOIN_S:.0f} s after the kill: {', '.join(stuck)}"
            return tr
        with writers.lock:
            acked = dict(writers.acked)
            sent = dict(writers.sent)
            tr.pre_kill_errors = len(writers.pre_kill_errors)
            tr.backup_states = dict(writers.backup_states)
            for e in writers.pre_kill_errors[:5]:
                tr.notes.append(f"before the kill: {e}")
            if len(writers.pre_kill_errors) > 5:
                tr.notes.append(f"... {len(writers.pre_kill_errors) - 5} more errors before the kill")
        tr.acked_events = sum(acked.values())
        tr.acked_users = sum(1 for v in acked.values() if v > 0)
        if us.proc.returncode != -signal.SIGKILL:
            tr.notes.append(f"us exited with status {us.proc.returncode}, not by SIGKILL: it died before the kill")

        # 4. restart on the same store
        us2 = Server("us (restart)", argv, tmp / "us-restart.stderr")
        servers.append(us2)
        why = us2.wait_ready()
        if why:
            tr.failed_restart = f"{why}\n{tail(us2.stderr_path)}"
            return tr
        assert us2.port is not None
        tr.restarted = True
        tr.restart_s = us2.startup_s

        # 5. every acknowledged event is there
        for user in sorted(acked):
            if acked[user] <= 0:
                continue
            tr.checked_users += 1
            path = "/v1/users/" + urllib.parse.quote(user, safe="")
            try:
                status, body = http_call(us2.port, "GET", path, None, headers)
            except (OSError, http.client.HTTPException) as e:
                tr.error = f"GET {path} after the restart: {type(e).__name__}: {e}\n{tail(us2.stderr_path)}"
                return tr
            if status == 404:
                stored = 0
            elif status == 200:
                try:
                    counts = json.loads(body)["event_counts"]
                    stored = int(counts.get("play", 0))
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    tr.error = f"GET {path}: unexpected body ({e}): {body[:300]!r}"
                    return tr
            else:
                tr.error = f"GET {path} after the restart: HTTP {status}: {body[:300]!r}"
                return tr
            if stored < acked[user]:
                tr.lost_events += acked[user] - stored
                tr.lost_users.append(f"{user}: acknowledged {acked[user]}, stored {stored}")
            else:
                tr.extra_events += stored - acked[user]
                if stored > sent[user]:
                    tr.duplicated_events += stored - sent[user]
                    tr.notes.append(f"{user}: stored {stored} play events, only {sent[user]} were ever sent")
        note = us2.stop()
        if note:
            tr.notes.append(note)
        return tr
    except Exception as e:  # a bug here must not leave servers behind, nor pass
        tr.error = f"campaign error: {type(e).__name__}: {e}"
        return tr
    finally:
        for s in reversed(servers):  # us is already down here unless something failed
            if s not in LIVE:
                continue
            if s.name == "sg":
                note = s.stop()
                if note:
                    tr.notes.append(note)
            else:
                s.force_kill()
        shutil.rmtree(tmp, ignore_errors=True)
        tr.wall_s = time.monotonic() - t_start


def trial_line(tr: Trial) -> str:
    restart = f"{tr.restart_s:.2f} s" if tr.restart_s is not None else "FAILED"
    checked = tr.restarted and tr.checked_users == tr.acked_users and tr.error is None
    lost = str(tr.lost_events) if checked else f"{tr.lost_events} (check incomplete)"
    line = (f"trial {tr.mode} {tr.index}: acked {tr.acked_events} events of {tr.acked_users} users, "
            f"kill after {tr.kill_delay_s * 1000:.0f} ms, restart {restart}, lost {lost}")
    if tr.extra_events:
        line += f" (+{tr.extra_events} applied unacknowledged)"
    if tr.duplicated_events:
        line += f", DUPLICATED {tr.duplicated_events}"
    if tr.backup_states:
        line += " [backup: " + ", ".join(f"{k} {v}" for k, v in sorted(tr.backup_states.items())) + "]"
    if not tr.passed:
        line += "  FAILED"
    out = [line]
    indent = lambda s: "\n".join("      " + x for x in s.splitlines())  # noqa: E731
    if tr.failed_restart:
        out.append("    FAILED RESTART: " + tr.failed_restart.splitlines()[0])
        rest = "\n".join(tr.failed_restart.splitlines()[1:])
        if rest.strip():
            out.append("    stderr tail of the restart:\n" + indent(rest))
    if tr.lost_users:
        out.append("    LOST EVENTS:")
        out += ["      " + u for u in tr.lost_users]
    if tr.error:
        first, *rest = tr.error.splitlines() or [""]
        out.append("    ERROR: " + first)
        if rest:
            out.append(indent("\n".join(rest)))
    for n in tr.notes:
        out.append("    note: " + n)
    return "\n".join(out)


def summarize(trials: list[Trial], wall_s: float) -> dict:
    def agg(ts: list[Trial], time_s: float) -> dict:
        return {
            "trials": len(ts),
            "passed": sum(t.passed for t in ts),
            "failed": sum(not t.passed for t in ts),
            "acked_events_checked": sum(t.acked_events for t in ts if t.restarted),
            "users_checked": sum(t.checked_users for t in ts),
            "events_lost": sum(t.lost_events for t in ts),
            "users_lost": sum(len(t.lost_users) for t in ts),
            "failed_restarts": sum(t.failed_restart is not None for t in ts),
            "other_errors": sum(t.error is not None for t in ts),
            "extra_applied_unacked": sum(t.extra_events for t in ts),
            "duplicated_events": sum(t.duplicated_events for t in ts),
            "pre_kill_errors": sum(t.pre_kill_errors for t in ts),
            "max_restart_s": max((t.restart_s for t in ts if t.restart_s is not None), default=None),
            "time_s": round(time_s, 2),
        }
    modes = []
    for t in trials:
        if t.mode not in modes:
            modes.append(t.mode)
    return {
        "modes": {m: agg([t for t in trials if t.mode == m], sum(t.wall_s for t in trials if t.mode == m))
                  for m in modes},
        "overall": agg(trials, wall_s),
        "trials": [{
            "mode": t.mode, "index": t.index, "passed": t.passed, "kill_after_ms": round(t.kill_delay_s * 1000),
            "acked_events": t.acked_events, "acked_users": t.acked_users,
            "users_checked": t.checked_users, "events_lost": t.lost_events,
            "lost_users": t.lost_users, "extra_applied_unacked": t.extra_events,
            "duplicated_events": t.duplicated_events, "restarted": t.restarted,
            "restart_s": None if t.restart_s is None else round(t.restart_s, 3),
            "failed_restart": t.failed_restart, "error": t.error, "notes": t.notes,
            "pre_kill_errors": t.pre_kill_errors, "backup_states": t.backup_states, "time_s": round(t.wall_s, 2),
        } for t in trials],
    }


def summary_line(name: str, s: dict) -> str:
    line = (f"{name}: {s['trials']} trials, {s['passed']} passed, {s['failed']} failed; "
            f"{s['acked_events_checked']} acknowledged events checked ({s['users_checked']} users), "
            f"{s['events_lost']} events lost ({s['users_lost']} users), "
            f"{s['failed_restarts']} failed restarts")
    if s["other_errors"]:
        line += f", {s['other_errors']} other errors"
    if s["duplicated_events"]:
        line += f", {s['duplicated_events']} DUPLICATED events"
    if s["max_restart_s"] is not None:
        line += f"; slowest restart {s['max_restart_s']:.2f} s"
    return line + f"; {s['time_s']:.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=5, help="trials per mode (default 5)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: all three")
    ap.add_argument("--seed", type=int, default=1, help="seeds kill delays and batches (default 1)")
    ap.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    ap.add_argument("--foryou", default=os.environ.get("FORYOU", str(REPO / "build/release/foryou")),
                    help="server binary (default: $FORYOU or build/release/foryou)")
    args = ap.parse_args()
    if args.trials < 1:
        ap.error("--trials must be at least 1")
    modes = list(dict.fromkeys(args.modes))
    foryou = args.foryou
    if os.sep in foryou:
        foryou = str(Path(foryou).resolve())
        if not os.access(foryou, os.X_OK):
            print(f"crash_campaign: {foryou} is not an executable (set FORYOU)", file=sys.stderr)
            return 2
    elif shutil.which(foryou) is None:
        print(f"crash_campaign: {foryou} not found (set FORYOU)", file=sys.stderr)
        return 2

    # SIGTERM to the campaign: unwind through the finally blocks, killing servers.
    def on_term(signum, frame):  # noqa: ARG001
        raise SystemExit(143)
    signal.signal(signal.SIGTERM, on_term)

    t0 = time.monotonic()
    trials: list[Trial] = []
    sov_dir: Path | None = None
    try:
        sov = None
        if any(m != "open" for m in modes):
            sov_dir = Path(tempfile.mkdtemp(prefix="foryou-crash-keys-"))
            sov = make_sovereign(foryou, sov_dir)
        total = args.trials * len(modes)
        progress(f"crash campaign: {args.trials} trials x {len(modes)} modes ({', '.join(modes)}), "
                 f"seed {args.seed}, server {foryou}")
        for mode in modes:
            delays = random.Random(f"{args.seed}/{mode}")
            for i in range(args.trials):
                kill_delay = delays.uniform(*KILL_DELAY_S)
                done = len(trials)
                elapsed = time.monotonic() - t0
                eta = f", ~{elapsed / done * (total - done):.0f} s left" if done else ""
                progress(f"[{done + 1}/{total}] {mode} trial {i}: kill after {kill_delay * 1000:.0f} ms "
                         f"({elapsed:.0f} s elapsed{eta})")
                tr = run_trial(foryou, mode, i, kill_delay, args.seed, sov if mode != "open" else None)
                trials.append(tr)
                print(trial_line(tr), flush=True)
                if not tr.passed:
                    progress(f"[{done + 1}/{total}] {mode} trial {i} FAILED")
    except KeyboardInterrupt:
        progress("interrupted")
        kill_all_live()
        raise
    finally:
        kill_all_live()
        if sov_dir is not None:
            shutil.rmtree(sov_dir, ignore_errors=True)

    wall = time.monotonic() - t0
    summary = summarize(trials, wall)
    summary.update({"seed": args.seed, "trials_per_mode": args.trials, "server": foryou})
    print()
    for m, s in summary["modes"].items():
        print(summary_line(m, s))
    print(summary_line("overall", summary["overall"]))
    print(f"total time {wall:.1f} s")
    passed = summary["overall"]["passed"]
    failed = summary["overall"]["failed"]
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
