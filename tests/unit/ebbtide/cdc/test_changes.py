"""Debezium change events into RecordWritten events, by the store maps (no servers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.cdc.changes import BadChange, Mapping, announcements, event_time, parse, record_key
from ebbtide.sinks.postgres.table_map import TableMapError, load_table_map, map_path, parse_table_map
from ebbtide.tools.client import to_record

CUSTOMER_DB = Mapping([load_table_map(map_path("customer_db"))])


def change(op: str, table: str = "customers", **row: Any) -> bytes:
    image = {"customer_id": 7, "registered_at": "2019-01-10T00:00:00.000000Z", **row}
    return json.dumps(
        {
            "before": image if op == "d" else None,
            "after": None if op == "d" else image,
            "op": op,
            "source": {
                "schema": "public",
                "table": table,
                "lsn": 123,
                "txId": 45,
                "ts_ms": 1_700_000_000_000,
            },
        }
    ).encode()


def test_an_insert_is_announced_as_backfill_would_with_an_id_of_its_position_in_the_log() -> None:
    parsed = parse(change("c"), CUSTOMER_DB)
    assert parsed is not None
    [event] = announcements(parsed, CUSTOMER_DB)
    assert event["event_id"] == "cdc:customer_db:client:7:123"
    assert event["subject_id"] == "cust-00007"
    assert event["payload"] == {"store": "customer_db", "category": "client", "record_key": "7", "ref": None}
    assert event["event_time"] == "2019-01-10T00:00:00+00:00"  # the row's time_column, not the commit
    to_record(event)  # a valid lifecycle event


def test_a_ref_goes_through_the_maps_ref_column() -> None:
    raw = change("r", "domain_contacts", contact_id=3, customer_id=7, domain="example.no", created_at=None)
    parsed = parse(raw, CUSTOMER_DB)
    assert parsed is not None
    [event] = announcements(parsed, CUSTOMER_DB)
    assert event["payload"]["ref"] == "example.no"
    assert event["payload"]["record_key"] == "3"
    assert event["event_time"] == "2023-11-14T22:13:20+00:00"  # no time: the commit's


@pytest.mark.parametrize("op", ["u", "t"])
def test_updates_and_truncates_announce_nothing(op: str) -> None:
    assert parse(change(op), CUSTOMER_DB) is None
    assert parse(None, CUSTOMER_DB) is None  # a tombstone


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not a JSON Debezium change event"),
        (b'{"op": "c"}', "field source: missing"),
        (change("x"), "field op: not one of c, r, u, d, t"),
        (change("c", "orders"), "table public.orders: not in the store maps' captured tables"),
        (change("c").replace(b'"lsn": 123', b'"lsn": "a"'), "field source.lsn"),
    ],
)
def test_what_is_no_change_of_a_captured_table_is_refused_naming_the_field(raw: bytes, reason: str) -> None:
    with pytest.raises(BadChange, match=reason):
        parse(raw, CUSTOMER_DB)


def test_a_row_without_key_or_subject_is_refused_naming_the_column_never_the_value() -> None:
    no_key = parse(change("d", customer_id=None, email="secret@example.invalid"), CUSTOMER_DB)
    assert no_key is not None
    with pytest.raises(
        BadChange, match=r"key column customer_id: missing or NULL.*REPLICA IDENTITY FULL"
    ) as exc:
        record_key(no_key, CUSTOMER_DB)
    assert "secret" not in str(exc.value)
    no_subject = parse(change("c", "support_tickets", ticket_id=1, customer_id=None), CUSTOMER_DB)
    assert no_subject is not None
    with pytest.raises(BadChange, match="subject column customer_id: missing or NULL"):
        announcements(no_subject, CUSTOMER_DB)


def test_debezium_time_values() -> None:
    default = datetime(2024, 1, 1, tzinfo=UTC)
    assert event_time(None, default) == default
    assert event_time("2019-01-10T10:00:00Z", default) == datetime(2019, 1, 10, 10, tzinfo=UTC)
    assert event_time(19_000, default) == datetime(2022, 1, 8, tzinfo=UTC)  # a date: days
    assert event_time(1_547_114_400_000_000, default) == datetime(2019, 1, 10, 10, tzinfo=UTC)  # micros
    with pytest.raises(ValueError):
        event_time(1.5, default)


def test_a_map_without_subject_columns_or_with_two_keys_for_one_table_is_refused() -> None:
    nothing = parse_table_map(
        {"store": "s", "categories": {"client": [{"table": "t", "key_column": "k", "action": "delete"}]}},
        "m.toml",
    )
    with pytest.raises(TableMapError, match=r"m.toml: no table action has a subject_column"):
        Mapping([nothing])
    two = parse_table_map(
        {
            "store": "s",
            "categories": {
                "client": [{"table": "t", "key_column": "a", "action": "delete", "subject_column": "a"}],
                "marketing": [{"table": "t", "key_column": "b", "action": "delete", "subject_column": "a"}],
            },
        }
    )
    with pytest.raises(TableMapError, match=r"table public.t: its categories name different key columns"):
        Mapping([two])


def test_the_categories_whose_commands_delete_a_tables_rows() -> None:
    both = Mapping([load_table_map(map_path("customer_db")), load_table_map(map_path("billing_db"))])
    assert both.deleting[("public.customers", "customer_db")] == ["client"]
    assert both.deleting[("billing.payments", "billing_db")] == ["payment"]  # invoice only unlinks them
    assert ("public.orders", "customer_db") not in both.deleting  # anonymised, never deleted
    assert both.columns("public.support_tickets") == ["created_at", "customer_id", "ticket_id"]


EXTREME_TIMES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # days or microseconds, any long
    st.sampled_from([2**63 - 1, -(2**63), 999_999, -999_999]),  # infinity's stand-in, days limits
    st.sampled_from(["infinity", "-infinity", "+10000-01-01T00:00:00Z", "0000-12-31T00:00:00Z"]),
    st.text(max_size=30),
)


@settings(max_examples=100, deadline=None)
@given(value=EXTREME_TIMES, ts_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_a_time_no_datetime_holds_is_a_bad_change_never_a_crash(value: Any, ts_ms: int) -> None:
    """A year after 9999, days before year 1 or Debezium's `infinity` once raised OverflowError,
    which no handler caught: the translator died and read the same offset on every restart."""
    doc = json.loads(change("c", registered_at=value))
    doc["source"]["ts_ms"] = ts_ms
    try:
        parsed = parse(json.dumps(doc).encode(), CUSTOMER_DB)
        assert parsed is not None
        [event] = announcements(parsed, CUSTOMER_DB)
    except BadChange as exc:
        assert "time column registered_at" in str(exc) or "source.ts_ms" in str(exc)
    else:
        assert datetime.fromisoformat(event["event_time"]).tzinfo is not None


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 3_000_000 * 365 * 86_400_000_000, -999_999])
def test_debezium_infinity_and_years_out_of_range_are_refused_naming_the_column(value: int) -> None:
    parsed = parse(change("c", registered_at=value), CUSTOMER_DB)
    assert parsed is not None
    with pytest.raises(BadChange, match="time column registered_at: not a time"):
        announcements(parsed, CUSTOMER_DB)
