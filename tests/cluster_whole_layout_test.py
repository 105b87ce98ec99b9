#!/usr/bin/env python3
"""Cluster mode for a region primary for one jurisdiction (docs/SCALING.md,
"One stream per jurisdiction"): its log keeps whole records (no entries and
parts: the log is that jurisdiction's stream), its users' keys go to
FORYOU_KEYS_us_US, sg mirrors both, and `foryou restore --from-cluster
--policy` rebuilds the region from sg with every record whole and checked
against the chain. tests/cluster_test.py covers the split layout (us primary
for US and CA).

Run from the repository root: FORYOU=build/release/foryou python3 tests/cluster_whole_layout_test.py
Prints `ok` or raises; needs nats-server. Stops every process it started.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
import cluster_test as ct  # noqa: E402
import nats_mini  # noqa: E402
import nats_topology  # noqa: E402


def main() -> int:
    if shutil.which("nats-server") is None:
        print("FAIL setup: nats-server is not installed (scripts/install-deps.sh)")
        return 1
    d = Path(tempfile.mkdtemp(prefix="foryou-cluster-whole-"))
    topo = nats_topology.start(str(d / "nats"), ["us:3", "sg:1", "jp:1"])
    ok = False
    try:
        policy = ct.policy_toml().replace('primary_for = ["US", "CA"]', 'primary_for = ["US"]')
        assert policy != ct.policy_toml()
        (d / "policy.toml").write_text(policy)
        (d / "us.key").write_text(subprocess.run([ct.FORYOU, "keygen"], capture_output=True, text=True,
                                                 check=True).stdout)
        urls = ",".join(topo["regions"]["us"])
        a = ct.Replica("a", d, urls)
        a.start()
        code, body = a.call("POST", "/v1/videos", {"videos": ct.world()}, key=ct.ADMIN)
        assert code == 200, body
        for i in range(20):
            code, body = a.call("POST", "/v1/events", {"events": ct.events_for(f"{ct.USERS_PREFIX}w{i}", 0)})
            assert code == 200, body
        seq = a.log_seq()
        want = ct.exported_pairs(a, {f"{ct.USERS_PREFIX}w3"})
        js = nats_mini.Nats(topo["regions"]["us"][0])
        msg = js.js("STREAM.MSG.GET.FORYOU_LOG_us", {"seq": seq})["message"]
        assert b"Foryou-Entry" not in base64.b64decode(msg.get("hdrs", "")), "a one-jurisdiction log was split"
        assert js.js("STREAM.INFO.FORYOU_LOG_us_US")["state"]["messages"] == 0, "parts in a whole-record log"
        assert js.js("STREAM.INFO.FORYOU_KEYS_us_US")["state"]["messages"] >= 20, "the users' keys are not in US's stream"
        a.stop()
        deadline = time.time() + 30
        while True:
            st = {n: js.js("STREAM.INFO." + n).get("state", {}) for n in
                  ("FORYOU_LOG_us_AT_sg", "FORYOU_KEYS_us_US", "FORYOU_KEYS_us_US_AT_sg")}
            if (st["FORYOU_LOG_us_AT_sg"].get("last_seq", 0) >= seq and
                    st["FORYOU_KEYS_us_US_AT_sg"].get("messages") == st["FORYOU_KEYS_us_US"].get("messages")):
                break
            assert time.time() < deadline, f"sg does not mirror us: {st}"
            time.sleep(0.2)
        for s in ("FORYOU_LOG_us", "FORYOU_KEYS_us", "FORYOU_SNAP_us", "FORYOU_AUDIT_us", "FORYOU_LOG_us_US",
                  "FORYOU_KEYS_us_US"):  # the region is lost
            assert js.js("STREAM.DELETE." + s).get("success"), s
        rd = d / "restored"
        out = subprocess.run([ct.FORYOU, "restore", "--from-cluster", topo["regions"]["sg"][0], "--backup-region", "sg",
                              "--source-region", "us", "--data-dir", str(rd), "--region-key-file", str(d / "us.key"),
                              "--policy", str(d / "policy.toml"), "--json"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-1500:]
        rep = json.loads(out.stdout)
        assert rep["records"] == seq and rep["partial_records"] == 0, rep
        assert rep["jurisdictions"] == ["US"] and rep["jurisdictions_missing"] == [], rep
        assert rep["users"] == 20 and rep["keys"] == 20, rep
        srv = ct.Replica("restored", d, urls)
        srv.argv = lambda: [ct.FORYOU, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(rd), "--policy",
                            str(d / "policy.toml"), "--region", "us", "--region-key-file", str(d / "us.key")]
        srv.start()
        try:
            got = ct.exported_pairs(srv, {f"{ct.USERS_PREFIX}w3"})
        finally:
            srv.stop()
        assert got == want, (got, want)
        print(f"ok whole-record log of a one-jurisdiction region: {seq} records, restored from sg, each checked")
        ok = True
    finally:
        for p in ct.PROCS:
            if p.poll() is None:
                p.terminate()
        for p in ct.PROCS:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        nats_topology.stop(str(d / "nats"))
        subprocess.run(["pkill", "-f", f"nats-server -c {d / 'nats'}"], check=False)
        if ok:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"logs kept in {d}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
