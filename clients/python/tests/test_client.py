#!/usr/bin/env python3
"""foryou_client against the real server: what a user of the client relies on.

Starts `foryou serve` on 127.0.0.1:0 with a fresh temporary store, twice:

  OpenModeTest    open mode with --demo (the KuaiRec demo world): feeds with
                  reasons, events that change the user, export, erasure,
                  all-or-nothing batches and their 400s, video upserts,
                  fence (503 + Retry-After), import (409 when present),
                  percent-encoded ids, keep-alive and reconnection after the
                  server's idle timeout.
  PolicyModeTest  under a small policy (regions us and sg; a service, an admin
                  and an auditor key): 401 without or with a wrong key, 403 for
                  the auditor, 421 + home_region for an SG user asked of us,
                  400 without a jurisdiction, admin-only migration endpoints.

The binary is $FORYOU (a relative path is tried from the working directory,
then from the repository root), else build/release/foryou under the
repository root. Standard library only (Python 3.11); the package is imported
from this file's directory, whatever the working directory:

    FORYOU=build/release/foryou python3 clients/python/tests/test_client.py

Every server is stopped by its PID when its test class ends (SIGTERM, then
SIGKILL), and gets SIGTERM if this process dies first (Linux). About 20 s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import json
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent            # clients/python
REPO_ROOT = HERE.parents[2]           # clients/python/tests -> repository root
sys.path.insert(0, str(PACKAGE_ROOT))

from foryou_client import EVENT_TYPES, Client, ForyouError, event  # noqa: E402

START_TIMEOUT_S = 40.0


def foryou_binary() -> str:
    value = os.environ.get("FORYOU")
    if not value:
        return str(REPO_ROOT / "build" / "release" / "foryou")
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    return str(path.resolve())


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except Exception:
        pass


class Server:
    """One `foryou serve` process on 127.0.0.1:0; stop() ends it by its PID."""

    def __init__(self, workdir: Path, name: str, *args: str) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        cmd = [foryou_binary(), "serve", "--listen", "127.0.0.1:0",
               "--data-dir", str(workdir / f"{name}-data"), "--threads", "2",
               "--log-level", "warn", *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=str(workdir),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        self.pid = self.proc.pid
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.out_path.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name}: server did not start (exit code {self.proc.returncode}); "
                           f"stderr: {self.err_path.read_text()[-600:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class ServerTestCase(unittest.TestCase):
    """Starts one server per class (setUpClass), stops it by PID when the class ends."""

    server: Server
    workdir: Path

    @classmethod
    def start(cls, name: str, *args: str) -> Server:
        cls.workdir = Path(tempfile.mkdtemp(prefix=f"foryou-client-{name}-"))
        cls.addClassCleanup(shutil.rmtree, cls.workdir, ignore_errors=True)
        server = Server(cls.workdir, name, *args)
        cls.addClassCleanup(server.stop)   # runs even if the rest of setUpClass fails
        return server

    def assertError(self, ctx: unittest.case._AssertRaisesContext, status: int,
                    code: str, message_part: Optional[str] = None) -> ForyouError:
        err = ctx.exception
        self.assertIsInstance(err, ForyouError)
        self.assertEqual((err.status, err.code), (status, code), f"{err} (body {err.body!r})")
        if message_part is not None:
            self.assertIn(message_part, err.message)
        return err


class OpenModeTest(ServerTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.server = cls.start("open", "--demo")
        cls.fy = Client(cls.server.url)
        cls.addClassCleanup(cls.fy.close)

    # --- operational

    def test_healthz_and_metrics(self) -> None:
        self.assertEqual(self.fy.healthz(), {"status": "ok"})
        text = self.fy.metrics()
        m = re.search(r"^foryou_videos (\d+)", text, re.M)
        self.assertIsNotNone(m, text[:300])
        self.assertGreater(int(m.group(1)), 1000)   # the demo world's catalog
        self.assertIn("foryou_http_requests_total", text)

    def test_probes_and_request_ids(self) -> None:
        self.assertEqual(self.fy.livez(), {"status": "alive"})
        self.assertEqual(self.fy.readyz(), {"status": "ok"})
        made = self.fy.get_video("v1305").request_id
        self.assertRegex(made, r"^[0-9a-f]{16}$")   # one the server made
        traced = Client(self.fy.base_url)
        traced.request_id = "trace-7"
        try:
            self.assertEqual(traced.get_video("v1305").request_id, "trace-7")
            with self.assertRaises(ForyouError) as e:
                traced.get_video("no-such-video")
            self.assertEqual(e.exception.headers.get("X-Request-Id"), "trace-7")
        finally:
            traced.close()

    # --- feed

    def test_feed_returns_items_with_reasons(self) -> None:
        page = self.fy.feed("u14", n=5)
        self.assertEqual(page.status, 200)
        self.assertEqual(page["user_id"], "u14")
        items = page["items"]
        self.assertTrue(1 <= len(items) <= 5, items)
        self.assertGreaterEqual(page["candidates"], len(items))
        for item in items:
            self.assertIsInstance(item["video_id"], str)
            self.assertIsInstance(item["score"], float)
            self.assertTrue(item["sources"], item)
            self.assertTrue(item["reasons"], item)
            self.assertTrue(all(isinstance(r, str) and r for r in item["reasons"]), item)
        self.assertEqual(len({i["video_id"] for i in items}), len(items))

    def test_explained_feed_has_the_score_components(self) -> None:
        items = self.fy.feed("u14", n=3, explain=True)["items"]
        self.assertEqual(len(items), 3)
        for it in items:
            total = sum(c["weight"] * c["probability"] for c in it["components"])
            self.assertAlmostEqual(total, it["score"], places=3)
            self.assertTrue(it["creator_id"])

    def test_feed_language_and_cold_start(self) -> None:
        page = self.fy.feed("py-never-seen", n=3, language="en")
        self.assertTrue(page["items"], page)   # an unknown user gets a cold-start feed
        with self.assertRaises(ForyouError) as ctx:
            self.fy.feed("u14", n=0)
        self.assertError(ctx, 400, "invalid_argument", "n:")

    # --- events change the user

    def test_event_changes_the_users_state_and_feed(self) -> None:
        user = "py:event@client"   # ':' and '@' are allowed in ids
        with self.assertRaises(ForyouError) as ctx:
            self.fy.get_user(user)
        self.assertError(ctx, 404, "not_found")
        video = self.fy.feed(user, n=5)["items"][0]["video_id"]
        likes_before = self.fy.get_video(video)["stats"]["likes"]

        ack = self.fy.ingest_events([event(user, video, "play", watch_ratio=1.0),
                                     event(user, video, "like")])
        self.assertEqual(ack, {"accepted": 2})
        self.assertIsNone(ack.backup)   # no --backup-to

        profile = self.fy.get_user(user)
        self.assertEqual(profile["id"], user)
        self.assertEqual(profile["event_counts"]["play"], 1)
        self.assertEqual(profile["event_counts"]["like"], 1)
        self.assertEqual(profile["videos_seen"], 1)
        self.assertIn(video, profile["liked"])
        self.assertEqual(self.fy.get_video(video)["stats"]["likes"], likes_before + 1)
        # Never a video the user has an event for.
        later = [i["video_id"] for i in self.fy.feed(user, n=50)["items"]]
        self.assertTrue(later)
        self.assertNotIn(video, later)

    def test_export_contains_the_events(self) -> None:
        user = "py-export"
        now = int(time.time() * 1000)
        sent = [event(user, "v1305", "play", watch_ratio=0.5, ts=now - 2000),
                event(user, "v389", "share", ts=now - 1000),
                event(user, "v389", "not_interested", ts=now)]
        self.fy.ingest_events(sent)
        export = self.fy.export_user(user)
        self.assertEqual(export["user_id"], user)
        self.assertEqual(export["profile"]["id"], user)
        got = [{k: e[k] for k in ("video_id", "type", "ts")} for e in export["events"]]
        self.assertEqual(got, [{k: e[k] for k in ("video_id", "type", "ts")} for e in sent])
        self.assertEqual(export["events"][0]["watch_ratio"], 0.5)
        self.assertEqual(len(export["model"]["embedding"]), 32)
        self.assertIn("recently_served", export)

    def test_erase_then_the_user_is_gone(self) -> None:
        user = "py-erase"
        self.fy.ingest_events([event(user, "v1305", "like")])
        self.assertEqual(self.fy.get_user(user)["id"], user)
        self.assertEqual(self.fy.erase_user(user), {"erased": user})
        with self.assertRaises(ForyouError) as ctx:
            self.fy.get_user(user)
        self.assertError(ctx, 404, "not_found", user)
        with self.assertRaises(ForyouError) as ctx:
            self.fy.erase_user(user)
        self.assertError(ctx, 404, "not_found")

    # --- bad input

    def test_bad_event_is_400_invalid_argument_and_changes_nothing(self) -> None:
        user = "py-bad-event"
        with self.assertRaises(ForyouError) as ctx:
            self.fy.ingest_events([event(user, "no-such-video", "like")])
        err = self.assertError(ctx, 400, "invalid_argument", "events[0].video_id")
        self.assertEqual(err.details["code"], "invalid_argument")
        self.assertIsNone(err.home_region)
        # A batch is all or nothing: the good first event is not applied either.
        with self.assertRaises(ForyouError) as ctx:
            self.fy.ingest_events([event(user, "v1305", "like"),
                                   event(user, "v1305", "bogus")])
        self.assertError(ctx, 400, "invalid_argument", "events[1].type")
        with self.assertRaises(ForyouError) as ctx:
            self.fy.ingest_events([event(user, "v1305", "play")])   # no watch_ratio/watch_ms
        self.assertError(ctx, 400, "invalid_argument", "events[0].watch_ms")
        with self.assertRaises(ForyouError) as ctx:
            self.fy.get_user(user)
        self.assertError(ctx, 404, "not_found")
        with self.assertRaises(TypeError):
            self.fy.ingest_events(event(user, "v1305", "like"))  # a dict, not a list
        self.assertIn("not_interested", EVENT_TYPES)

    # --- catalog

    def test_upsert_and_get_video_keeps_counters(self) -> None:
        vid = "py-video.1"
        ack = self.fy.upsert_videos([{"id": vid, "creator_id": "py-creator", "duration_ms": 12000,
                                      "tags": ["cats", "funny"], "language": "en"}])
        self.assertEqual(ack, {"upserted": 1})
        video = self.fy.get_video(vid)
        self.assertEqual((video["id"], video["creator_id"], video["duration_ms"]),
                         (vid, "py-creator", 12000))
        self.assertEqual(video["tags"], ["cats", "funny"])
        self.assertEqual(video["stats"]["likes"], 0)
        self.fy.ingest_events([event("py-video-fan", vid, "like")])
        self.fy.upsert_videos([{"id": vid, "creator_id": "py-creator", "duration_ms": 12000,
                                "tags": ["dogs"]}])
        video = self.fy.get_video(vid)
        self.assertEqual(video["tags"], ["dogs"])
        self.assertEqual(video["stats"]["likes"], 1)   # replacing metadata keeps counters
        with self.assertRaises(ForyouError) as ctx:
            self.fy.get_video("py-no-such-video")
        self.assertError(ctx, 404, "not_found")
        with self.assertRaises(ForyouError) as ctx:
            self.fy.upsert_videos([{"id": "py-bad", "creator_id": "c", "duration_ms": 0}])
        self.assertError(ctx, 400, "invalid_argument", "duration_ms")

    # --- migration endpoints (open mode lets anyone call them)

    def test_fence_refuses_writes_with_retry_after(self) -> None:
        user = "py-fenced"
        self.fy.ingest_events([event(user, "v1305", "like")])
        self.assertEqual(self.fy.fence_user(user), {"user_id": user, "fenced": True})
        with self.assertRaises(ForyouError) as ctx:
            self.fy.ingest_events([event(user, "v389", "like")])
        err = self.assertError(ctx, 503, "unavailable")
        self.assertEqual(err.retry_after, 5.0)
        self.assertEqual(self.fy.unfence_user(user), {"user_id": user, "fenced": False})
        self.assertEqual(self.fy.ingest_events([event(user, "v389", "like")]), {"accepted": 1})
        with self.assertRaises(ForyouError) as ctx:
            self.fy.fence_user("py-nobody")
        self.assertError(ctx, 404, "not_found")

    def test_export_erase_import_round_trip(self) -> None:
        user = "py-migrant"
        self.fy.ingest_events([event(user, "v1305", "play", watch_ms=5000),
                               event(user, "v389", "like")])
        export = self.fy.export_user(user)
        with self.assertRaises(ForyouError) as ctx:
            self.fy.import_user(user, export)
        self.assertError(ctx, 409, "conflict")
        self.fy.erase_user(user)
        answer = self.fy.import_user(user, export)
        self.assertEqual((answer["imported"], answer["user_id"]), (2, user))
        self.assertEqual(self.fy.get_user(user)["event_counts"]["like"], 1)
        # A bare list of events works too.
        self.assertEqual(self.fy.import_user("py-migrant-2", [
            {"video_id": "v389", "type": "share"}])["imported"], 1)

    # --- transport

    def test_ids_are_percent_encoded_in_paths(self) -> None:
        for odd in ("a/b", "x?y=1", "p%41th", "#frag"):
            with self.assertRaises(ForyouError) as ctx:
                self.fy.get_user(odd)
            # The user was looked up by exactly that id (not another route, not a decoded id).
            self.assertError(ctx, 404, "not_found", f"'{odd}'")
        with self.assertRaises(ValueError):
            self.fy.get_user("")

    def test_backup_endpoints_are_refused_in_open_mode(self) -> None:
        with self.assertRaises(ForyouError) as ctx:
            self.fy.backup_status("us")
        self.assertError(ctx, 403, "forbidden")

    def test_keep_alive_reuses_one_connection_and_survives_the_idle_timeout(self) -> None:
        with Client(self.server.url) as fy:
            fy.healthz()
            sock = fy._conn.sock
            fy.get_video("v1305")
            fy.feed("u14", n=1)
            with self.assertRaises(ForyouError):
                fy.get_user("py-nobody")
            self.assertIs(fy._conn.sock, sock)          # one connection for all four
            time.sleep(5.5)                              # server.idle_timeout_ms is 5 s
            self.assertEqual(fy.healthz(), {"status": "ok"})
            self.assertEqual(fy.ingest_events([event("py-idle", "v1305", "like")]),
                             {"accepted": 1})            # a write after the close, not lost


POLICY = """\
[[regions]]
name = "us"
jurisdiction = "US"
operator = "Test Operator"
primary_for = ["US"]

