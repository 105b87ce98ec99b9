"""The foryou client: :class:`Client`, :class:`ForyouError`, :class:`Answer`, :func:`event`.

See the package docstring (``foryou_client``) for the contract; docs/API.md
for what each endpoint does.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import http.client
import json
import select
import ssl
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

__all__ = ["Client", "ForyouError", "Answer", "event", "EVENT_TYPES"]

USER_AGENT = "foryou-client-python/0.1.0"

#: The event types docs/API.md lists (the server is the authority: a type it
#: does not know is refused with 400 ``invalid_argument``).
EVENT_TYPES: tuple[str, ...] = (
    "impression", "play", "like", "unlike", "share", "comment", "follow",
    "not_interested", "skip",
)

Headers = Union[http.client.HTTPMessage, Mapping[str, str], Iterable[tuple[str, str]], None]
Timestamp = Union[int, _dt.datetime, None]


def _header(headers: Headers, name: str) -> Optional[str]:
    """Case-insensitive lookup of one header in any of the shapes ``Headers`` allows."""
    if headers is None:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    lname = name.lower()
    for k, v in items:
        if k.lower() == lname:
            return v
    return None


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


class ForyouError(Exception):
    """The server answered with an error status (or a 2xx that is not JSON).

    Attributes:
        status: the HTTP status (400, 401, 403, 404, 405, 409, 413, 421, 431, 500, 503, ...).
        code: ``error.code`` from the body (``invalid_argument``, ``unauthenticated``,
            ``forbidden``, ``not_found``, ``conflict``, ``misdirected``,
            ``unavailable``, ...); ``"unknown"`` when the body is not foryou's
            error JSON (e.g. a proxy's HTML page), ``"invalid_response"`` for a
            2xx answer that is not a JSON object.
        message: ``error.message``, which names the problem precisely (for a
            batch: the index of the first bad element and its field).
        body: the raw response body (bytes).
        headers: the response headers.
        details: the whole ``error`` object (extra fields such as ``home_region``
            or ``last_seq`` included); ``{}`` if the body had none.
        home_region: for 421 ``misdirected``, the region that holds the user's
            data (call that region's server instead; foryou never proxies).
        retry_after: seconds from the ``Retry-After`` header (503 ``unavailable``
            sends 5), or None.
    """

    def __init__(self, status: int, code: str, message: str, body: bytes = b"",
                 headers: Headers = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.headers = headers
        self.details: dict[str, Any] = {}
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            self.details = parsed["error"]
        home = self.details.get("home_region")
        self.home_region: Optional[str] = home if isinstance(home, str) else None
        self.retry_after: Optional[float] = _parse_retry_after(_header(headers, "Retry-After"))

    @classmethod
    def from_response(cls, status: int, body: bytes, headers: Headers) -> "ForyouError":
        """Build the error from a response, reading ``{"error": {"code", "message"}}``."""
        code, message = "unknown", ""
        try:
            doc = json.loads(body)
            err = doc.get("error")
            if isinstance(err, dict):
                code = str(err.get("code", code))
                message = str(err.get("message", ""))
            elif isinstance(doc.get("status"), str):
                # A probe's answer: {"status": "starting" | "failing", "reason"}.
                code = doc["status"]
                message = str(doc.get("reason", ""))
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        if not message:
            message = body[:200].decode("utf-8", "replace") or http.client.responses.get(status, "")
        return cls(status, code, message, body, headers)

    def __reduce__(self):  # picklable despite the custom __init__
        headers = list(self.headers.items()) if hasattr(self.headers, "items") else self.headers
        return (type(self), (self.status, self.code, self.message, self.body, headers))


class Answer(dict):
    """A JSON answer: the server's object as a ``dict``, plus ``status`` and ``headers``."""

    def __init__(self, data: Mapping[str, Any], status: int, headers: Headers) -> None:
        super().__init__(data)
        self.status = status
        self.headers = headers

    @property
    def request_id(self) -> Optional[str]:
        """``X-Request-Id`` of the answer: in the server's access log and audit entries."""
        return _header(self.headers, "X-Request-Id")

    @property
    def backup(self) -> Optional[str]:
        """``X-Foryou-Backup`` of a write (``confirmed`` or ``pending``), None without backups."""
        return _header(self.headers, "X-Foryou-Backup")


def event(user_id: str, video_id: str, kind: str, *, watch_ratio: Optional[float] = None,
          watch_ms: Optional[int] = None, ts: Timestamp = None) -> dict[str, Any]:
    """One interaction event for :meth:`Client.ingest_events`.

    Args:
        user_id: the user (1 to 256 characters from ``A-Z a-z 0-9 _ - . : @``).
        video_id: an existing video (an unknown one makes the batch 400).
        kind: the event ``type``: one of :data:`EVENT_TYPES`. ``follow``
            follows the creator of ``video_id``.
        watch_ratio: watched time / duration (above 1 means replays); a
            ``play`` needs it or ``watch_ms``.
        watch_ms: watched milliseconds, converted with the video's duration.
        ts: milliseconds since the Unix epoch, or a ``datetime`` (naive means
            local time); the server's now when omitted.

    Returns the event as the dict the API takes, without the fields left out.
    """
    ev: dict[str, Any] = {"user_id": user_id, "video_id": video_id, "type": kind}
    if watch_ratio is not None:
        ev["watch_ratio"] = watch_ratio
    if watch_ms is not None:
        ev["watch_ms"] = watch_ms
    if ts is not None:
        ev["ts"] = int(ts.timestamp() * 1000) if isinstance(ts, _dt.datetime) else ts
    return ev


_KEEP = object()  # "not given" for Client.with_options


class Client:
    """A connection to one foryou server. See the package docstring for the contract.

    Args:
        base_url: ``http://host:port`` or ``https://host:port``, optionally with
            a path prefix (``https://gw.example/foryou``).
        api_key: sent as ``Authorization: Bearer KEY`` (needed under a policy).
        jurisdiction: sent as ``X-Foryou-Jurisdiction`` (the user's home
            jurisdiction; needed under a policy for personal data, and for an
            import it sets the user's new home).
        timeout: seconds for connecting and for each socket read or write.
        ssl_context: for ``https://``; the system's default verification if None.
    """

    def __init__(self, base_url: str, api_key: Optional[str] = None,
                 jurisdiction: Optional[str] = None, timeout: float = 10.0, *,
                 ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http://HOST[:PORT] or https://...: {base_url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"base_url takes no query, fragment or credentials: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.jurisdiction = jurisdiction
        self.timeout = timeout
        # Sent as X-Request-Id with every request while set (1 to 64
        # characters of A-Z a-z 0-9 . _ -), so that the server's access log
        # and audit entries carry the caller's own trace id.
        self.request_id: Optional[str] = None
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl_context = ssl_context
        self._conn: Optional[http.client.HTTPConnection] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        key = "set" if self.api_key else "none"
        return f"Client({self.base_url!r}, api_key={key}, jurisdiction={self.jurisdiction!r})"

    def with_options(self, *, api_key: Any = _KEEP, jurisdiction: Any = _KEEP,
                     timeout: Any = _KEEP) -> "Client":
        """A new client (with its own connection) to the same server, some options changed.

        E.g. ``admin.with_options(jurisdiction="SG")`` for one user of another
        jurisdiction. Pass ``None`` to drop a key or jurisdiction.
        """
        return Client(self.base_url,
                      api_key=self.api_key if api_key is _KEEP else api_key,
                      jurisdiction=self.jurisdiction if jurisdiction is _KEEP else jurisdiction,
                      timeout=self.timeout if timeout is _KEEP else timeout,
                      ssl_context=self._ssl_context)

    # ---------------------------------------------------------------- connection

    def close(self) -> None:
        """Close the kept-alive connection (a later request opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The connection to use and whether it is a reused, already open one."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            # An idle keep-alive connection has nothing to read; if it is
            # readable, the server closed it (server.idle_timeout_ms) or broke it.
            try:
                readable, _, _ = select.select([conn.sock], [], [], 0)
            except (OSError, ValueError):
                readable = [True]
            if readable:
                self._drop()
                conn = None
        if conn is None:
            if self._https:
                ctx = self._ssl_context or ssl.create_default_context()
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                   context=ctx)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._conn = conn
        return conn, conn.sock is not None

    def _request(self, method: str, path: str, *, query: Optional[Mapping[str, Any]] = None,
                 body: Optional[bytes] = None, content_type: Optional[str] = None,
                 accept: str = "application/json") -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request; return (status, headers, body) of a 2xx, raise ForyouError otherwise."""
        target = self._prefix + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                target += "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.jurisdiction is not None:
            headers["X-Foryou-Jurisdiction"] = self.jurisdiction
        if self.request_id is not None:
            headers["X-Request-Id"] = self.request_id
        if content_type is not None:
            headers["Content-Type"] = content_type
        with self._lock:
            for attempt in (1, 2):
                conn, reused = self._connection()
                sent = False
                try:
                    conn.request(method, target, body=body, headers=headers)
                    sent = True
                    resp = conn.getresponse()
                    data = resp.read()
                except (ConnectionError, http.client.BadStatusLine):
                    # RemoteDisconnected is both. On a reused connection this is
                    # most likely the server's idle close racing our request.
                    # Sent again, once, on a new connection: any request the
                    # server refused while it was being sent (it cannot have
                    # answered it), and a read whose answer did not come; a
                    # write whose answer did not come is reported, not repeated.
                    self._drop()
                    if reused and attempt == 1 and (not sent or method in ("GET", "HEAD")):
                        continue
                    raise
                except BaseException:
                    self._drop()
                    raise
                if resp.will_close:
                    self._drop()
                break
        if not 200 <= resp.status < 300:
            raise ForyouError.from_response(resp.status, data, resp.headers)
        return resp.status, resp.headers, data

    def _json(self, method: str, path: str, payload: Any = None, *,
              query: Optional[Mapping[str, Any]] = None, raw: Optional[bytes] = None,
              content_type: Optional[str] = None) -> Answer:
        body, ctype = raw, content_type
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
            ctype = "application/json"
        status, headers, data = self._request(method, path, query=query, body=body,
                                              content_type=ctype)
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict):
            raise ForyouError(status, "invalid_response",
                              f"expected a JSON object from {method} {path}, got {data[:200]!r}",
                              data, headers)
        return Answer(parsed, status, headers)

    @staticmethod
    def _id(value: str, what: str = "id") -> str:
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a str, not {type(value).__name__}")
        if not value:
            raise ValueError(f"{what} must not be empty")
        return urllib.parse.quote(value, safe="")

    @staticmethod
    def _batch(items: Iterable[Mapping[str, Any]], what: str) -> list[Mapping[str, Any]]:
        if isinstance(items, (str, bytes, Mapping)):
            raise TypeError(f"{what} must be a list of dicts (wrap a single one in a list)")
        return list(items)

    # ---------------------------------------------------------------- catalog

    def upsert_videos(self, videos: Iterable[Mapping[str, Any]]) -> Answer:
        """``POST /v1/videos``: insert or replace videos, all or none.

        Each video needs ``id``, ``creator_id`` and ``duration_ms`` (> 0); optional
        ``tags``, ``language``, ``created_at`` (ms), ``embedding``. An existing
        id keeps its counters. Returns ``{"upserted": N}`` once durable.
        """
        return self._json("POST", "/v1/videos", {"videos": self._batch(videos, "videos")})

    def get_video(self, video_id: str) -> Answer:
        """``GET /v1/videos/{id}``: the video as upserted plus ``stats``. 404 if unknown."""
        return self._json("GET", f"/v1/videos/{self._id(video_id, 'video_id')}")

    # ---------------------------------------------------------------- personal data

    def ingest_events(self, events: Iterable[Mapping[str, Any]]) -> Answer:
        """``POST /v1/events``: ingest interaction events (see :func:`event`), all or none.

        Returns ``{"accepted": N}`` once the batch is fsynced and applied to the
        model: the user's next feed reflects it. 503 (``retry_after``) for a
        fenced (migrating) user.
        """
        return self._json("POST", "/v1/events", {"events": self._batch(events, "events")})

    def feed(self, user_id: str, n: Optional[int] = None, language: Optional[str] = None,
             explain: bool = False) -> Answer:
        """``GET /v1/feed``: the next feed page, ``{"user_id", "candidates", "items"}``.

        Each item has ``video_id``, ``score``, ``sources`` and human ``reasons``.
        ``n``: 1 to 100 (server default 20). ``language`` overrides the one
        inferred from the user's history. ``explain``: each item also has
        ``creator_id``, ``tags`` and ``components`` (per ranker head,
        ``probability`` and ``weight``; the score is the sum of their
        products). An unknown user gets a cold-start feed.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty str")
        return self._json("GET", "/v1/feed",
                          query={"user_id": user_id, "n": n, "language": language,
                                 "explain": "true" if explain else None})

    def get_user(self, user_id: str) -> Answer:
        """``GET /v1/users/{id}``: the user's profile. 404 for a user with no events."""
        return self._json("GET", f"/v1/users/{self._id(user_id, 'user_id')}")

    def export_user(self, user_id: str) -> Answer:
        """``GET /v1/users/{id}/export``: all personal data of the user.

        ``user_id``, ``home_jurisdiction``, ``profile``, ``events`` (every event
        in log order), ``model`` and ``recently_served``. Costs time
        proportional to the event log.
        """
        return self._json("GET", f"/v1/users/{self._id(user_id, 'user_id')}/export")

    def erase_user(self, user_id: str) -> Answer:
        """``DELETE /v1/users/{id}``: erase the user; ``{"erased": id}``. 404 if unknown."""
        return self._json("DELETE", f"/v1/users/{self._id(user_id, 'user_id')}")

    def import_user(self, user_id: str,
                    export: Union[Mapping[str, Any], Iterable[Mapping[str, Any]]]) -> Answer:
        """``POST /v1/users/{id}/import``: a migrating user arrives (admin only).

        ``export`` is the user's export from their old region (as
        :meth:`export_user` returns it) or a list of their events. The client's
        ``jurisdiction`` becomes their home here. 409 if the user exists here.
        Returns ``{"imported": N, "user_id", "home_jurisdiction"}``.
        """
        if isinstance(export, Mapping):
            payload: Mapping[str, Any] = export
        else:
            payload = {"events": self._batch(export, "export")}
        return self._json("POST", f"/v1/users/{self._id(user_id, 'user_id')}/import", payload)

    def fence_user(self, user_id: str) -> Answer:
        """``POST /v1/users/{id}/fence``: refuse the user's writes here while they move (admin).

        Returns ``{"user_id", "fenced": true}``; 404 for an unknown user.
        """
        return self._json("POST", f"/v1/users/{self._id(user_id, 'user_id')}/fence")

    def unfence_user(self, user_id: str) -> Answer:
        """``DELETE /v1/users/{id}/fence``: lift the fence; ``{"user_id", "fenced": false}``."""
        return self._json("DELETE", f"/v1/users/{self._id(user_id, 'user_id')}/fence")

    # ---------------------------------------------------------------- backups (replication keys)

    def backup_status(self, region: str) -> Answer:
        """``GET /v1/backup/{region}/status``: how far this server's backup of ``region`` reaches.

        ``{"source", "last_seq", "last_hash", "store_key_sha256"}``. Only for a
        ``replication`` principal of ``region`` at an approved backup region
        (403 otherwise, always 403 in open mode).
        """
        return self._json("GET", f"/v1/backup/{self._id(region, 'region')}/status")

    def backup_records(self, region: str, from_seq: int = 1,
                       max_bytes: Optional[int] = None) -> bytes:
        """``GET /v1/backup/{region}/records``: raw backup records from ``from_seq`` on.

        The binary batch format of docs/FORMATS.md (what ``foryou restore`` reads).
        """
        _, _, data = self._request("GET", f"/v1/backup/{self._id(region, 'region')}/records",
                                   query={"from": from_seq, "max_bytes": max_bytes},
                                   accept="application/octet-stream")
        return data

    def ship_backup_records(self, region: str, batch: bytes) -> Answer:
        """``POST /v1/backup/{region}/records``: store a binary batch; ``{"source", "last_seq"}``.

        409 (``details["last_seq"]``) for a batch that does not follow what the
        backup holds. Normally done by the primary's ``--backup-to``, not by hand.
        """
        return self._json("POST", f"/v1/backup/{self._id(region, 'region')}/records",
                          raw=bytes(batch), content_type="application/octet-stream")

    # ---------------------------------------------------------------- region and audit log

    def region(self) -> Answer:
        """``GET /v1/region``: the policy, who is asking (``principal.may``), backup
        status and key fingerprints. Any key but a replication key."""
        return self._json("GET", "/v1/region")

    def audit_head(self) -> Answer:
        """``GET /v1/audit/head``: the audit log's signed tree head and public key
        (auditors and admins)."""
        return self._json("GET", "/v1/audit/head")

    def audit_entries(self, start: int = 0, limit: int = 100) -> Answer:
        """``GET /v1/audit/entries``: entries ``[start, start + limit)`` (``limit`` at
        most 10,000) with their hashed bytes (``encoded``), and the head they
        belong to (auditors and admins)."""
        return self._json("GET", "/v1/audit/entries", query={"from": start, "limit": limit})

    def residency(self) -> Answer:
        """``GET /v1/residency``: per jurisdiction, the users and events held and as
        what; backups held; violations (auditors and admins; 404 in open mode)."""
        return self._json("GET", "/v1/residency")

    # ---------------------------------------------------------------- operational

    def livez(self) -> Answer:
        """``GET /livez``: ``{"status": "alive"}`` while the process serves HTTP, also while starting."""
        return self._json("GET", "/livez")

    def readyz(self) -> Answer:
        """``GET /readyz``: ``{"status": "ok"}``; raises ForyouError (503, code ``starting`` or ``failing``)."""
        return self._json("GET", "/readyz")

    def healthz(self) -> Answer:
        """``GET /healthz``: ``{"status": "ok"}``; raises ForyouError (503) when unhealthy."""
        return self._json("GET", "/healthz")

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition, as a str."""
        _, _, data = self._request("GET", "/metrics", accept="text/plain")
        return data.decode("utf-8")
