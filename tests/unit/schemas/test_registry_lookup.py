"""The worker's writer-schema lookup (schemas/registry.py ``RegistrySchemas``) over a scripted
client: which registry answers refuse an id (the message's fault: dead-lettered), which make the
batch wait (the worker's or the moment's), and that a refusal is forgotten after its TTL. The real
registry: tests/integration/schemas/test_registry.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.registry import REFUSAL_TTL, RegistrySchemas
from ebbtide.schemas.wire import RegistryUnavailable

CODEC = codec_for(LIFECYCLE_EVENT)
# What the HTTP stand-in answers for each schema id: (status, content type, body).
PAGES = {
    1: (200, "text/html", b"<html><body>Service temporarily unavailable</body></html>"),  # a proxy
    2: (422, "application/json", b'{"error_code": 42202, "message": "Invalid schema id"}'),
    3: (429, "application/json", b'{"error_code": 429, "message": "Too many requests"}'),
}
URL = "http://registry.test/apis/ccompat/v7"


class Client:
    """``get_schema`` answers from ``answers`` (a Schema, or an exception raised), asked ids logged."""

    def __init__(self, answers: dict[int, Any]) -> None:
        self.answers = answers
        self.asked: list[int] = []

    def get_schema(self, schema_id: int) -> Schema:
        self.asked.append(schema_id)
        answer = self.answers[schema_id]
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Schema)
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lookup(answers: dict[int, Any], clock: Clock | None = None) -> tuple[RegistrySchemas, Client]:
    schemas = RegistrySchemas(URL, CODEC, clock=clock or Clock())
    fake = Client(answers)
    schemas._client = fake  # type: ignore[assignment]  # the scripted registry instead of HTTP
    return schemas, fake


def error(status: int) -> SchemaRegistryError:
    return SchemaRegistryError(status, status * 100, f"answer {status}")


CURRENT = Schema(CODEC.current.path.read_text(), "AVRO")


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_an_id_the_registry_refuses_is_the_message_s_fault(status: int) -> None:
    schemas, _ = lookup({7: error(status)})
    with pytest.raises(InvalidMessage) as refused:
        schemas.writer(7)
    assert "schema id 7" in refused.value.reason and refused.value.reason.startswith("lifecycle_event: ")
    assert schemas.cached(7)


@pytest.mark.parametrize("status", [401, 403, 408, 429, 500, 503])
def test_an_answer_about_the_worker_or_the_moment_makes_the_batch_wait(status: int) -> None:
    schemas, client = lookup({7: error(status)})
    with pytest.raises(RegistryUnavailable, match=f"HTTP {status}"):
        schemas.writer(7)
    assert not schemas.cached(7)  # asked again next time
    with pytest.raises(RegistryUnavailable):
        schemas.writer(7)
    assert client.asked == [7, 7]


def test_a_2xx_answer_that_is_not_json_makes_the_batch_wait() -> None:
    schemas, _ = lookup({7: json.JSONDecodeError("Expecting value", "<html>", 0)})
    with pytest.raises(RegistryUnavailable, match="unreadable answer"):
        schemas.writer(7)
    assert not schemas.cached(7)


def test_a_refusal_is_forgotten_after_its_ttl_so_an_id_registered_late_is_read() -> None:
    clock = Clock()
    schemas, client = lookup({7: error(404)}, clock)
    with pytest.raises(InvalidMessage, match="unknown schema id 7"):
        schemas.writer(7)
    client.answers[7] = CURRENT  # registered moments later (the registry's replication lag)
    clock.now += REFUSAL_TTL - 1
    assert schemas.cached(7)
    with pytest.raises(InvalidMessage):
        schemas.writer(7)  # still refused, from the cache
    assert client.asked == [7]
    clock.now += 1
    assert not schemas.cached(7)
    assert schemas.writer(7) is not None
    assert client.asked == [7, 7] and schemas.cached(7)


class Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the standard library's name
        status, kind, body = PAGES[int(self.path.split("?")[0].rstrip("/").split("/")[-1])]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def http_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://u:pw@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_over_http_a_proxy_s_page_waits_a_422_refuses_and_a_429_waits(http_registry: str) -> None:
    schemas = RegistrySchemas(http_registry, CODEC, timeout=5.0)
    with pytest.raises(RegistryUnavailable, match=r"unreadable answer \(JSONDecodeError\)") as page:
        schemas.writer(1)
    assert "pw" not in page.value.reason
    with pytest.raises(InvalidMessage, match=r"refused schema id 2 \(HTTP 422\)"):
        schemas.writer(2)
    with pytest.raises(RegistryUnavailable, match="HTTP 429"):
        schemas.writer(3)
    assert [schemas.cached(i) for i in (1, 2, 3)] == [False, True, False]
