"""The HTTP endpoints of every Ebbtide process, on its metrics port: ``/metrics``, ``/healthz``
and ``/readyz``.

- ``/metrics``: prometheus_client's WSGI app over the process's registry;
- ``/healthz``: 200 ``{"status": "alive"}`` while the process answers;
- ``/readyz``: 200 ``{"status": "ready", "checks": {...}}`` once every check of the process's
  :data:`READINESS` holds, else 503 ``{"status": "not ready", "waiting": {check: reason}}``. The
  worker's check: its partitions assigned and its state table recovered; a sink's: its store
  reachable and its consumer's partitions assigned (``sinks.base.loop``).

Served by the standard library's WSGI server in a daemon thread (as prometheus_client serves
``/metrics``). The address is ``EBBTIDE_HTTP_HOST`` (default 127.0.0.1) and the process kind's
port; a port that cannot be bound is a :class:`CannotServe` naming the setting, never a traceback.
Bodies carry check names and reasons (partitions, store ids, exception types), nothing personal.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

WILDCARDS = {"", "0.0.0.0", "::"}  # the names of "every interface", not an address to bind here


class CannotServe(Exception):
    """An endpoint's address cannot be bound: one line naming the settings (the CLI prints it)."""


class Readiness:
    """The checks a process is ready once all hold: name -> (ready, detail or reason). Thread-safe:
    the sinks' consumer threads and the worker's event loop set them, the HTTP thread reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checks: dict[str, tuple[bool, str]] = {}

    def waiting(self, name: str, reason: str) -> None:
        """Check ``name`` does not hold, for ``reason`` (shown by /readyz)."""
        with self._lock:
            self._checks[name] = (False, reason)

    def ready(self, name: str, detail: str = "ok") -> None:
        with self._lock:
            self._checks[name] = (True, detail)

    def forget(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def state(self) -> tuple[bool, dict[str, str], dict[str, str]]:
        """(ready, the checks that hold with their details, the others with their reasons)."""
        with self._lock:
            checks = dict(self._checks)
        holding = {name: detail for name, (ok, detail) in checks.items() if ok}
        waiting = {name: reason for name, (ok, reason) in checks.items() if not ok}
        if not checks:  # the process has not said what it waits for yet
            waiting = {"start": "starting"}
        return not waiting, holding, waiting


READINESS = Readiness()  # this process's checks, as REGISTRY holds its metrics


def application(registry: CollectorRegistry, readiness: Readiness) -> WsgiApp:
    """The WSGI app of /healthz, /readyz and (every other path, as prometheus_client) /metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            ready, holding, waiting = readiness.state()
            if ready:
                return _json(start_response, "200 OK", {"status": "ready", "checks": holding})
            body = {"status": "not ready", "waiting": waiting, "checks": holding}
            return _json(start_response, "503 Service Unavailable", body)
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    return app


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape or probe on stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        return None


def _server_class(host: str, port: int) -> type[ThreadingWSGIServer]:
    """The threading WSGI server for ``host``'s address family (IPv4 or IPv6)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family = infos[0][0]
    return type("EbbtideServer", (ThreadingWSGIServer,), {"address_family": family})


def serve(
    host: str,
    port: int,
    setting: str,
    registry: CollectorRegistry = REGISTRY,
    readiness: Readiness = READINESS,
) -> int:
    """Serve /metrics, /healthz and /readyz on ``host``:``port`` (0 picks a free port) in a daemon
    thread; the port bound. :class:`CannotServe` naming EBBTIDE_HTTP_HOST and ``setting`` (the
    port's setting) if it cannot be bound (taken, or an address this host does not have)."""
    try:
        server = make_server(
            host, port, application(registry, readiness), _server_class(host, port), handler_class=_Quiet
        )
    except OSError as exc:
        raise CannotServe(_why(host, port, setting, exc)) from None
    thread = threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True)
    thread.start()
    bound: int = server.server_port
    return bound


def check_free(host: str, port: int, setting: str, host_setting: str = "EBBTIDE_HTTP_HOST") -> None:
    """:class:`CannotServe` if ``host``:``port`` cannot be bound now (a server that binds it later,
    such as the worker's Faust web, would fail with a traceback instead), naming ``setting`` (the
    port's) and ``host_setting``. Binds with SO_REUSEADDR, as that server does, so a port in
    TIME_WAIT is free."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(family[4])
    except OSError as exc:
        raise CannotServe(_why(host, port, setting, exc, host_setting)) from None


def _why(host: str, port: int, setting: str, exc: OSError, host_setting: str = "EBBTIDE_HTTP_HOST") -> str:
    reason = exc.strerror or type(exc).__name__
    return f"cannot listen on {host}:{port} ({reason}); set {setting} (the port) or {host_setting}"


def client_host(host: str) -> str:
    """The address a client on this host reaches a server bound to ``host`` at: loopback for a
    wildcard bind, brackets around an IPv6 address (for a URL)."""
    if host in WILDCARDS:
        return "[::1]" if host == "::" else "127.0.0.1"
    return f"[{host}]" if ":" in host else host
