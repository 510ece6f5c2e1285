"""A local stand-in for the HTTP vendors, for tests and the demo; it only listens on loopback.

Records live in memory, per store and category (a record is just its key: the stand-in never
keeps a request body). Data requests, under ``/<store>/<category>/<record_key>``:

- ``PUT`` seeds a record (201 new, 204 already there); ``DELETE`` deletes it (204, or 404 if
  absent); ``GET`` answers 200 or 404; ``GET /<store>/<category>`` lists the keys (JSON), and
  ``GET /<store>`` every category's keys.

Each store has a behaviour, switched at run time (in-process with :meth:`VendorStandIn.set_mode`
or ``POST /_admin/<store>`` with a JSON body ``{"mode": ..., "count": n, "delay": s, "status": n}``):

- ``ok``: answer as above;
- ``fail``: answer ``status`` (500) without touching the records;
- ``down``: answer 503;
- ``timeout``: hold the request ``delay`` seconds (default :attr:`VendorStandIn.hold`, longer
  than any client timeout; :meth:`VendorStandIn.stop` releases it), then answer 504 unapplied;
- ``slow``: wait ``delay`` seconds, then answer as ``ok`` (the deletion happens even if the
  client stopped waiting, as at a real vendor).

With ``count`` the mode applies to the next ``count`` data requests only, then the store is back
to ``ok`` ("fail the next 2 requests"). ``GET /_admin/<store>`` (or :meth:`VendorStandIn.stats`)
reports the mode and request counts, so tests can assert how often a vendor was called.
A store given a token (``tokens``) answers 401 to requests without that header value.

``ebbtide vendor-standin --port P`` runs it until SIGTERM (:func:`serve`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

MODES = ("ok", "fail", "down", "timeout", "slow")
DEFAULT_PORT = 9320  # the base URLs of sinks/http/vendors.toml


@dataclass
class _Store:
    mode: str = "ok"
    remaining: int | None = None  # requests the mode still applies to (None: until changed)
    delay: float | None = None
    status: int = 500
    records: dict[str, set[str]] = field(default_factory=dict)  # category -> keys
    requests: Counter[str] = field(default_factory=Counter)  # method -> count
    answers: Counter[int] = field(default_factory=Counter)  # status -> count


class VendorStandIn:
    """The stand-in server, in-process: ``start()`` returns its base URL, ``stop()`` ends it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, tuple[str, str]] | None = None,
        hold: float = 30.0,
    ) -> None:
        if not _loopback(host):
            raise ValueError(f"the vendor stand-in listens on loopback only, not {host!r}")
        self.host = host
        self.port = port
        self.tokens = dict(tokens or {})  # store -> (header name, exact header value)
        self.hold = hold
        self._stores: dict[str, _Store] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="vendor-standin", daemon=True
        )  # a short poll interval: stop() returns at once
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._stopping.set()  # releases held requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> VendorStandIn:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def store_url(self, store: str) -> str:
        """The base URL of one store (what ``EBBTIDE_VENDOR_URL`` = :attr:`url` gives each vendor)."""
        return f"{self.url}/{store}"

    # behaviour and records ---------------------------------------------------------------------

    def set_mode(
        self,
        store: str,
        mode: str,
        *,
        count: int | None = None,
        delay: float | None = None,
        status: int = 500,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if delay is not None and delay < 0:
            raise ValueError("delay must not be negative")
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        with self._lock:
            state = self._store(store)
            state.mode, state.remaining, state.delay, state.status = mode, count, delay, status

    def seed(self, store: str, category: str, *keys: str) -> None:
        with self._lock:
            self._store(store).records.setdefault(category, set()).update(keys)

    def keys(self, store: str, category: str) -> set[str]:
        with self._lock:
            return set(self._store(store).records.get(category, set()))

    def requests(self, store: str, method: str | None = None) -> int:
        """Data requests the store received (of one method, or all)."""
        with self._lock:
            counts = self._store(store).requests
            return counts[method] if method else sum(counts.values())

    def stats(self, store: str) -> dict[str, Any]:
        with self._lock:
            state = self._store(store)
            return {
                "mode": state.mode,
                "remaining": state.remaining,
                "requests": dict(state.requests),
                "answers": {str(k): v for k, v in sorted(state.answers.items())},
                "records": {c: len(keys) for c, keys in sorted(state.records.items())},
            }

    def _store(self, store: str) -> _Store:
        return self._stores.setdefault(store, _Store())

    def _behaviour(self, store: str, method: str) -> tuple[str, float | None, int]:
        """Count a data request and take the behaviour it gets (using up one of ``count``)."""
        with self._lock:
            state = self._store(store)
            state.requests[method] += 1
            behaviour = (state.mode, state.delay, state.status)
            if state.remaining is not None:
                state.remaining -= 1
                if state.remaining <= 0:
                    state.mode, state.remaining, state.delay, state.status = "ok", None, None, 500
            return behaviour

    def _apply(self, store: str, method: str, category: str, key: str | None) -> tuple[int, Any]:
        with self._lock:
            records = self._store(store).records
            if key is None:
                if method != "GET":
                    return 405, None
                if category:
                    return 200, sorted(records.get(category, set()))
                return 200, {c: sorted(keys) for c, keys in sorted(records.items())}
            keys = records.setdefault(category, set())
            if method == "DELETE":
                if key in keys:
                    keys.discard(key)
                    return 204, None
                return 404, None
            if method == "PUT":
                new = key not in keys
                keys.add(key)
                return (201 if new else 204), None
            if method == "GET":
                return (200, {"category": category, "key": key}) if key in keys else (404, None)
            return 405, None

    def _answered(self, store: str, status: int) -> None:
        with self._lock:
            self._store(store).answers[status] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # held requests must not keep the process alive

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("vendor stand-in: a request from %s ended badly", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    standin: VendorStandIn
    protocol_version = "HTTP/1.1"
    server_version = "ebbtide-vendor-standin"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _handle(self, method: str) -> None:
        body = self._body()
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if not parts:
            self._send(404, {"error": "no store in the path"})
            return
        if parts[0] == "_admin":
            self._admin(method, parts[1:], body)
            return
        store, rest = parts[0], parts[1:]
        standin = self.standin
        mode, delay, status = standin._behaviour(store, method)
        if mode == "timeout":
            standin._stopping.wait(standin.hold if delay is None else delay)
            self._send(504, None, store)
            return
        if mode == "slow":
            standin._stopping.wait(delay or 0.0)
        elif mode == "fail":
            self._send(status, None, store)
            return
        elif mode == "down":
            self._send(503, None, store)
            return
        expected = standin.tokens.get(store)
        if expected is not None and self.headers.get(expected[0]) != expected[1]:
            self._send(401, None, store)
            return
        category, key = ("/".join(rest[:-1]), rest[-1]) if len(rest) >= 2 else ("/".join(rest), None)
        answer, payload = standin._apply(store, method, category, key)
        self._send(answer, payload, store)

    def _admin(self, method: str, parts: list[str], body: bytes) -> None:
        standin = self.standin
        if method == "GET" and not parts:
            with standin._lock:
                stores = list(standin._stores)
            self._send(200, {store: standin.stats(store) for store in stores})
        elif method == "GET" and len(parts) == 1:
            self._send(200, standin.stats(parts[0]))
        elif method in ("POST", "PUT") and len(parts) == 1:
            try:
                change = json.loads(body or b"{}")
                if not isinstance(change, dict):
                    raise ValueError("the body must be a JSON object")
                unknown = set(change) - {"mode", "count", "delay", "status"}
                if unknown:
                    raise ValueError(f"unknown field(s) {sorted(unknown)}")
                standin.set_mode(
                    parts[0],
                    str(change.get("mode", "ok")),
                    count=change.get("count"),
                    delay=change.get("delay"),
                    status=int(change.get("status", 500)),
                )
            except (ValueError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(200, standin.stats(parts[0]))
        else:
            self._send(405, {"error": "GET /_admin[/<store>] or POST /_admin/<store>"})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, 1 << 16)) if length > 0 else b""

    def _send(self, status: int, payload: Any, store: str | None = None) -> None:
        if store is not None:
            self.standin._answered(store, status)
        data = b"" if payload is None or status == 204 else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            if data:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            if data:
                self.wfile.write(data)
        except OSError:  # the client stopped waiting (it timed out): nothing to answer to
            self.close_connection = True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(port: int = DEFAULT_PORT) -> int:
    """``ebbtide vendor-standin``: run on 127.0.0.1:``port`` until SIGTERM or SIGINT; prints the URL."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    standin = VendorStandIn(port=port)
    url = standin.start()
    print(f"vendor stand-in on {url} (each vendor under {url}/<store>; admin: {url}/_admin)", flush=True)
    try:
        while not stop.wait(0.5):  # short waits: the main thread must stay free for the signals
            pass
    finally:
        standin.stop()
    return 0
