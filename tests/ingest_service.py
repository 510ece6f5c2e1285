"""The real ingestion service (`ebbtide ingest serve`) as a process for the tests, and a small
HTTP client for it (the standard library's: every status answered, none raised)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ebbtide.runtime.settings import Settings
from ebbtide.tools import processes
from ebbtide.tools.processes import free_port
from tests.support import wait_until

TOKEN = "tests-billing-token-0123456789"
PRODUCER = "billing-http"
READY = 60.0  # seconds for the process to start and find Kafka


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class IngestService:
    """One ``ebbtide ingest serve`` process of ``settings``."""

    settings: Settings
    child: processes.Child
    url: str
    context: ssl.SSLContext | None = None

    @classmethod
    def start(cls, settings: Settings, log_dir: Path, tokens: bool = True, **changes: Any) -> IngestService:
        """Start it on a free port with a tokens file of :data:`TOKEN` (unless not ``tokens``;
        ``changes`` go on top of ``settings``); wait for it with :meth:`wait_ready`."""
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "ingest-tokens"
        path.write_text(f"{PRODUCER} {TOKEN}\n")
        settings = replace(
            settings, ingest_port=free_port(), ingest_tokens=path if tokens else None, **changes
        )
        scheme = "https" if settings.ingest_tls_certfile is not None else "http"
        child = processes.start("ingest", ["ingest", "serve"], settings, log_dir)
        return cls(settings, child, f"{scheme}://127.0.0.1:{settings.ingest_port}")

    def wait_ready(self, context: ssl.SSLContext | None = None, probe: str = "/readyz") -> IngestService:
        """Wait until ``probe`` answers 200 (/healthz: the process answers, Kafka or not)."""
        self.context = context or self.context

        def ready() -> bool:
            assert self.child.alive(), f"ebbtide ingest died:\n{self.child.tail()}"
            try:
                return self.get(probe).status == 200
            except OSError:
                return False

        wait_until(ready, READY, f"ebbtide ingest answering {probe}")
        return self

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        sent = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(sent, timeout=60, context=self.context) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(status, parsed, got)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, events: Any, token: str | None = TOKEN, raw: bytes | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else json.dumps(events).encode()
        return self.request("POST", "/v1/events", body, headers)

    def stop(self) -> None:
        self.child.stop()
