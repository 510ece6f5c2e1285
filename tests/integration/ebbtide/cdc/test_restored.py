"""A restored row keeps its deadline: the translator, on the real PostgreSQL, announces a row
Ebbtide deleted and that comes back with the time it was first announced with, also for a table
without a time_column (the restore's commit time would start the deadline over). The publisher is
a recorder: what reaches Kafka is the e2e test's (tests/e2e/test_cdc.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2

from ebbtide.cdc.changes import Mapping
from ebbtide.cdc.translator import Translator
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.tracking import TRACKING_TABLE, ensure_tracking
from ebbtide.sinks.postgres.table_map import parse_table_map

MAPPING = Mapping(
    [
        parse_table_map(
            {
                "store": "s",
                "categories": {
                    "client": [
                        {"table": "notes", "key_column": "id", "action": "delete", "subject_column": "owner"}
                    ]
                },
            },
            "test.toml",
        )
    ]
)


@dataclass
class Message:
    value: bytes
    topic: str = "t.cdc"
    partition: int = 0
    offset: int = 0


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> None:
        pass


def change(op: str, lsn: int, when: datetime, tx_id: int = 1) -> Message:
    row = {"id": 7, "owner": "cust-00007"}
    doc = {
        "before": row if op == "d" else None,
        "after": None if op == "d" else row,
        "op": op,
        "source": {
            "schema": "public",
            "table": "notes",
            "lsn": lsn,
            "txId": tx_id,
            "ts_ms": int(when.timestamp() * 1000),
        },
    }
    return Message(json.dumps(doc).encode(), offset=lsn)


def test_a_restored_row_of_a_table_without_time_column_is_announced_as_old_as_it_was(database: str) -> None:
    conn = psycopg2.connect(database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE notes (id bigint PRIMARY KEY, owner text)")
        ensure_tracking(conn)
        with conn, conn.cursor() as cur:  # a sink's deletion of row 7: its tracking row
            cur.execute(
                f"INSERT INTO {TRACKING_TABLE} (command_id, store, category, outcome, rows, receipt, "
                "applied_at) VALUES ('c1', 's', 'client', 'DELETED', 1, '', now()) "
                "RETURNING xact % (2^32)::bigint"
            )
            sink_tx = int(cur.fetchone()[0])  # type: ignore[index]
        published = Recorder()
        translator = Translator(Settings(topic_prefix="t"), MAPPING, conn, published, Recorder())  # type: ignore[arg-type]
        written, deleted, restored = (
            datetime(2019, 3, 1, tzinfo=UTC),
            datetime(2024, 3, 1, tzinfo=UTC),
            datetime(2025, 3, 1, tzinfo=UTC),
        )
        translator.handle([change("c", 10, written)])
        translator.handle([change("d", 20, deleted, sink_tx)])
        translator.handle([change("c", 30, restored)])
        first, again = published.events
        assert first["event_time"] == again["event_time"] == written.isoformat()
        assert again["event_id"] != first["event_id"]  # a new announcement, of a record as old as it was
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ebbtide_cdc.deleted_keys")
            assert cur.fetchone() == (0,)  # the row exists again: its deletion is forgotten
    finally:
        conn.close()
