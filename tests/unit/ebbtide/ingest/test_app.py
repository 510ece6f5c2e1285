"""The application's answers without a server or Kafka: called as ASGI with a publisher that
records what it was given (or fails as a service without a key store does)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ebbtide import bootstrap
from ebbtide.ingest.app import Service, create_app
from ebbtide.ingest.auth import Access, Tokens
from ebbtide.ingest.batch import Accepted
from ebbtide.ingest.publishing import Ack
from ebbtide.runtime.settings import Settings
from ebbtide.tools.sealing import NoKeyStore, seal_record

TOKEN = "unit-billing-token-0123456789"
EVENT = {
    "event_id": "e1",
    "type": "AccountClosed",
    "subject_id": "cust-1",
    "event_time": "2024-03-01T12:00:00Z",
}
HOLD = {**EVENT, "event_id": "e2", "type": "LegalHoldReleased", "payload": {"hold_id": "h-secret"}}


class Recording:
    """A publisher that seals each record with ``keys`` (as the real one does) and acks it."""

    def __init__(self, keys: Any = None) -> None:
        self.keys, self.published = keys, []  # type: list[Accepted]

    def publish(self, accepted: list[Accepted]) -> list[Ack]:
        for item in accepted:
            if self.keys is not None:
                seal_record(item.record, self.keys, None)
        self.published.extend(accepted)
        return [Ack(str(a.record["event_id"]), "t.events", 0, a.index) for a in accepted]

    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    def close(self) -> None:
        pass


def post(publisher: Recording, body: bytes, hold_producers: frozenset[str] = frozenset()) -> tuple[int, Any]:
    """The status and JSON body the application answers ``body`` with, as the producer billing."""
    access = Access(Tokens(((TOKEN.encode(), "billing"),)), False)
    app = create_app(
        Service(access, publisher, bootstrap.policy(Settings()), None, 10_000_000, 10, hold_producers)
    )
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        given = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not given.is_set():
                given.set()
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect while the answer is made
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(answer)


def test_a_hold_event_from_a_producer_not_allowed_is_403_and_nothing_is_published() -> None:
    publisher = Recording()
    status, body = post(publisher, json.dumps([EVENT, HOLD]).encode())
    assert status == 403
    assert body["errors"] == [{"index": 1, "field": "type", "message": body["errors"][0]["message"]}]
    assert "LegalHoldReleased" in body["errors"][0]["message"] and "h-secret" not in json.dumps(body)
    assert publisher.published == []
    status, body = post(publisher, json.dumps([EVENT, HOLD]).encode(), frozenset({"billing"}))
    assert status == 422 and body["errors"][0]["index"] == 1  # allowed, but this service has no key
    assert publisher.published == []


def test_a_missing_key_store_at_request_time_is_503_naming_the_setting() -> None:
    written = {
        **EVENT,
        "type": "RecordWritten",
        "payload": {"store": "customer_db", "category": "client", "record_key": "crm:42"},
    }
    status, body = post(Recording(NoKeyStore(Settings())), json.dumps(written).encode())
    assert status == 503, body
    assert "EBBTIDE_KEYS_DSN" in body["title"] and "crm:42" not in json.dumps(body)


@pytest.mark.parametrize("depth", [17, 100_000])
def test_deeply_nested_json_is_400(depth: int) -> None:
    status, body = post(Recording(), b"[" * depth + b"]" * depth)
    assert status == 400 and "deeper than" in body["title"]
