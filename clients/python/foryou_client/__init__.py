"""Python client for the foryou HTTP API (docs/API.md), standard library only.

The contract
------------
* ``Client(base_url, api_key=None, jurisdiction=None, timeout=10.0)`` talks to
  one foryou server (``http://`` or ``https://``, optionally with a path
  prefix). It has one method per endpoint of docs/API.md:

  =====================================  ==========================================
  method                                 request
  =====================================  ==========================================
  ``upsert_videos(videos)``              ``POST /v1/videos``
  ``get_video(id)``                      ``GET /v1/videos/{id}``
  ``ingest_events(events)``              ``POST /v1/events``
  ``feed(user_id, n=None, language=None)`` ``GET /v1/feed``
  ``get_user(id)``                       ``GET /v1/users/{id}``
  ``export_user(id)``                    ``GET /v1/users/{id}/export``
  ``erase_user(id)``                     ``DELETE /v1/users/{id}``
  ``import_user(id, export)``            ``POST /v1/users/{id}/import``
  ``fence_user(id)`` / ``unfence_user``  ``POST`` / ``DELETE /v1/users/{id}/fence``
  ``backup_status(region)``              ``GET /v1/backup/{region}/status``
  ``backup_records(region, from_seq)``   ``GET /v1/backup/{region}/records`` (bytes)
  ``ship_backup_records(region, data)``  ``POST /v1/backup/{region}/records``
  ``healthz()``                          ``GET /healthz``
  ``metrics()``                          ``GET /metrics`` (Prometheus text, a str)
  =====================================  ==========================================

* JSON answers come back as :class:`Answer`, a plain ``dict`` holding exactly
  the server's JSON, with the HTTP ``status`` and ``headers`` attached (for
  writes, ``answer.backup`` is the ``X-Foryou-Backup`` header: ``"confirmed"``,
  ``"pending"`` or ``None`` without ``--backup-to``).
* Every non-2xx answer raises :class:`ForyouError` with ``status``, ``code``
  and ``message`` from the body ``{"error": {"code", "message"}}``, plus
  ``home_region`` (421 ``misdirected``: ask that region instead; the server
  never proxies) and ``retry_after`` (seconds, from ``Retry-After``: 503
  ``unavailable``, e.g. a fenced user). A rejected request changed nothing on
  the server (batches are all or nothing).
* Network failures (refused connection, timeout, a connection dropped while
  waiting for an answer) are not hidden: they raise ``OSError``
  (``ConnectionError``, ``TimeoutError``) or ``http.client.HTTPException``.
  A kept-alive connection the server has closed (``server.idle_timeout_ms``)
  is noticed before it is used. If the close races a request anyway, the
  request is sent once more on a new connection when the server cannot have
  acted on it (the connection failed while the request was being sent) or
  when it is a ``GET``; a write whose answer was lost is reported, never
  repeated, because it may have been applied.
* Ids are sent percent-encoded in paths (``urllib.parse.quote(id, safe="")``),
  so any id, including a legacy one with ``/`` in it, addresses exactly that
  user or video. An empty id raises ``ValueError`` (it would address another
  route).
* ``api_key`` is sent as ``Authorization: Bearer KEY`` and ``jurisdiction``
  as ``X-Foryou-Jurisdiction`` on every request when given (a server under a
  policy requires both for personal data; open endpoints ignore them).
* One connection is kept alive and reused (HTTP/1.1). A ``Client`` may be
  shared between threads: requests are then serialised on that connection;
  use one ``Client`` per thread for parallel requests. ``close()`` or a
  ``with`` block releases the connection.

Example::

    from foryou_client import Client, ForyouError, event

    with Client("http://127.0.0.1:8080") as fy:
        page = fy.feed("u14", n=5)
        first = page["items"][0]["video_id"]
        fy.ingest_events([event("u14", first, "play", watch_ratio=1.0)])
        try:
            fy.get_user("nobody")
        except ForyouError as e:
            assert e.status == 404 and e.code == "not_found"
"""

from .client import (
    EVENT_TYPES,
    Answer,
    Client,
    ForyouError,
    event,
)

__all__ = ["Client", "ForyouError", "Answer", "event", "EVENT_TYPES"]
__version__ = "0.1.0"
