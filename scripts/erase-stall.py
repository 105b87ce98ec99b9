#!/usr/bin/env python3
"""How long writes wait while a plaintext erasure runs.

Starts `foryou serve` on a copy of a store (open mode: no region key, so the
erasure rewrites the log), posts one-event batches from WRITERS clients in a
loop, erases one user in the middle, and prints the erasure's time and the
writes' latency before and during it. Alternates the binaries given, ROUNDS
times each, so that binaries compared share the hour (absolute times drift
2x from hour to hour on this shared machine: compare within one run).

  scripts/erase-stall.py STORE ROUNDS BINARY... [--writers N] [--user ID]

STORE is a store made by `foryou bench --data-dir STORE` (open mode); it is
copied for every start and never changed. Example (docs/PERFORMANCE.md,
"Erasure and writers"):

  build/release/foryou bench --users 200000 --videos 100000 --duration 2 \\
      --data-dir /tmp/erase-store > /dev/null
  scripts/erase-stall.py /tmp/erase-store 2 build/release/foryou

Writes nothing in the repository. Standard library only.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def ready(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/readyz")
        r = c.getresponse()
        r.read()
        return r.status == 200
    except OSError:
        return False


def start(binary, data, logdir):
    out = open(os.path.join(logdir, "out"), "w")
    err = open(os.path.join(logdir, "err"), "w")
    p = subprocess.Popen([binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"], stdout=out, stderr=err)
    deadline = time.time() + 600
    while time.time() < deadline:
        if p.poll() is not None:
            sys.exit(f"erase-stall: {binary} exited: " + open(os.path.join(logdir, "err")).read()[-2000:])
        m = re.search(r"listening on \S*:(\d+)", open(os.path.join(logdir, "out")).read())
        if m and ready(int(m.group(1))):
            return p, int(m.group(1))
        time.sleep(0.05)
    p.kill()
    sys.exit("erase-stall: the server did not start in 600 s")


def writer(port, wid, stop, samples):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    video = "v1"
    i = 0
    while not stop.is_set():
        body = json.dumps({"events": [{"user_id": f"writer{wid}-{i % 1000}", "video_id": video, "type": "play",
                                       "watch_ratio": 1.0}]})
        t0 = time.monotonic()
        c.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        t1 = time.monotonic()
        if r.status != 200:
            sys.exit(f"erase-stall: a write was answered {r.status}")
        samples.append((t0, t1))
        i += 1


def one_round(binary, store, writers, user):
    with tempfile.TemporaryDirectory(prefix="foryou-erase-") as tmp:
        data = os.path.join(tmp, "data")
        shutil.copytree(store, data)
        p, port = start(binary, data, tmp)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            stop = threading.Event()
            samples = [[] for _ in range(writers)]
            threads = [threading.Thread(target=writer, args=(port, w, stop, samples[w])) for w in range(writers)]
            for t in threads:
                t.start()
            time.sleep(2)
            e0 = time.monotonic()
            c.request("DELETE", f"/v1/users/{user}")
            r = c.getresponse()
            r.read()
            e1 = time.monotonic()
            if r.status != 200:
                sys.exit(f"erase-stall: DELETE /v1/users/{user} was answered {r.status}")
            time.sleep(1)
            stop.set()
            for t in threads:
                t.join()
        finally:
            p.terminate()
            p.wait()
    all_samples = [s for w in samples for s in w]
    before = [t1 - t0 for t0, t1 in all_samples if t1 < e0]
    during = [t1 - t0 for t0, t1 in all_samples if t1 >= e0 and t0 <= e1]
    return {
        "erase_s": e1 - e0,
        "writes_before_p50_ms": 1000 * statistics.median(before) if before else None,
        "writes_during": len(during),
        "writes_during_max_ms": 1000 * max(during) if during else None,
        "writes_during_p50_ms": 1000 * statistics.median(during) if during else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("rounds", type=int)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--user", default="u1")
    a = ap.parse_args()
    for r in range(1, a.rounds + 1):
        for b in a.binaries:
            res = one_round(b, a.store, a.writers, a.user)
            print(f"{b}\tround {r}\terase {res['erase_s']:.2f} s\twrites before: p50 "
                  f"{res['writes_before_p50_ms']:.2f} ms\tduring: {res['writes_during']} writes, p50 "
                  f"{res['writes_during_p50_ms'] or 0:.2f} ms, max {res['writes_during_max_ms'] or 0:.0f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
