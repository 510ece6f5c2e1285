"""The ceilings the PostgreSQL sink is measured against (``bench.deletion``), on its own schema.

Each deletes the same rows of a fresh, identical table shaped like a customers table:

- ``one statement``: one ``DELETE ... WHERE id = ANY(array)`` of every row and a commit (the
  first baseline; no sink deletes a whole table in one statement);
- ``raw at batch``: the same statement per batch of the sink's own size (``BATCH`` commands a
  poll, ``sinks/base/loop.py``), one commit per batch, as the sink commits;
- ``hand-written``: what a developer would write for exactly-once deletions, per batch and
  commit: one statement that deletes the rows and inserts their tracking rows in the sink's
  tracking table (a CTE), each row holding a receipt-sized value;
- ``crypto floor``: no database at all: the Ed25519 verification of each command and the
  signature of its receipt, which every sink does per command and no ceiling above does.

Each reports rows/s and the write-ahead log bytes per deletion (``pg_current_wal_lsn()``
before and after; the cluster is this benchmark's own, so nothing else writes to it).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from bench.common import stopwatch
from ebbtide.runtime import authenticity, keys
from ebbtide.sinks.base.receipts import executed
from ebbtide.sinks.base.tracking import TRACKING_TABLE

TABLE = """
DROP TABLE IF EXISTS {t};
CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL,
                  phone text NOT NULL, address text NOT NULL);
INSERT INTO {t} SELECT g, 'Name ' || g, 'c' || g || '@example.invalid', lpad(g::text, 8, '0'),
                       g || ' Storgata, 0150 Oslo' FROM generate_series(1, %s) g;
ANALYZE {t};
"""
HAND_WRITTEN = """
WITH gone AS (DELETE FROM {t} WHERE id = ANY(%(ids)s::bigint[]) RETURNING id)
INSERT INTO {tracking} (command_id, store, category, outcome, rows, receipt, applied_at)
SELECT c.command_id, %(store)s, 'client', CASE WHEN gone.id IS NULL THEN 'NOT_FOUND' ELSE 'DELETED' END,
       (gone.id IS NOT NULL)::int, %(receipt)s, now()
FROM unnest(%(command_ids)s::text[], %(ids)s::bigint[]) AS c(command_id, id)
LEFT JOIN gone ON gone.id = c.id
ON CONFLICT (command_id) DO NOTHING
"""


@dataclass(frozen=True)
class Measured:
    """Seconds for ``rows`` deletions and the WAL bytes they wrote (median over repeats)."""

    rows: int
    seconds: float
    wal_bytes: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def wal_per_row(self) -> float:
        return self.wal_bytes / self.rows


def fill(conn: Connection, table: str, rows: int) -> None:
    """(Re)create ``table`` shaped like a customers table, with ids 1..rows."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL(TABLE).format(t=sql.Identifier(table)), (rows,))


def wal_lsn(conn: Connection) -> str:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()")
        return str(cur.fetchone()[0])  # type: ignore[index]


def wal_since(conn: Connection, lsn: str) -> int:
    """WAL bytes written since ``lsn``."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,))
        return int(cur.fetchone()[0])  # type: ignore[index]


def timed(
    conn: Connection, table: str, rows: int, delete: Callable[[Any, list[int]], None], batch: int
) -> Measured:
    """Fill ``table``, then ``delete(cursor, ids)`` per ``batch`` ids with a commit after each."""
    fill(conn, table, rows)
    ids, lsn = list(range(1, rows + 1)), wal_lsn(conn)
    with conn.cursor() as cur, stopwatch() as elapsed:
        for start in range(0, rows, batch):
            delete(cur, ids[start : start + batch])
            conn.commit()
    seconds, wal = elapsed(), wal_since(conn, lsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        if cur.fetchone()[0]:  # type: ignore[index]
            raise RuntimeError(f"a ceiling left rows in {table}")
    return Measured(rows, seconds, wal)


def median(runs: list[Measured]) -> Measured:
    return Measured(
        runs[0].rows,
        statistics.median(r.seconds for r in runs),
        statistics.median(r.wal_bytes for r in runs),
    )


def raw(conn: Connection, table: str, rows: int, batch: int) -> Measured:
    """``DELETE FROM t WHERE id = ANY(array)`` per ``batch`` rows, a commit after each."""
    statement = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table))
    return timed(conn, table, rows, lambda cur, ids: cur.execute(statement, (ids,)), batch)


def hand_written(conn: Connection, table: str, rows: int, batch: int, receipt_size: int) -> Measured:
    """The DELETE and its tracking rows in one statement per ``batch`` rows, a commit after each."""
    statement = sql.SQL(HAND_WRITTEN).format(t=sql.Identifier(table), tracking=sql.SQL(TRACKING_TABLE))
    run = datetime.now(UTC).strftime("%H%M%S%f")
    receipt = psycopg2.Binary(b"r" * receipt_size)

    def delete(cur: Any, ids: list[int]) -> None:
        command_ids = [f"hand-{run}-{i}" for i in ids]
        cur.execute(statement, {"ids": ids, "command_ids": command_ids, "store": table, "receipt": receipt})

    return timed(conn, table, rows, delete, batch)


def crypto_floor(commands: list[dict[str, Any]]) -> float:
    """Seconds to verify each command's signature and sign a receipt for it, as the sink does per
    command (Ed25519 over canonical JSON, and the receipt's Avro encoding)."""
    private, public = keys.generate_key()
    signer, verifier = authenticity.MessageSigner(private), authenticity.Verifier(public)
    signed = [signer.sign(authenticity.COMMAND, c) for c in commands]
    now = datetime.now(UTC)
    with stopwatch() as elapsed:
        for command, datum in zip(commands, signed, strict=True):
            verifier.check(authenticity.COMMAND, datum)
            executed(command, "DELETED", 1, None, now, signer=signer)
    return elapsed()


def receipt_size(command: dict[str, Any]) -> int:
    """Bytes of a signed, encoded receipt for ``command`` (what the sink stores per row)."""
    private, _ = keys.generate_key()
    done = executed(
        command, "DELETED", 1, None, datetime.now(UTC), signer=authenticity.MessageSigner(private)
    )
    return len(done.encoded)
