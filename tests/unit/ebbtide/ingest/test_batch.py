"""A request body to records: one event or a batch, refused whole naming index and field, never a value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ebbtide import bootstrap
from ebbtide.ingest.batch import Refused, accept, events_of
from ebbtide.ingest.publishing import Ack, Remembered
from ebbtide.runtime.authenticity import SIGNATURE, MessageSigner
from ebbtide.runtime.settings import Settings
from ebbtide.streams.policy.rules import Policy

GOOD = {
    "event_id": "e1",
    "type": "ServiceOrdered",
    "subject_id": "cust-1",
    "event_time": "2024-03-01T12:00:00Z",
    "payload": {"service_id": "svc-7", "kind": "HOSTING"},
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return bootstrap.policy(Settings())


def test_a_body_is_one_event_or_a_batch() -> None:
    assert events_of(json.dumps(GOOD).encode(), 10) == [GOOD]
    assert events_of(json.dumps([GOOD, GOOD]).encode(), 10) == [GOOD, GOOD]


@pytest.mark.parametrize(
    ("body", "status", "title"),
    [
        (b"{oops", 400, "the body is not JSON (Expecting property name"),
        (b"\xff\xfe", 400, "the body is not JSON"),
        (b"42", 422, "must be one event (a JSON object) or a batch (a JSON array)"),
        (b"[]", 422, "the batch is empty"),
        (json.dumps([GOOD] * 4).encode(), 413, "the batch has 4 events, over the 3 allowed"),
    ],
)
def test_a_body_that_is_no_event_is_refused(body: bytes, status: int, title: str) -> None:
    with pytest.raises(Refused) as refused:
        events_of(body, 3)
    assert refused.value.status == status
    assert title in refused.value.title


def test_every_event_is_the_client_s_record_with_the_authenticated_producer(policy: Policy) -> None:
    accepted = accept([GOOD, {**GOOD, "event_id": "e2", "producer": "someone-else"}], "billing", policy, None)
    assert [a.index for a in accepted] == [0, 1]
    assert [a.record["producer"] for a in accepted] == ["billing", "billing"]
    assert accepted[0].record["payload"] == ("io.ebbtide.events.ServiceOrdered", GOOD["payload"])
    assert accepted[0].key == ("cust-1", "e1")


def test_a_bad_batch_is_refused_whole_naming_each_index_and_field_never_a_value(policy: Policy) -> None:
    batch: list[Any] = [
        GOOD,
        {**GOOD, "type": "Teleported-jane@example.com"},
        {**GOOD, "payload": {"kind": "HOSTING"}},
        {**GOOD, "event_time": "2024-03-01T12:00:00"},
        "not an event",
        {
            **GOOD,
            "type": "RecordWritten",
            "payload": {"store": "jane@example.com", "category": "client", "record_key": "k"},
        },
        {**GOOD, "payload": {"service_id": "jane@example.com" * 100, "kind": "HOSTING"}},
    ]
    with pytest.raises(Refused) as refused:
        accept(batch, "billing", policy, None)
    assert refused.value.status == 422
    assert "nothing was published" in refused.value.title
    found = [(p.index, p.field) for p in refused.value.problems]
    assert found == [
        (1, "type"),
        (2, "payload.service_id"),
        (3, "event_time"),
        (4, None),
        (5, "payload.store"),
        (6, "payload.service_id"),
    ]
    answered = json.dumps([p.as_json() for p in refused.value.problems])
    assert "jane" not in answered and "example.com" not in answered


HOLD = {**GOOD, "type": "LegalHoldPlaced", "payload": {"hold_id": "h1", "categories": ["CLIENT"]}}
RELEASE = {**GOOD, "event_id": "e3", "type": "LegalHoldReleased", "payload": {"hold_id": "h1"}}


def test_an_unsigned_legal_hold_is_refused_without_a_signer(policy: Policy) -> None:
    with pytest.raises(Refused) as refused:
        accept([HOLD], "legal", policy, None, frozenset({"legal"}))
    assert refused.value.status == 422
    assert refused.value.problems[0].index == 0
    assert "legal hold signing key" in refused.value.problems[0].message


def test_legal_holds_only_from_the_hold_producers_anyone_else_403_naming_index_and_type(
    policy: Policy, tmp_path: Path
) -> None:
    signer = MessageSigner.from_file(tmp_path / "holds.key", "hold")
    batch: list[Any] = [GOOD, {**HOLD, "event_id": "e2"}, RELEASE, {**GOOD, "type": "Teleported"}]
    for allowed in (frozenset[str](), frozenset({"legal", "other"})):
        with pytest.raises(Refused) as refused:
            accept(batch, "billing", policy, signer, allowed)
        assert refused.value.status == 403  # before any other check: nothing of it is published
        problems = [(p.index, p.field) for p in refused.value.problems]
        assert problems == [(1, "type"), (2, "type")]
        messages = " ".join(p.message for p in refused.value.problems)
        assert "LegalHoldPlaced" in messages and "LegalHoldReleased" in messages
        assert "h1" not in messages and "cust-1" not in messages
    signed = accept(batch[:3], "legal", policy, signer, frozenset({"legal"}))
    assert [a.record["producer"] for a in signed] == ["legal"] * 3
    assert signed[0].record.get(SIGNATURE) is None
    assert signed[1].record[SIGNATURE] and signed[2].record[SIGNATURE]


def test_deeply_nested_json_is_400_not_a_crash() -> None:
    for depth in (17, 100_000):  # past the depth allowed; past the parser's own recursion limit
        with pytest.raises(Refused) as refused:
            events_of(b"[" * depth + b"]" * depth, 10)
        assert refused.value.status == 400
        assert "deeper than 16" in refused.value.title
    nested = {**HOLD, "payload": {"hold_id": "h1", "records": ["a"]}}
    assert events_of(json.dumps([nested]).encode(), 10) == [nested]


def test_remembered_events_answer_their_first_ack_and_refuse_other_content(policy: Policy) -> None:
    remembered = Remembered(2)
    first, second, third = accept(
        [GOOD, {**GOOD, "event_id": "e2"}, {**GOOD, "event_id": "e3"}], "billing", policy, None
    )
    assert remembered.get(first) is None
    remembered.put(first, Ack("e1", "t.events", 1, 7))
    assert remembered.get(first) == Ack("e1", "t.events", 1, 7, repeated=True)
    other = accept([{**GOOD, "payload": {"service_id": "svc-8", "kind": "HOSTING"}}], "billing", policy, None)
    with pytest.raises(Refused) as refused:
        remembered.get(other[0])
    assert refused.value.status == 409
    assert [(p.index, p.field) for p in refused.value.problems] == [(0, "event_id")]
    remembered.put(second, Ack("e2", "t.events", 0, 1))
    remembered.get(first)  # used: the least recently used is now e2
    remembered.put(third, Ack("e3", "t.events", 0, 2))
    assert remembered.get(second) is None  # forgotten: at most 2
    assert remembered.get(first) is not None and remembered.get(third) is not None
