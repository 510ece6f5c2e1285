"""The vocabulary is the single source of event kinds, their roles and receipt outcomes: the Avro
schemas, the engine's event classes and its handlers must agree with it."""

from __future__ import annotations

import ast
import inspect
from dataclasses import MISSING, fields
from typing import Any

import pytest

from ebbtide.schemas import DELETION_RECEIPT, LIFECYCLE_EVENT
from ebbtide.schemas.codec import versions_of
from ebbtide.streams.engine import clocks, facts, receipts, rights
from ebbtide.streams.engine.events import EVENT_TYPES, Event
from ebbtide.streams.policy import vocabulary
from ebbtide.streams.policy.rules import CLOCK_KINDS
from ebbtide.streams.policy.vocabulary import (
    ACCOUNT_STARTS,
    ACCOUNT_STOPS,
    ANSWERED,
    ANSWERED_STATUS,
    CLOCK_EVENTS,
    DUTY_EVENTS,
    EVENTS,
    FACT_EVENTS,
    OUTCOMES,
    RIGHTS_EVENTS,
    UNTIL_EVENTS,
)


def newest(name: str) -> Any:
    return versions_of(name)[-1].parsed


def union_of_lifecycle_events() -> list[str]:
    """The event kinds of the newest lifecycle_event schema's payload union."""
    (payload,) = [f for f in newest(LIFECYCLE_EVENT)["fields"] if f["name"] == "payload"]
    return [branch["name"].rsplit(".", 1)[-1] for branch in payload["type"]]


def sample(cls: type[Event]) -> Event:
    """An instance of an event class with a value of the right type in every field."""
    values: dict[str, Any] = {"event_id": "e1", "subject_id": "s1", "time": 1}
    for field in fields(cls):
        if field.name in values or field.default is not MISSING:
            continue
        values[field.name] = {"str": "x", "int": 2, "bool": True}.get(str(field.type), ("a",))
    return cls(**values)


def kinds_named_in(*functions: Any) -> set[str]:
    """The event kinds (string constants) compared with ``fact.kind`` in these functions."""
    found: set[str] = set()
    for function in functions:
        for node in ast.walk(ast.parse(inspect.getsource(function))):
            if isinstance(node, ast.Constant) and node.value in EVENTS:
                found.add(node.value)
    return found


def test_the_avro_union_the_vocabulary_and_the_event_classes_name_the_same_kinds() -> None:
    union = union_of_lifecycle_events()
    assert len(union) == len(set(union))
    assert set(union) == set(EVENTS) == set(EVENT_TYPES)


def test_every_kind_that_is_a_fact_has_a_case_in_fact_of_and_no_other_kind_does() -> None:
    for kind, cls in EVENT_TYPES.items():
        fact = facts.fact_of(sample(cls))
        assert (fact is not None) == (kind in FACT_EVENTS), kind
        if fact is not None:
            assert fact.kind == kind
            assert (fact.until is not None) == (kind in UNTIL_EVENTS), kind


def test_the_record_announcement_is_no_fact_and_plays_no_other_role() -> None:
    assert vocabulary.kinds_with("record") == ("RecordWritten",)
    assert EVENTS["RecordWritten"] == frozenset({"record"})


def test_the_engine_derives_rights_and_duties_from_exactly_the_kinds_with_those_roles() -> None:
    assert kinds_named_in(rights.rights_of, rights._closed_as) == RIGHTS_EVENTS
    assert kinds_named_in(rights.duties_of, rights._closed_as) == DUTY_EVENTS


def test_the_account_clock_is_moved_by_exactly_its_start_and_stop_events() -> None:
    assert kinds_named_in(clocks.account_clock) == set(ACCOUNT_STARTS) | set(ACCOUNT_STOPS)
    assert set(ACCOUNT_STARTS) | set(ACCOUNT_STOPS) <= set(CLOCK_EVENTS)
    assert "account" in CLOCK_KINDS


def test_a_registry_transfer_is_read_from_clock_events() -> None:
    assert kinds_named_in(clocks.transferred_out) <= set(CLOCK_EVENTS)


def test_the_receipt_schema_and_the_vocabulary_have_the_same_outcomes() -> None:
    (outcome,) = [f for f in newest(DELETION_RECEIPT)["fields"] if f["name"] == "outcome"]
    assert set(outcome["type"]["symbols"]) == set(OUTCOMES)
    assert len(OUTCOMES) == len(set(OUTCOMES))


@pytest.mark.parametrize("answered_in", [receipts.CONFIRMED, ANSWERED_STATUS], ids=["confirmed", "status"])
def test_every_answer_is_described_by_the_engine_and_explain(answered_in: dict[str, str]) -> None:
    assert set(answered_in) == set(ANSWERED)


def test_the_sinks_answer_with_the_vocabulary_outcomes() -> None:
    from ebbtide.sinks.base import receipts as sink_receipts

    assert sink_receipts.OUTCOMES is OUTCOMES
