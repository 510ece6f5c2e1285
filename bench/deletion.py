"""Deletion throughput: rows/s deleted by the PostgreSQL sink against a hand-written ceiling.

(a) the executor alone, 500 commands per transaction as ``sinks/base/loop.py`` batches them;
(b) the real ``PostgresSink`` through Kafka, from its first batch to its last receipt.
Each against a ceiling measured just before it: as many rows of a fresh, identical table
deleted by one ``DELETE FROM t WHERE id = ANY(%s)`` and a commit. In a scratch database.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from bench.common import Context, Figure, stopwatch
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, codec_for
from ebbtide.sinks.base.receipts import Executed
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.sink import PostgresSink
from ebbtide.sinks.postgres.table_map import TableAction, TableMap
from ebbtide.streams.engine.decisions import stable_id
from ebbtide.streams.worker.certify import CertificateSigner

NAME = "deletion"
BATCH = 500  # commands per transaction, as the sink's max_poll_records
STORE = "bench_store"
GOAL = ">= 0.8 of the ceiling and >= 100,000 rows/s"
CEILING = (
    "one DELETE FROM t WHERE id = ANY(array) of the same rows + COMMIT, fresh identical table (median of 3)"
)
SINK_TIMEOUT = 1800.0
TABLE = """
DROP TABLE IF EXISTS {t};
CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL,
                  phone text NOT NULL, address text NOT NULL);
INSERT INTO {t} SELECT g, 'Name ' || g, 'c' || g || '@example.invalid', lpad(g::text, 8, '0'),
                       g || ' Storgata, 0150 Oslo' FROM generate_series(1, %s) g;
ANALYZE {t};
"""


@contextmanager
def scratch_database(admin_dsn: str, label: str) -> Iterator[str]:
    """A fresh database, dropped afterwards; yields its DSN."""
    name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    admin.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunparse(urlparse(admin_dsn)._replace(path=f"/{name}"))
    finally:
        admin.cursor().execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def drop_topics(settings: Settings, prefixes: Iterable[str]) -> None:
    """Delete the topics whose names start with one of ``prefixes`` (best effort)."""
    admin = kafka.admin(settings, client_id=None)
    with contextlib.suppress(Exception):  # a leftover topic is harmless; figures matter more
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(tuple(prefixes))])
    admin.close()


class TimedCursor(Cursor):
    """A cursor that counts its statements and the time spent in them (round trip + server)."""

    statements = 0
    seconds = 0.0

    def execute(self, query: Any, vars: Any = None) -> None:
        start = time.perf_counter()
        super().execute(query, vars)
        self.statements, self.seconds = self.statements + 1, self.seconds + time.perf_counter() - start


def fill(conn: Connection, table: str, rows: int) -> None:
    """(Re)create ``table`` shaped like a customers table, with ids 1..rows."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL(TABLE).format(t=sql.Identifier(table)), (rows,))


def remaining(conn: Connection, table: str) -> int:
    """Rows left in ``table``."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        return int(cur.fetchone()[0])  # type: ignore[index]


def ceiling_seconds(conn: Connection, table: str, rows: int, repeats: int = 3) -> float:
    """Median over ``repeats`` fresh tables of :func:`one_ceiling` (the machine is noisy)."""
    return statistics.median(one_ceiling(conn, table, rows) for _ in range(repeats))


def one_ceiling(conn: Connection, table: str, rows: int) -> float:
    """Seconds for one ``DELETE ... WHERE id = ANY(array)`` of every row, plus its commit."""
    fill(conn, table, rows)
    ids = list(range(1, rows + 1))
    with conn.cursor() as cur, stopwatch() as elapsed:
        cur.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)), (ids,))
        conn.commit()
    if cur.rowcount != rows:
        raise RuntimeError(f"ceiling deleted {cur.rowcount} rows, expected {rows}")
    return elapsed()


def store_map(table: str) -> TableMap:
    """A store whose client records are the rows of ``table``, keyed by id."""
    return TableMap(STORE, {"client": (TableAction("client", table, "id", "delete"),)})


def commands(rows: int) -> list[dict[str, Any]]:
    """One DeleteRecord per row, with command ids shaped like the engine's."""
    run, now = uuid.uuid4().hex, datetime.now(UTC)
    return [
        {
            "command_id": stable_id("bench", run, i),
            "subject_id": f"cust-{i}",
            "store": STORE,
            "category": "client",
            "record_key": str(i),
            "rule_id": "account",
            "policy_version": "bench",
            "deadline": now,
            "issued_at": now,
        }
        for i in range(1, rows + 1)
    ]


def figure(name: str, rows: int, seconds: float, ceiling: float, notes: str, **extra: Any) -> Figure:
    """A rows/s figure against its ceiling, judged by the issue's goal."""
    value, base = rows / seconds, rows / ceiling
    return Figure(
        NAME,
        name,
        value,
        "rows/s",
        CEILING,
        base,
        goal=GOAL,
        meets_goal=value >= 0.8 * base and value >= 100_000,
        notes=notes,
        extra={"rows": rows, "seconds": seconds, "ceiling_seconds": ceiling, **extra},
    )


