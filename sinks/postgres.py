"""PostgreSQL deletion executor: idempotent deletes with a tracking row in the same transaction.

A command's effect and its tracking row commit together, so a command seen again (after a
crash before the offset commit, or a re-send) deletes nothing more and gets the same receipt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from schemas import DELETION_RECEIPT, codec_for
from sinks.mapping import StoreMap
from sinks.receipts import Executed

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


class PostgresExecutor:
    """Executes DeleteRecord commands for one store inside a caller's transaction."""

    def __init__(self, store_map: StoreMap, clock: Callable[[], datetime] = utc_now) -> None:
        self.store_map = store_map
        self.clock = clock
        self._receipts = codec_for(DELETION_RECEIPT)
        self._key_types: dict[tuple[str, str], str] = {}

    @staticmethod
    def ensure_tracking(conn: Connection) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(TRACKING_DDL)

    def execute_batch(self, cur: Cursor, commands: list[dict[str, Any]]) -> list[Executed]:
        """Execute commands in order, with the effect and receipts of :meth:`execute` on each,
        in a few statements: one look-up of repeats, one DELETE per table, one INSERT of
        tracking rows. A table whose DELETE fails falls back to one command at a time."""
        results: list[Executed | None] = [None] * len(commands)
        cur.execute(
            f"SELECT command_id, receipt FROM {TRACKING_SCHEMA}.applied_commands WHERE command_id = ANY(%s)",
            (list({c["command_id"] for c in commands}),),
        )
        applied = {command_id: bytes(receipt) for command_id, receipt in cur.fetchall()}
        first: dict[str, int] = {}
        groups: dict[str, list[int]] = {}
        for i, command in enumerate(commands):
            command_id = command["command_id"]
            if command_id in applied:
                results[i] = Executed(self._receipts.decode(applied[command_id]), applied[command_id], True)
            elif command_id not in first:
                first[command_id] = i
                problem = self._problem(command)
                if problem:
                    results[i] = self._failed(command, problem)
                else:
                    groups.setdefault(command["category"], []).append(i)
        executed_at = self.clock()
        for category, indices in groups.items():
            done = self._delete_many(cur, category, [commands[i] for i in indices], executed_at)
            for i, result in zip(indices, done, strict=True):
                results[i] = result
        for i, command in enumerate(commands):  # later copies of a command in the same batch
            if results[i] is None:
                earlier = results[first[command["command_id"]]]
                assert earlier is not None
                results[i] = Executed(earlier.receipt, earlier.encoded, repeated=True)
        return [r for r in results if r is not None]

    def _delete_many(
        self, cur: Cursor, category: str, commands: list[dict[str, Any]], executed_at: datetime
    ) -> list[Executed]:
        mapping = self.store_map.for_category(category)
        assert mapping is not None
        cur.execute("SAVEPOINT ebbtide_batch")
        try:
            cur.execute(
                sql.SQL(
                    "WITH keys AS (SELECT DISTINCT k FROM unnest(%s::text[]) AS k) "
                    "DELETE FROM {table} AS t USING keys WHERE t.{column} = keys.k::{type} RETURNING keys.k"
                ).format(
                    table=sql.Identifier(*mapping.table.split(".")),
                    column=sql.Identifier(mapping.key_column),
                    type=sql.SQL(self._key_type(cur, mapping.table, mapping.key_column)),
                ),
                ([c["record_key"] for c in commands],),
            )
            deleted = Counter(row[0] for row in cur.fetchall())
        except COMMAND_ERRORS:
            cur.execute("ROLLBACK TO SAVEPOINT ebbtide_batch")
            return [self.execute(cur, c) for c in commands]  # finds the bad one, executes the rest
        cur.execute("RELEASE SAVEPOINT ebbtide_batch")
        out = []
        for command in commands:
            rows = deleted.pop(command["record_key"], 0)  # a key's rows count for its first command
            receipt = self._receipt(command, "DELETED" if rows else "NOT_FOUND", rows, None, executed_at)
            out.append(Executed(receipt, self._receipts.encode(receipt), repeated=False))
        inserted = execute_values(
            cur,
            f"INSERT INTO {TRACKING_SCHEMA}.applied_commands "
            "(command_id, store, category, outcome, rows, receipt, applied_at) VALUES %s "
            "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            [self._tracking_row(c, done) for c, done in zip(commands, out, strict=True)],
            page_size=len(commands) or 1,
            fetch=True,
        )
        if len(inserted) < len(commands):  # another sink applied some first (a rebalance race)
            out = self._stored_receipts(cur, commands, out, {row[0] for row in inserted})
        return out

    def _stored_receipts(
        self, cur: Cursor, commands: list[dict[str, Any]], out: list[Executed], inserted: set[str]
    ) -> list[Executed]:
        """Replace our receipts by the stored ones where another sink's tracking row won."""
        lost = [c["command_id"] for c in commands if c["command_id"] not in inserted]
        cur.execute(
            f"SELECT command_id, receipt FROM {TRACKING_SCHEMA}.applied_commands WHERE command_id = ANY(%s)",
            (lost,),
        )
        stored = {command_id: bytes(receipt) for command_id, receipt in cur.fetchall()}
        return [
            Executed(self._receipts.decode(stored[c["command_id"]]), stored[c["command_id"]], True)
            if c["command_id"] in stored and c["command_id"] not in inserted
            else done
            for c, done in zip(commands, out, strict=True)
        ]

    def _key_type(self, cur: Cursor, table: str, column: str) -> str:
        """The SQL type of a key column, from the catalog (cached), to compare keys without casts on it."""
        cached = self._key_types.get((table, column))
        if cached is None:
            cur.execute(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped",
                (table, column),
            )
            row = cur.fetchone()
            if row is None:
                raise psycopg2.ProgrammingError(f"no column {column} in {table}")
            cached = self._key_types[(table, column)] = str(row[0])
        return cached

    def _problem(self, command: dict[str, Any]) -> str | None:
        store = self.store_map.store
        if command["store"] != store:
            return f"command for store {command['store']} sent to {store}"
        if self.store_map.for_category(command["category"]) is None:
            return f"store map of {store} has no table for category {command['category']}"
        return None

    @staticmethod
    def _tracking_row(command: dict[str, Any], done: Executed) -> tuple[Any, ...]:
        receipt = done.receipt
        return (
            command["command_id"],
            command["store"],
            command["category"],
            receipt["outcome"],
            receipt["rows"],
            psycopg2.Binary(done.encoded),
            receipt["executed_at"],
        )

    def execute(self, cur: Cursor, command: dict[str, Any]) -> Executed:
        cur.execute(
            f"SELECT receipt FROM {TRACKING_SCHEMA}.applied_commands WHERE command_id = %s",
            (command["command_id"],),
        )
        row = cur.fetchone()
        if row is not None:
            encoded = bytes(row[0])
            return Executed(self._receipts.decode(encoded), encoded, repeated=True)
        problem = self._problem(command)
        if problem:
            return self._failed(command, problem)
        mapping = self.store_map.for_category(command["category"])
        assert mapping is not None
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
        done = Executed(receipt, encoded, repeated=False)
        cur.execute(
            f"INSERT INTO {TRACKING_SCHEMA}.applied_commands "
            "(command_id, store, category, outcome, rows, receipt, applied_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            self._tracking_row(command, done),
        )
        won = cur.fetchone() is not None
        cur.execute("RELEASE SAVEPOINT ebbtide_command")
        return done if won else self._stored_receipts(cur, [command], [done], set())[0]

    def _failed(self, command: dict[str, Any], reason: str) -> Executed:
        # Not tracked: a failed command stays executable, so a re-issue can still succeed.
        receipt = self._receipt(command, "FAILED", 0, reason)
        return Executed(receipt, self._receipts.encode(receipt), repeated=False)

    def _receipt(
        self,
        command: dict[str, Any],
        outcome: str,
        rows: int,
        reason: str | None,
        executed_at: datetime | None = None,
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
            "executed_at": executed_at or self.clock(),
        }
