"""What the translator reads: Debezium's change events, and the tables of the store maps.

The mapping is the store maps themselves (``sinks/postgres/maps/*.toml``): each table action with
a ``subject_column`` names the store, the category, the key column, the subject (through
``subject_format``) and the ref (``ref_column`` through ``ref_format``) of its rows, as for
``ebbtide backfill``. One place says what a row is, whether it is announced by a backfill, by
change data capture, or deleted by the sink.

Debezium's change events are JSON (Connect's JsonConverter without schemas)::

    {"before": {...} | null, "after": {...} | null, "op": "c" | "r" | "u" | "d" | "t",
     "source": {"schema": "public", "table": "customers", "lsn": 123, "txId": 456, "ts_ms": ...}}

``c`` (insert) and ``r`` (a row of the initial snapshot) announce, ``d`` is checked against the
ledger; updates and truncates change no record's existence and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ebbtide.sinks.postgres.table_map import TableAction, TableMap, TableMapError, format_value

PRODUCER = "ebbtide-cdc"
ANNOUNCING = {"c": "insert", "r": "snapshot"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_LIMIT = 1_000_000  # a Debezium date is days since 1970 (below this); a timestamp, microseconds


class BadChange(ValueError):
    """A message of the CDC topic that is not a Debezium change event of a mapped table; the
    message names the field or the table, never a value."""


@dataclass(frozen=True)
class Source:
    """A captured table: the store map actions (one per category) that make its rows records."""

    store: str
    action: TableAction

    @property
    def table(self) -> str:
        return self.action.qualified


@dataclass(frozen=True)
class Change:
    """One row change of a captured table."""

    op: str  # c, r or d
    table: str  # schema.table
    row: dict[str, Any]  # after (c, r) or before (d)
    lsn: int
    tx_id: int | None
    committed: datetime  # the transaction's commit time (source.ts_ms)


class Mapping:
    """The captured tables of some store maps: every action with a ``subject_column``."""

    def __init__(self, store_maps: Sequence[TableMap]) -> None:
        self.by_table: dict[str, list[Source]] = {}
        # Per table and store: the categories whose commands delete its rows (a command of another
        # category than the row's own may, e.g. a child table's rows deleted with their parent).
        self.deleting: dict[tuple[str, str], list[str]] = {}
        for store_map in store_maps:
            for action in store_map.all_actions():
                if action.subject_column is not None:
                    self.by_table.setdefault(action.qualified, []).append(Source(store_map.store, action))
                if action.deletes:
                    self.deleting.setdefault((action.qualified, store_map.store), []).append(action.category)
        if not self.by_table:
            names = ", ".join(m.source for m in store_maps)
            raise TableMapError(f"{names}: no table action has a subject_column; nothing to capture")
        for table, sources in self.by_table.items():
            keys = {s.action.key_column for s in sources}
            if len(keys) > 1:
                raise TableMapError(
                    f"table {table}: its categories name different key columns ({', '.join(sorted(keys))}); "
                    "change data capture needs one record key per row"
                )

    @property
    def tables(self) -> list[str]:
        return sorted(self.by_table)

    def key_column(self, table: str) -> str:
        return self.by_table[table][0].action.key_column

    def columns(self, table: str) -> list[str]:
        """The columns the translator reads of ``table``: key, subject, ref and time columns. The
        connector captures only these, so no other value of a row (a name, an e-mail) reaches Kafka."""
        names = {
            c
            for s in self.by_table[table]
            for c in (s.action.key_column, s.action.subject_column, s.action.ref_column, s.action.time_column)
            if c is not None
        }
        return sorted(names)


def parse(value: bytes | None, mapping: Mapping) -> Change | None:
    """The change a message holds; None for what announces nothing and deletes nothing (an
    update, a truncate, a tombstone). :class:`BadChange` for a message that is not one."""
    if value is None:
        return None  # a tombstone after a delete
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadChange("cdc: not a JSON Debezium change event") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), dict):
        raise BadChange("cdc: field source: missing (not a Debezium change event)")
    op, source = doc.get("op"), doc["source"]
    if op not in ("c", "r", "d"):
        if op in ("u", "t"):
            return None
        raise BadChange("cdc: field op: not one of c, r, u, d, t")
    table = f"{source.get('schema')}.{source.get('table')}"
    if table not in mapping.by_table:
        raise BadChange(f"cdc: table {table[:128]}: not in the store maps' captured tables")
    row = doc.get("before" if op == "d" else "after")
    if not isinstance(row, dict):
        raise BadChange(f"cdc: table {table}: field {'before' if op == 'd' else 'after'}: missing")
    lsn, tx_id, ts_ms = source.get("lsn"), source.get("txId"), source.get("ts_ms")
    if (
        not isinstance(lsn, int)
        or not isinstance(ts_ms, int)
        or not (tx_id is None or isinstance(tx_id, int))
    ):
        raise BadChange(f"cdc: table {table}: field source.lsn, source.txId or source.ts_ms: not a number")
    try:
        committed = _EPOCH + timedelta(milliseconds=ts_ms)
    except OverflowError:
        raise BadChange(f"cdc: table {table}: field source.ts_ms: not a time") from None
    return Change(op, table, row, lsn, tx_id, committed)


def record_key(change: Change, mapping: Mapping) -> str:
    """The row's record key (its key column as text); :class:`BadChange` naming the table and the
    column if the change does not carry it (a delete carries only the replica identity)."""
    column = mapping.key_column(change.table)
    value = change.row.get(column)
    if value is None:
        hint = " (a delete carries the primary key only: REPLICA IDENTITY FULL)" if change.op == "d" else ""
        raise BadChange(f"cdc: table {change.table}: key column {column}: missing or NULL{hint}")
    return str(value)


def event_time(value: Any, default: datetime) -> datetime:
    """A Debezium time value as a time: ISO text (timestamptz), days since 1970 (date) or
    microseconds since 1970 (timestamp without time zone, taken as UTC); ``default`` if NULL.
    ValueError for a value that is no time a datetime holds: a year after 9999 or before 1, or
    Debezium's stand-in for ``infinity`` (the largest long); OverflowError is turned into it."""
    if value is None:
        return default
    if isinstance(value, str):
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            if abs(value) < _DAYS_LIMIT:
                return _EPOCH + timedelta(days=value)
            return _EPOCH + timedelta(microseconds=value)
        except OverflowError:
            raise ValueError("out of range") from None
    raise ValueError(type(value).__name__)


