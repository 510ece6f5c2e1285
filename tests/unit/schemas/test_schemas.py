"""Schemas: framing, round trips, and the compatibility check that guards evolution."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.codec import SCHEMA_DIR
from ebbtide.schemas.compat import check_directory, incompatibilities
from ebbtide.tools.client import to_record

text = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
times = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
payloads = st.one_of(
    st.tuples(st.just("CustomerRegistered"), st.just({})),
    st.tuples(
        st.just("ServiceOrdered"),
        st.fixed_dictionaries(
            {"service_id": text, "kind": st.sampled_from(["DOMAIN", "SSL", "HOSTING", "EMAIL", "OTHER"])}
        ),
    ),
    st.tuples(st.just("InvoiceIssued"), st.fixed_dictionaries({"invoice_id": text})),
    st.tuples(
        st.just("RecordWritten"),
        st.fixed_dictionaries(
            {
                "store": text,
                "category": st.sampled_from(["client", "invoice", "correspondence", "hosted"]),
                "record_key": text,
                "ref": st.none() | text,
            }
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(text, text, times, payloads)
def test_every_event_survives_encode_then_decode(
    event_id: str, subject: str, when: datetime, payload: tuple[str, dict[str, object]]
) -> None:
    kind, body = payload
    record = to_record(
        {
            "event_id": event_id,
            "type": kind,
            "subject_id": subject,
            "event_time": when.isoformat(),
            "producer": "p",
            "payload": body,
        }
    )
    codec = codec_for(LIFECYCLE_EVENT)
    decoded = codec.decode(codec.encode(record))
    assert decoded["subject_id"] == subject and decoded["event_id"] == event_id
    assert decoded["payload"][0].endswith(kind)
    assert abs(decoded["event_time"] - when).total_seconds() < 0.001


def test_shipped_schema_versions_are_compatible_both_ways() -> None:
    assert check_directory() == []


def test_adding_a_field_without_default_is_reported_as_breaking(tmp_path: Path) -> None:
    old = (SCHEMA_DIR / "deletion_receipt.v1.avsc").read_text()
    new = old.replace(
        '{"name": "rows", "type": "int",',
        '{"name": "region", "type": "string"},\n    {"name": "rows", "type": "int",',
    )
    (tmp_path / "deletion_receipt.v1.avsc").write_text(old)
    (tmp_path / "deletion_receipt.v2.avsc").write_text(new)
    problems = check_directory(tmp_path)
    assert any("v2 cannot read v1" in p and "region" in p for p in problems)


def _with_new_branch(schema: str) -> str:
    """A copy of a schema whose last union field has one more record branch."""
    doc = json.loads(schema)
    union = next(f for f in doc["fields"] if isinstance(f["type"], list) and isinstance(f["type"][0], dict))
    union["type"].append({"type": "record", "name": "Brand", "fields": [{"name": "x", "type": "string"}]})
    return json.dumps(doc)


def test_a_new_event_type_is_readable_by_the_new_worker_and_refused_in_a_full_schema(
    tmp_path: Path,
) -> None:
    events = (SCHEMA_DIR / "lifecycle_event.v1.avsc").read_text()
    assert incompatibilities(_with_new_branch(events), events) == []  # the new reader reads old data
    assert incompatibilities(events, _with_new_branch(events)) != []  # old readers cannot read it
    assert check_directory() == []  # lifecycle_event is BACKWARD: v2 adds ErasureRefused/Withdrawn
    (tmp_path / "decision.v1.avsc").write_text(
        '{"type":"record","name":"D","fields":[{"name":"u",'
        '"type":[{"type":"record","name":"A","fields":[]}]}]}'
    )
    (tmp_path / "decision.v2.avsc").write_text(_with_new_branch((tmp_path / "decision.v1.avsc").read_text()))
    assert any("v1 readers cannot read v2" in p for p in check_directory(tmp_path))


def test_adding_an_optional_field_is_compatible() -> None:
    old = '{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}'
    new = (
        '{"type":"record","name":"R","fields":[{"name":"a","type":"string"},'
        '{"name":"b","type":["null","string"],"default":null}]}'
    )
    assert incompatibilities(new, old) == [] and incompatibilities(old, new) == []


def test_a_corrupt_body_is_an_invalid_message_not_a_crash() -> None:
    codec = codec_for(LIFECYCLE_EVENT)
    good = codec.encode(
        to_record(
            {
                "event_id": "e",
                "type": "AccountClosed",
                "subject_id": "s",
                "event_time": "2020-01-01T00:00:00Z",
                "producer": "p",
            }
        )
    )
    with pytest.raises(InvalidMessage, match="corrupt body"):
        codec.decode(good[:11] + b"\xff\xff\xff\xff\xff")