[[regions]]
name = "sg"
jurisdiction = "SG"
operator = "Test Operator"
primary_for = ["SG"]

[[principals]]
name = "us-service"
key_sha256 = "{service}"
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "migrations"
key_sha256 = "{admin}"
role = "admin"
read = ["*"]
write = ["*"]

[[principals]]
name = "outside-auditor"
key_sha256 = "{auditor}"
role = "auditor"
"""

SERVICE_KEY, ADMIN_KEY, AUDITOR_KEY = "py-service-secret", "py-admin-secret", "py-auditor-secret"


class PolicyModeTest(ServerTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        import hashlib
        workdir = Path(tempfile.mkdtemp(prefix="foryou-client-keys-"))
        cls.addClassCleanup(shutil.rmtree, workdir, ignore_errors=True)
        key_file = workdir / "us.region-key"
        key_file.write_bytes(subprocess.run([foryou_binary(), "keygen"], check=True,
                                            capture_output=True, timeout=30).stdout)
        sha = lambda k: hashlib.sha256(k.encode()).hexdigest()   # noqa: E731
        policy = workdir / "policy.toml"
        policy.write_text(POLICY.format(service=sha(SERVICE_KEY), admin=sha(ADMIN_KEY),
                                        auditor=sha(AUDITOR_KEY)))
        cls.server = cls.start("us", "--policy", str(policy), "--region", "us",
                               "--region-key-file", str(key_file))
        url = cls.server.url
        cls.svc = Client(url, api_key=SERVICE_KEY, jurisdiction="US")
        cls.admin = Client(url, api_key=ADMIN_KEY, jurisdiction="US")
        cls.auditor = Client(url, api_key=AUDITOR_KEY, jurisdiction="US")
        for c in (cls.svc, cls.admin, cls.auditor):
            cls.addClassCleanup(c.close)
        cls.svc.upsert_videos([
            {"id": "pv1", "creator_id": "c1", "duration_ms": 10000, "tags": ["cats"]},
            {"id": "pv2", "creator_id": "c2", "duration_ms": 20000, "tags": ["dogs"]},
            {"id": "pv3", "creator_id": "c3", "duration_ms": 30000, "tags": ["cars"]},
        ])

    def test_service_key_reads_and_writes_its_jurisdiction(self) -> None:
        self.assertEqual(self.svc.ingest_events([event("pu-svc", "pv1", "like")]), {"accepted": 1})
        self.assertEqual(self.svc.get_user("pu-svc")["event_counts"]["like"], 1)
        self.assertTrue(self.svc.feed("pu-svc", n=2)["items"])
        export = self.svc.export_user("pu-svc")
        self.assertEqual(export["home_jurisdiction"], "US")
        self.assertEqual([e["video_id"] for e in export["events"]], ["pv1"])

    def test_missing_or_unknown_key_is_401(self) -> None:
        for key in (None, "not-a-key"):
            with Client(self.server.url, api_key=key, jurisdiction="US") as anon:
                with self.assertRaises(ForyouError) as ctx:
                    anon.feed("pu-svc")
                self.assertError(ctx, 401, "unauthenticated")
                with self.assertRaises(ForyouError) as ctx:
                    anon.ingest_events([event("pu-anon", "pv1", "like")])
                self.assertError(ctx, 401, "unauthenticated")
                self.assertEqual(anon.get_video("pv1")["id"], "pv1")   # open endpoint
                self.assertEqual(anon.healthz(), {"status": "ok"})

    def test_auditor_key_is_403_for_personal_data(self) -> None:
        self.svc.ingest_events([event("pu-audited", "pv2", "like")])
        for call in (lambda: self.auditor.get_user("pu-audited"),
                     lambda: self.auditor.export_user("pu-audited"),
                     lambda: self.auditor.feed("pu-audited"),
                     lambda: self.auditor.ingest_events([event("pu-audited", "pv1", "like")])):
            with self.assertRaises(ForyouError) as ctx:
                call()
            self.assertError(ctx, 403, "forbidden", "auditor")
        self.assertEqual(self.auditor.get_video("pv2")["stats"]["likes"], 1)

    def test_region_audit_log_and_residency_follow_the_roles(self) -> None:
        self.svc.ingest_events([event("pu-region", "pv3", "like")])
        region = self.svc.region()
        self.assertEqual(region["region"]["name"], "us")
        self.assertEqual(region["principal"]["role"], "service")
        self.assertNotIn("audit_read", region["principal"]["may"])
        with self.assertRaises(ForyouError) as ctx:
            self.svc.audit_head()
        self.assertError(ctx, 403, "forbidden")
        head = self.auditor.audit_head()
        page = self.auditor.audit_entries(0, 10_000)
        self.assertGreaterEqual(page["tree_size"], head["tree_size"])
        self.assertEqual(len(page["entries"]), page["tree_size"])
        self.assertIn("events.write", {e["action"] for e in page["entries"]})
        self.assertNotIn("pu-region", json.dumps(page))   # users by pseudonym only
        self.assertTrue(any(e["subject"].startswith("p:") for e in page["entries"]))
        held = {h["jurisdiction"]: h for h in self.admin.residency()["held"]}
        self.assertEqual(held["US"]["held_as"], "primary")
        self.assertNotIn("pu-region", json.dumps(self.auditor.residency()))

    def test_wrong_jurisdiction_is_421_with_home_region(self) -> None:
        sg = self.svc.with_options(jurisdiction="SG")
        self.addCleanup(sg.close)
        for call in (lambda: sg.feed("pu-sg"), lambda: sg.get_user("pu-sg"),
                     lambda: sg.ingest_events([event("pu-sg", "pv1", "like")])):
            with self.assertRaises(ForyouError) as ctx:
                call()
            err = self.assertError(ctx, 421, "misdirected")
            self.assertEqual(err.home_region, "sg")
        # Nothing was written here for that user.
        with self.assertRaises(ForyouError) as ctx:
            self.svc.get_user("pu-sg")
        self.assertError(ctx, 404, "not_found")

    def test_missing_jurisdiction_is_400(self) -> None:
        with Client(self.server.url, api_key=SERVICE_KEY) as nojur:
            with self.assertRaises(ForyouError) as ctx:
                nojur.get_user("pu-svc")
            self.assertError(ctx, 400, "invalid_argument", "X-Foryou-Jurisdiction")

    def test_migration_endpoints_are_admin_only(self) -> None:
        user = "pu-moving"
        self.svc.ingest_events([event(user, "pv3", "play", watch_ratio=0.9)])
        with self.assertRaises(ForyouError) as ctx:
            self.svc.fence_user(user)
        self.assertError(ctx, 403, "forbidden", "admin")
        self.assertTrue(self.admin.fence_user(user)["fenced"])
        with self.assertRaises(ForyouError) as ctx:
            self.svc.ingest_events([event(user, "pv1", "like")])
        self.assertEqual(self.assertError(ctx, 503, "unavailable").retry_after, 5.0)
        self.assertFalse(self.admin.unfence_user(user)["fenced"])
        export = self.svc.export_user(user)
        with self.assertRaises(ForyouError) as ctx:
            self.svc.import_user("pu-arriving", export["events"])
        self.assertError(ctx, 403, "forbidden")
        with self.assertRaises(ForyouError) as ctx:
            self.admin.import_user(user, export)
        self.assertError(ctx, 409, "conflict")
        arrived = self.admin.import_user("pu-arriving", export["events"])
        self.assertEqual((arrived["imported"], arrived["home_jurisdiction"]), (1, "US"))

    def test_backup_status_needs_a_replication_key(self) -> None:
        with self.assertRaises(ForyouError) as ctx:
            self.admin.backup_status("us")
        self.assertError(ctx, 403, "forbidden")


if __name__ == "__main__":
    unittest.main(verbosity=2)
