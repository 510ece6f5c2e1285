"""PostgreSQL deletion executor: idempotent deletes with a tracking row in the same transaction.

A command's effect and its tracking row commit together, so a command seen again (after a
crash before the offset commit, or a re-send) deletes nothing more and gets the same receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from schemas import DELETION_RECEIPT, codec_for
from sinks.mapping import StoreMap

TRACKING_SCHEMA = "ebbtide_sink"

TRACKING_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {TRACKING_SCHEMA};
CREATE TABLE IF NOT EXISTS {TRACKING_SCHEMA}.applied_commands (
    command_id  text PRIMARY KEY,
    store       text NOT NULL,
    category    text NOT NULL,
    outcome     text NOT NULL,
    rows        integer NOT NULL,
    receipt     bytea NOT NULL,
    applied_at  timestamptz NOT NULL
);
"""

# Errors that say "this command cannot be executed as given", as opposed to "the database is
# unreachable" (OperationalError, InterfaceError), which abort the batch for a retry.
COMMAND_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.ProgrammingError)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Executed:
    receipt: dict[str, Any]
    encoded: bytes
    repeated: bool  # True when the command had already been applied


class PostgresExecutor:
    """Executes DeleteRecord commands for one store inside a caller's transaction."""

    def __init__(self, store_map: StoreMap, clock: Callable[[], datetime] = utc_now) -> None:
        self.store_map = store_map
        self.clock = clock
        self._receipts = codec_for(DELETION_RECEIPT)

    @staticmethod
    def ensure_tracking(conn: Connection) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(TRACKING_DDL)

    def execute(self, cur: Cursor, command: dict[str, Any]) -> Executed:
        cur.execute(
            f"SELECT receipt FROM {TRACKING_SCHEMA}.applied_commands WHERE command_id = %s",
            (command["command_id"],),
        )
        row = cur.fetchone()
        if row is not None:
            encoded = bytes(row[0])
            return Executed(self._receipts.decode(encoded), encoded, repeated=True)
        mapping = self.store_map.for_category(command["category"])
        store = self.store_map.store
        if command["store"] != store:
            return self._failed(command, f"command for store {command['store']} sent to {store}")
        if mapping is None:
            category = command["category"]
            return self._failed(command, f"store map of {store} has no table for category {category}")
        cur.execute("SAVEPOINT ebbtide_command")
        try:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                    sql.Identifier(*mapping.table.split(".")), sql.Identifier(mapping.key_column)
                ),
                (command["record_key"],),
            )
        except COMMAND_ERRORS as exc:
            cur.execute("ROLLBACK TO SAVEPOINT ebbtide_command")
            return self._failed(command, f"{type(exc).__name__} deleting from {mapping.table}")
        rows = cur.rowcount
        receipt = self._receipt(command, "DELETED" if rows else "NOT_FOUND", rows, None)
        encoded = self._receipts.encode(receipt)
        cur.execute(
            f"INSERT INTO {TRACKING_SCHEMA}.applied_commands "
            "(command_id, store, category, outcome, rows, receipt, applied_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                command["command_id"],
                command["store"],
                command["category"],
                receipt["outcome"],
                rows,
                psycopg2.Binary(encoded),
                receipt["executed_at"],
            ),
        )
        cur.execute("RELEASE SAVEPOINT ebbtide_command")
        return Executed(receipt, encoded, repeated=False)

    def _failed(self, command: dict[str, Any], reason: str) -> Executed:
        # Not tracked: a failed command stays executable, so a re-issue can still succeed.
        receipt = self._receipt(command, "FAILED", 0, reason)
        return Executed(receipt, self._receipts.encode(receipt), repeated=False)

    def _receipt(
        self, command: dict[str, Any], outcome: str, rows: int, reason: str | None
    ) -> dict[str, Any]:
        return {
            "command_id": command["command_id"],
            "subject_id": command["subject_id"],
            "store": command["store"],
            "category": command["category"],
            "record_key": command["record_key"],
            "outcome": outcome,
            "rows": rows,
            "reason": reason,
            "executed_at": self.clock(),
        }
