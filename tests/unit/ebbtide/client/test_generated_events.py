"""The typed events are what the schema says: generated from it, and the check fails on drift."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ebbtide.client import (
    EVENT_TYPES,
    InvalidEvent,
    LifecycleEvent,
    RecordWritten,
    ServiceOrdered,
    from_record,
)
from ebbtide.client.typed import as_json
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.tools import generate_events
from ebbtide.tools.client import event_types, to_record

pytestmark = pytest.mark.unit

WHEN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_the_module_in_the_tree_is_what_the_newest_schema_generates() -> None:
    wanted = generate_events.generate(generate_events.current_schema())
    assert generate_events.TARGET.read_text(encoding="utf-8") == wanted, (
        "ebbtide/client/events.py differs from the schema: run python -m ebbtide.tools.generate_events"
    )
    assert generate_events.main(["--check"]) == 0


def test_the_check_fails_when_the_module_drifts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "events.py"
    stale.write_text(generate_events.TARGET.read_text().replace("    service_id: str\n", "", 1))
    monkeypatch.setattr(generate_events, "TARGET", stale)
    assert generate_events.main(["--check"]) == 1
    assert generate_events.main([]) == 0  # rewrites it
    assert generate_events.main(["--check"]) == 0


def test_a_new_field_and_its_doc_reach_the_generated_class(tmp_path: Path) -> None:
    schema = json.loads(generate_events.current_schema().read_text())
    branches = next(f for f in schema["fields"] if f["name"] == "payload")["type"]
    ordered = next(b for b in branches if b["name"] == "ServiceOrdered")
    ordered["fields"].append({"name": "seats", "type": "long", "doc": "How many seats were bought."})
    path = tmp_path / "lifecycle_event.v9.avsc"
    path.write_text(json.dumps(schema))
    source = generate_events.generate(path)
    assert "    seats: int\n" in source
    assert '    """How many seats were bought."""\n' in source
    assert "schemas/lifecycle_event.v9.avsc" in source


def test_a_field_named_as_an_envelope_field_is_refused(tmp_path: Path) -> None:
    schema = json.loads(generate_events.current_schema().read_text())
    branches = next(f for f in schema["fields"] if f["name"] == "payload")["type"]
    branches[0]["fields"].append({"name": "producer", "type": "string"})
    path = tmp_path / "lifecycle_event.v9.avsc"
    path.write_text(json.dumps(schema))
    with pytest.raises(generate_events.Unsupported, match=r"CustomerRegistered\.producer"):
        generate_events.generate(path)


def test_one_class_per_event_type_with_the_payload_fields() -> None:
    assert [cls.__name__ for cls in EVENT_TYPES] == event_types()
    envelope = codec_for(LIFECYCLE_EVENT).current.parsed
    payload = next(f for f in envelope["fields"] if f["name"] == "payload")
    for branch, cls in zip(payload["type"], EVENT_TYPES, strict=True):
        own = [f for f in cls.__struct_fields__ if f not in LifecycleEvent.__struct_fields__]
        assert own == [f["name"] for f in branch["fields"]], cls.__name__


def sample(cls: type[LifecycleEvent], number: int) -> LifecycleEvent:
    """An event of ``cls`` with a value of its type in every field."""
    values: dict[str, Any] = {}
    for name, kind in typing.get_type_hints(cls).items():
        if name in LifecycleEvent.__struct_fields__:
            continue
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if type(kind).__name__ == "UnionType":  # str | None
            kind = options[0]
        if kind is str:
            values[name] = f"{name}-{number}"
        elif kind is bool:
            values[name] = True
        elif kind is datetime:
            values[name] = WHEN + timedelta(days=30)
        elif typing.get_origin(kind) is typing.Literal:
            values[name] = typing.get_args(kind)[-1]
        elif typing.get_origin(kind) is list:
            values[name] = [f"store/CLIENT/{number}"]
        else:
            values[name] = kind  # a type the samples do not know: the round trip fails, naming it
    return cls(event_id=f"e{number}", subject_id="cust-1", event_time=WHEN, producer="test", **values)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
def test_every_event_type_survives_encoding_and_decoding(cls: type[LifecycleEvent]) -> None:
    event = sample(cls, 7)
    codec = codec_for(LIFECYCLE_EVENT)
    decoded = from_record(codec.decode(codec.encode(to_record(as_json(event)))))
    assert decoded == event
    assert type(decoded) is cls


def test_the_json_form_is_the_command_line_s() -> None:
    event = ServiceOrdered(
        event_id="e1", subject_id="c1", event_time=WHEN, producer="p", service_id="s", kind="SSL"
    )
    assert as_json(event) == {
        "event_id": "e1",
        "subject_id": "c1",
        "event_time": "2024-03-01T12:00:00Z",
        "producer": "p",
        "type": "ServiceOrdered",
        "payload": {"service_id": "s", "kind": "SSL"},
    }


def test_bad_typed_events_are_refused_naming_the_field() -> None:
    naive = ServiceOrdered(
        event_id="e1",
        subject_id="c1",
        event_time=datetime(2024, 3, 1),
        producer="p",
        service_id="s",
        kind="SSL",
    )
    with pytest.raises(InvalidEvent, match="field event_time: must carry a time zone"):
        to_record(as_json(naive))
    empty = RecordWritten(
        event_id="e1",
        subject_id=" ",
        event_time=WHEN,
        producer="p",
        store="s",
        category="CLIENT",
        record_key="k",
    )
    with pytest.raises(InvalidEvent, match="field subject_id: must be a non-empty string"):
        to_record(as_json(empty))
    wrong = ServiceOrdered(
        event_id="e1",
        subject_id="c1",
        event_time=WHEN,
        producer="p",
        service_id="s",
        kind="BOAT",  # type: ignore[arg-type]
    )
    with pytest.raises(InvalidEvent, match="kind"):
        to_record(as_json(wrong))


def test_a_time_in_another_zone_is_kept_as_the_same_instant() -> None:
    oslo = timezone(timedelta(hours=1))
    event = ServiceOrdered(
        event_id="e1",
        subject_id="c1",
        event_time=WHEN.astimezone(oslo),
        producer="p",
        service_id="s",
        kind="SSL",
    )
    codec = codec_for(LIFECYCLE_EVENT)
    assert from_record(codec.decode(codec.encode(to_record(as_json(event))))).event_time == WHEN


def test_a_record_that_does_not_fit_its_class_is_a_validation_error() -> None:
    record = to_record(as_json(sample(ServiceOrdered, 1)))
    branch, payload = record["payload"]
    with pytest.raises(msgspec.ValidationError, match="service_id"):
        from_record({**record, "payload": (branch, {**payload, "service_id": 5})})