def row_time(change: Change, action: TableAction) -> datetime | None:
    """The event time a row's ``time_column`` gives, if its image carries a valid one (a delete
    carries it with REPLICA IDENTITY FULL); None otherwise."""
    value = None if action.time_column is None else change.row.get(action.time_column)
    if value is None:
        return None
    try:
        return event_time(value, change.committed)
    except (ValueError, OverflowError):
        return None


def announcements(change: Change, mapping: Mapping) -> list[dict[str, Any]]:
    """The RecordWritten events (JSON form, :func:`ebbtide.tools.client.to_record`) an insert or
    a snapshot row announces: one per category of its table. Event id
    ``cdc:<store>:<category>:<key>:<lsn>``: the same change read again (a connector restart)
    is the same event, while a row inserted again later (a restored backup) is a new one.
    The event time is the row's ``time_column`` (else the commit time), so a restored row is as
    old as it was: its deadline is where it was, past if it was deleted for having passed."""
    key = record_key(change, mapping)
    out = []
    for source in mapping.by_table[change.table]:
        action = source.action
        where = f"cdc: table {change.table} (store {source.store}, category {action.category})"
        subject = change.row.get(action.subject_column or "")
        if subject is None:
            raise BadChange(f"{where}: subject column {action.subject_column}: missing or NULL")
        ref = None if action.ref_column is None else change.row.get(action.ref_column)
        try:
            written = event_time(change.row.get(action.time_column or ""), change.committed)
        except (ValueError, OverflowError):
            raise BadChange(f"{where}: time column {action.time_column}: not a time") from None
        try:
            subject_id = format_value(action.subject_format, subject, "subject_column")
            ref_text = None if ref is None else format_value(action.ref_format, ref, "ref_column")
        except ValueError as exc:
            raise BadChange(f"{where}: {exc}") from None
        out.append(
            {
                "event_id": f"cdc:{source.store}:{action.category}:{key}:{change.lsn}",
                "type": "RecordWritten",
                "subject_id": subject_id,
                "event_time": written.isoformat(),
                "producer": PRODUCER,
                "payload": {
                    "store": source.store,
                    "category": action.category,
                    "record_key": key,
                    "ref": ref_text,
                },
            }
        )
    return out
