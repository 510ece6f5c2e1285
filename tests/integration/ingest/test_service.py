"""`ebbtide ingest serve` as a process on the real Kafka: acknowledged after Kafka, idempotent by
event id, a bad batch (or a legal hold from a producer not allowed) refused whole, 401 without
details, the limits, the probes and metrics."""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any

import pytest

from ebbtide.runtime.kafka import end_offsets, offsets_reader
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.tokens import is_token
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.sinks.keys.store import KeyStore
from ebbtide.tools.processes import scrape, total
from tests.ingest_service import PRODUCER, TOKEN, IngestService
from tests.support import TopicReader


def events_in(settings: Settings) -> int:
    reader = offsets_reader(settings, timeout=10)
    try:
        return sum(end_offsets(reader, Topics(settings.topic_prefix).events).values())
    finally:
        reader.close()


def batch(subject: str) -> list[dict[str, Any]]:
    def ev(suffix: str, event_type: str, **payload: Any) -> dict[str, Any]:
        return {
            "event_id": f"{subject}-{suffix}",
            "type": event_type,
            "subject_id": subject,
            "event_time": "2024-03-01T12:00:00Z",
            "producer": "whatever-the-body-says",
            "payload": payload,
        }

    return [
        ev("o", "ServiceOrdered", service_id="svc-1", kind="HOSTING"),
        ev("w", "RecordWritten", store="customer_db", category="client", record_key="jane-row-42"),
        ev("c", "AccountClosed"),
    ]


@pytest.fixture
def subject() -> str:
    return f"cust-{uuid.uuid4().hex[:8]}"


def test_a_batch_is_acknowledged_with_where_kafka_put_each_event(
    ingest: IngestService, ingest_settings: Settings, subject: str
) -> None:
    events = batch(subject)
    answer = ingest.post(events)
    assert answer.status == 200, answer.body
    acks = answer.body["events"]
    assert [a["event_id"] for a in acks] == [e["event_id"] for e in events]
    assert {a["repeated"] for a in acks} == {False}
    assert len({a["partition"] for a in acks}) == 1  # keyed by subject: one partition

    reader = TopicReader(
        ingest_settings, Topics(ingest_settings.topic_prefix).events, codec_for(LIFECYCLE_EVENT)
    )
    try:
        ids = {e["event_id"] for e in events}
        got = reader.wait_for(
            lambda seen: ids <= {r.value["event_id"] for r in seen if r.value}, 30, "events"
        )
    finally:
        reader.close()
    mine = [r for r in got if r.value and r.value["event_id"] in ids]
    assert sorted(r.partition for r in mine) == [acks[0]["partition"]] * 3
    assert {r.value["producer"] for r in mine if r.value} == {PRODUCER}  # the token's, not the body's
    written = next(r for r in mine if r.value and r.value["event_id"].endswith("-w"))
    assert b"jane-row-42" not in written.raw  # sealed with the subject's key, as the client seals
    token = codec_for(LIFECYCLE_EVENT).decode(written.raw)["payload"][1]["record_key"]
    assert is_token(token)
    keys = KeyStore(ingest_settings.require_keys_dsn())
    try:
        assert keys.current(subject).open(token) == "jane-row-42"
    finally:
        keys.close()


def test_the_same_events_again_are_answered_from_memory_and_not_published_again(
    ingest: IngestService, ingest_settings: Settings, subject: str
) -> None:
    events = batch(subject)
    start = events_in(ingest_settings)
    first = ingest.post([*events, events[1]])  # one event twice in a batch is sent once
    assert first.status == 200, first.body
    before = events_in(ingest_settings)
    assert before == start + 3
    twice = [(a["partition"], a["offset"], a["repeated"]) for a in first.body["events"][1::2]]
    assert twice[1] == (*twice[0][:2], True) and twice[0][2] is False
    again = ingest.post([events[2], events[0], events[0]])  # in another order, one twice
    assert again.status == 200, again.body
    firsts = {a["event_id"]: (a["partition"], a["offset"]) for a in first.body["events"]}
    assert [(a["event_id"], a["partition"], a["offset"], a["repeated"]) for a in again.body["events"]] == [
        (events[2]["event_id"], *firsts[events[2]["event_id"]], True),
        (events[0]["event_id"], *firsts[events[0]["event_id"]], True),
        (events[0]["event_id"], *firsts[events[0]["event_id"]], True),
    ]
    reused = {**events[0], "payload": {"service_id": "svc-2", "kind": "HOSTING"}}
    conflict = ingest.post([{**events[1], "event_id": f"{subject}-new"}, reused])
    assert conflict.status == 409
    assert [(e["index"], e["field"]) for e in conflict.body["errors"]] == [(1, "event_id")]
    assert events_in(ingest_settings) == before  # nothing of either request was sent


