"""The two framings of a lifecycle event (schemas/wire.py): Confluent-framed events decode through
a writer-schema lookup, resolved to our current schema; hostile bytes are refused with a reason,
never an exception of another kind. The real registry behind the lookup: tests/integration/
schemas/test_registry.py."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime
from typing import Any

import fastavro
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.codec import versions_of
from ebbtide.schemas.registry import call, shown
from ebbtide.schemas.wire import (
    RegistryUnavailable,
    WireDecoder,
    confluent_schema_id,
    encode_confluent,
)
from ebbtide.tools.client import to_record

CODEC = codec_for(LIFECYCLE_EVENT)
V1 = versions_of(LIFECYCLE_EVENT)[0]
EVENT = to_record(
    {
        "event_id": "e1",
        "type": "AccountClosed",
        "subject_id": "cust-1",
        "event_time": "2024-03-01T12:00:00Z",
        "producer": "billing",
    }
)


class Lookup:
    """Writer schemas by id, as the registry would answer: 1 is our v1, 3 our current version;
    any other id is unknown. ``down`` makes every lookup fail as an unreachable registry would."""

    def __init__(self, down: int = 0) -> None:
        self.asked: list[int] = []
        self.down = down
        self.known = {1: V1.parsed, 3: CODEC.current.parsed}

    def writer(self, schema_id: int) -> Any:
        self.asked.append(schema_id)
        if self.down > 0:
            self.down -= 1
            raise RegistryUnavailable("the schema registry at http://test cannot be reached (ConnectError)")
        if schema_id not in self.known:
            raise InvalidMessage(f"lifecycle_event: unknown schema id {schema_id} (the registry has none)")
        return self.known[schema_id]

    def cached(self, schema_id: int) -> bool:
        return False


def framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


def test_a_confluent_framed_event_round_trips_with_its_schema_id() -> None:
    value = encode_confluent(CODEC, 3, EVENT)
    assert value[:5] == b"\x00\x00\x00\x00\x03" and confluent_schema_id(value) == 3
    record = WireDecoder(CODEC, Lookup()).decode(value)
    assert record["event_id"] == "e1" and record["payload"] == ("io.ebbtide.events.AccountClosed", {})
    assert record["event_time"] == datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_an_older_writer_from_the_registry_is_resolved_to_our_current_schema() -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, V1.parsed, {**EVENT})  # what a producer still on v1 writes
    record = WireDecoder(CODEC, Lookup()).decode(framed(1, out.getvalue()))
    assert record["event_id"] == "e1"
    assert "signature" in record and record["signature"] is None  # a v3 field, filled by its default


def test_single_object_events_still_decode_and_never_ask_the_registry() -> None:
    lookup = Lookup()
    assert WireDecoder(CODEC, lookup).decode(CODEC.encode(EVENT))["event_id"] == "e1"
    assert lookup.asked == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00", "too short for a Confluent header (1 of 5 bytes)"),
        (b"\x00\x00\x00\x03", "too short for a Confluent header (4 of 5 bytes)"),
        (framed(7, b"\x02"), "unknown schema id 7 (the registry has none)"),
        (framed(0xFFFFFFFF, b""), "unknown schema id 4294967295"),
        (framed(3, b""), "corrupt body for schema id 3"),
        (framed(3, b"\xff" * 64), "corrupt body for schema id 3"),
        (b'{"json": 1}', "not Avro single-object encoded (c3 01) nor Confluent-framed"),
        (b"", "too short"),
    ],
)
def test_hostile_bytes_are_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        WireDecoder(CODEC, Lookup()).decode(value)
    assert refused.value.reason.startswith("lifecycle_event: ") and reason in refused.value.reason


def test_without_a_registry_a_confluent_framed_event_names_the_setting() -> None:
    with pytest.raises(InvalidMessage, match="EBBTIDE_SCHEMA_REGISTRY_URL"):
        WireDecoder(CODEC, None).decode(encode_confluent(CODEC, 3, EVENT))


def test_an_unreachable_registry_is_not_the_message_s_fault() -> None:
    with pytest.raises(RegistryUnavailable):
        WireDecoder(CODEC, Lookup(down=1)).decode(encode_confluent(CODEC, 3, EVENT))


def test_a_schema_id_must_fit_four_bytes() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        encode_confluent(CODEC, 2**32, EVENT)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_are_refused_with_a_reason(value: bytes) -> None:
    for data in (value, b"\x00" + value, b"\x00\x00\x00\x00\x03" + value):
        try:
            record = WireDecoder(CODEC, Lookup()).decode(data)
        except InvalidMessage as exc:
            assert exc.reason.startswith("lifecycle_event: ")
        else:
            assert isinstance(record, dict)


def test_a_registry_that_cannot_be_reached_is_named_without_its_password() -> None:
    url = "https://svc:s3cret@registry.example.invalid:8081/apis/ccompat/v7"

    def refused() -> None:
        raise httpx2.ConnectError("connection refused")

    with pytest.raises(RegistryUnavailable) as down:
        call(url, refused)
    assert down.value.reason == (
        "the schema registry at https://registry.example.invalid:8081/apis/ccompat/v7 "
        "cannot be reached (ConnectError)"
    )
    assert shown("http://127.0.0.1:8081/apis/ccompat/v7") == "http://127.0.0.1:8081/apis/ccompat/v7"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (lambda: json.loads("<html>proxy error</html>"), "JSONDecodeError"),  # a 2xx page, not JSON
        (lambda: None.get("id"), "AttributeError"),  # type: ignore[attr-defined]  # a null body
    ],
)
def test_an_unreadable_answer_is_unavailability_not_a_crash(answer: Any, kind: str) -> None:
    with pytest.raises(RegistryUnavailable) as down:
        call("http://u:pw@registry.test/apis/ccompat/v7", answer)
    assert down.value.reason == (
        f"the schema registry at http://registry.test/apis/ccompat/v7 gave an unreadable answer ({kind})"
    )