def executor_figure(ctx: Context, conn: Connection, rows: int) -> Figure:
    """(a) ``PostgresExecutor.execute_batch`` (what the sink calls), one transaction per 500 commands."""
    ceiling = ceiling_seconds(conn, "ceiling_a", rows)
    ctx.report(f"deletion: ceiling {rows / ceiling:,.0f} rows/s")
    fill(conn, "sink_a", rows)
    executor, todo = PostgresExecutor(store_map("sink_a")), commands(rows)
    cur = conn.cursor(cursor_factory=TimedCursor)
    with stopwatch() as elapsed:
        for start in range(0, rows, BATCH):
            with conn:
                executor.execute_batch(cur, todo[start : start + BATCH])
    if remaining(conn, "sink_a"):
        raise RuntimeError("the executor left rows behind")
    seconds = elapsed()
    ctx.report(f"deletion: executor {rows / seconds:,.0f} rows/s")
    notes = (
        f"{cur.statements / rows:.3f} statements per row; {100 * cur.seconds / seconds:.0f}% of the "
        "time is spent in cursor.execute (the DELETE, the look-up of repeats and the tracking rows "
        "the ceiling does not write), the rest is Avro encoding of receipts and Python."
    )
    return figure(
        "executor rows/s (500 commands per transaction)",
        rows,
        seconds,
        ceiling,
        notes,
        statements=cur.statements,
        seconds_in_statements=cur.seconds,
    )


class TimedExecutor(PostgresExecutor):
    """The project's executor, timing its calls."""

    seconds = 0.0

    def execute_batch(self, cur: Cursor, commands: list[dict[str, Any]]) -> list[Executed]:
        start = time.perf_counter()
        done = super().execute_batch(cur, commands)
        self.seconds += time.perf_counter() - start
        return done


class TimedSink(PostgresSink):
    """The real sink, noting when its first batch arrives and stopping after ``expected``."""

    def __init__(self, settings: Settings, stores: TableMap, dsn: str, expected: int) -> None:
        super().__init__(settings, stores, dsn, on_batch=self._done)
        self.executor.executor = self.timed = TimedExecutor(stores)  # type: ignore[attr-defined]
        self.expected, self.receipts, self.batches, self.first, self.last = expected, 0, 0, 0.0, 0.0

    def _process(self, out: Any, consumer: Any, batch: Any) -> bool:
        self.first = self.first or time.perf_counter()
        return super()._process(out, consumer, batch)

    def _done(self, receipts: int) -> None:
        self.receipts, self.batches = self.receipts + receipts, self.batches + 1
        if self.receipts >= self.expected:  # receipts flushed: acknowledged by the broker
            self.last = time.perf_counter()
            self.stop.set()


def publish_commands(settings: Settings, rows: int) -> None:
    """Put one DeleteRecord per row on the store's command topic, signed as the worker signs them
    (its key under the state directory, made if missing: the sink verifies with its .pub)."""
    codec, out = codec_for(DELETION_COMMAND), producer(settings)
    signer = CertificateSigner.from_file(settings.signing_key, "bench")
    for command in commands(rows):
        out.send(
            Topics(settings.topic_prefix).commands(STORE),
            key=command["subject_id"].encode(),
            value=codec.encode(signer.sign_command(command)),
        )
    out.flush()
    out.close()


def run_sink(settings: Settings, dsn: str, rows: int) -> TimedSink:
    """Run the sink in a thread until it has sent ``rows`` receipts (then it stops itself)."""
    sink = TimedSink(settings, store_map("sink_b"), dsn, rows)
    with ThreadPoolExecutor(1, thread_name_prefix="bench-sink") as pool:
        try:
            pool.submit(sink.run).result(SINK_TIMEOUT)  # raises the sink's error or TimeoutError
        finally:
            sink.stop.set()
    return sink


def end_to_end_figure(ctx: Context, conn: Connection, dsn: str, rows: int) -> Figure:
    """(b) ``PostgresSink`` consuming ``rows`` commands from Kafka until every receipt is sent."""
    settings = ctx.unique_settings(NAME)
    topics = Topics(settings.topic_prefix)
    create_topics(settings, [topics.commands(STORE), topics.receipts, topics.dlq])
    try:
        publish_commands(settings, rows)
        ceiling = ceiling_seconds(conn, "ceiling_b", rows)
        ctx.report(f"deletion: ceiling {rows / ceiling:,.0f} rows/s; {rows:,} commands published")
        fill(conn, "sink_b", rows)
        sink = run_sink(settings, dsn, rows)
    finally:
        drop_topics(settings, [f"{settings.topic_prefix}."])
    if remaining(conn, "sink_b"):
        raise RuntimeError("the sink left rows behind")
    seconds = sink.last - sink.first
    ctx.report(f"deletion: sink through Kafka {rows / seconds:,.0f} rows/s")
    share = 100 * sink.timed.seconds / seconds
    notes = (
        "The real PostgresSink in a thread, first non-empty poll to the broker's ack of the "
        "last receipt (group join excluded). Per poll: one transaction, receipts sent and "
        f"flushed (acks=all), offsets committed. {share:.0f}% of it is in the executor; the rest "
        "is polling, Avro decoding, kafka-python's send (~50 µs per message), flush, commit."
    )
    return figure(
        "sink through Kafka rows/s (first poll to last receipt)",
        rows,
        seconds,
        ceiling,
        notes,
        batches=sink.batches,
        rows_per_batch=rows / max(sink.batches, 1),
        seconds_in_executor=sink.timed.seconds,
    )


def run(ctx: Context) -> list[Figure]:
    """Measure the executor alone and the whole sink, each against a fresh ceiling."""
    rows = ctx.size.rows
    with scratch_database(ctx.pg_dsn, NAME) as dsn, contextlib.closing(psycopg2.connect(dsn)) as conn:
        ensure_tracking(conn)
        return [executor_figure(ctx, conn, rows), end_to_end_figure(ctx, conn, dsn, rows)]