def test_a_bad_batch_is_refused_whole_naming_index_and_field_never_the_value(
    ingest: IngestService, ingest_settings: Settings, subject: str
) -> None:
    good, written, _ = batch(subject)
    bad = {**written, "event_time": "jane@example.com"}
    before = events_in(ingest_settings)
    answer = ingest.post([good, bad])
    assert answer.status == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [(e["index"], e["field"]) for e in answer.body["errors"]] == [(1, "event_time")]
    assert "jane" not in json.dumps(answer.body)
    not_json = ingest.post(None, raw=b'[{"event_id": "x",')
    assert not_json.status == 400 and "not JSON" in not_json.body["title"]
    deep = ingest.post(None, raw=b"[" * 50_000 + b"]" * 50_000)  # past the parser's recursion limit
    assert deep.status == 400 and "deeper than" in deep.body["title"]
    hold = {**good, "event_id": f"{subject}-h", "type": "LegalHoldReleased", "payload": {"hold_id": "h-9"}}
    forbidden = ingest.post([good, hold])  # this producer is not in EBBTIDE_INGEST_HOLD_PRODUCERS
    assert forbidden.status == 403 and forbidden.headers["content-type"] == "application/problem+json"
    assert [(e["index"], e["field"]) for e in forbidden.body["errors"]] == [(1, "type")]
    assert "LegalHoldReleased" in forbidden.body["errors"][0]["message"] and "h-9" not in json.dumps(
        forbidden.body
    )
    assert events_in(ingest_settings) == before
    later = ingest.post(good)  # the good event of the refused batch was neither sent nor remembered
    assert later.status == 200 and later.body["events"][0]["repeated"] is False


def test_a_request_without_a_valid_token_is_401_without_details(
    ingest: IngestService, ingest_settings: Settings, subject: str
) -> None:
    before = events_in(ingest_settings)
    for token in (None, "tests-billing-token-012345678X", ""):
        answer = ingest.post(batch(subject), token=token)
        assert answer.status == 401
        assert answer.body == {"type": "about:blank", "title": "unauthenticated", "status": 401, "errors": []}
        assert answer.headers["www-authenticate"] == "Bearer"
    assert events_in(ingest_settings) == before


def test_over_the_limits_is_413(ingest: IngestService, subject: str) -> None:
    many = [{**batch(subject)[2], "event_id": f"{subject}-{n}"} for n in range(21)]
    answer = ingest.post(many)
    assert answer.status == 413 and "21 events, over the 20 allowed" in answer.body["title"]
    padded = json.dumps(batch(subject)).encode() + b" " * 200_000
    answer = ingest.post(None, raw=padded)
    assert answer.status == 413 and "over the 200000 bytes allowed" in answer.body["title"]
    streamed = http.client.HTTPConnection("127.0.0.1", ingest.settings.ingest_port, timeout=30)
    try:  # chunked, no Content-Length: refused once the body read so far is over the limit
        chunks = (padded[i : i + 10_000] for i in range(0, len(padded), 10_000))
        streamed.request(
            "POST", "/v1/events", chunks, {"Authorization": f"Bearer {TOKEN}"}, encode_chunked=True
        )
        response = streamed.getresponse()
        assert response.status == 413 and b"over the 200000 bytes allowed" in response.read()
    finally:
        streamed.close()


def test_the_probes_and_metrics_carry_nothing_personal(ingest: IngestService, subject: str) -> None:
    assert ingest.get("/healthz").body == {"status": "alive"}
    ready = ingest.get("/readyz")
    assert ready.status == 200 and ready.body["status"] == "ready"
    ingest.post(batch(subject), token=None)
    ingest.get(f"/v1/{subject}")  # no such route: counted as "other", its path no label
    samples = scrape(ingest.settings.ingest_port)
    requests = "ebbtide_ingest_requests_total"
    assert total(samples, requests, route="/v1/events", status="401", reason="unauthenticated") >= 1
    assert total(samples, requests, route="other", status="404", reason="not_found") >= 1
    assert total(samples, "ebbtide_ingest_events_total", outcome="published") >= 1
    labels = {value for series in samples.values() for key in series for _, value in key}
    assert not any(subject in value for value in labels)
