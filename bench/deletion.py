"""Deletion throughput: rows/s deleted by the PostgreSQL sink against the ceilings of
``bench.deletion_ceilings``, all measured in the same run on the same schema.

(a) the executor alone (``PostgresExecutor.execute_batch``, receipts signed as the sink signs
them), one transaction per batch of the sink's size (``sinks/base/loop.py``'s ``BATCH``);
(b) the real ``PostgresSink`` through Kafka, from its first batch to its last receipt.
Each against: one DELETE of every row (the first baseline), the raw DELETE per batch with a
commit per batch, the hand-written DELETE + tracking rows statement per batch, and the crypto
floor (verify a command, sign its receipt). The ceilings run before and after the sink, three
times each, and the median counts. Beside every throughput: WAL bytes per deletion, and for
(b) the Kafka bytes of the receipts per deletion. In a scratch database.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from bench import deletion_ceilings as ceilings
from bench.common import Context, Figure, stopwatch
from bench.deletion_ceilings import Measured, fill, wal_lsn, wal_since
from ebbtide.runtime import authenticity, kafka, keys
from ebbtide.runtime.kafka import create_topics, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, codec_for
from ebbtide.sinks.base.loop import BATCH
from ebbtide.sinks.base.receipts import Executed
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.sink import PostgresSink
from ebbtide.sinks.postgres.table_map import TableAction, TableMap
from ebbtide.streams.engine.decisions import stable_id
from ebbtide.streams.worker.certify import CertificateSigner

NAME = "deletion"
STORE = "bench_store"
SINK_TIMEOUT = 1800.0
CRYPTO_SAMPLE = 2_000  # commands the crypto floor is timed on (per-command work: a sample says it)
REPEATS = 3  # runs of each ceiling before and after the sink; the median counts
CEILINGS = {
    "hand": (
        f"hand-written DELETE + tracking rows in one statement (CTE), {BATCH} rows per statement "
        "and commit, same tracking table",
        ">= 0.8 of the hand-written DELETE + tracking statement",
        0.8,
    ),
    "batch": (
        f"raw DELETE FROM t WHERE id = ANY(array), {BATCH} rows per statement and commit",
        ">= 0.5 of the raw DELETE at the sink's batch size",
        0.5,
    ),
    "one": ("one DELETE FROM t WHERE id = ANY(array) of every row + COMMIT", None, None),
    "crypto": (
        "crypto floor: Ed25519 verify of each command + signed, encoded receipt, no database",
        None,
        None,
    ),
}


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


def remaining(conn: Connection, table: str) -> int:
    """Rows left in ``table``."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        return int(cur.fetchone()[0])  # type: ignore[index]


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


@dataclass
class Ceilings:
    """Every ceiling's runs (before and after the sink), and the crypto floor's."""

    rows: int
    runs: dict[str, list[Measured]] = field(default_factory=dict)

    def measure(self, ctx: Context, conn: Connection) -> None:
        size = ceilings.receipt_size(commands(1)[0])
        for _ in range(REPEATS):
            measured = {
                "one": ceilings.raw(conn, "ceiling", self.rows, self.rows),
                "batch": ceilings.raw(conn, "ceiling", self.rows, BATCH),
                "hand": ceilings.hand_written(conn, "ceiling", self.rows, BATCH, size),
            }
            for name, one in measured.items():
                self.runs.setdefault(name, []).append(one)
            sample = min(self.rows, CRYPTO_SAMPLE)
            seconds = ceilings.crypto_floor(commands(sample))
            self.runs.setdefault("crypto", []).append(Measured(sample, seconds, 0.0))
        ctx.report(
            "deletion: ceilings (rows/s) "
            + ", ".join(f"{name} {self[name].per_second:,.0f}" for name in self.runs)
        )

    def __getitem__(self, name: str) -> Measured:
        return ceilings.median(self.runs[name])


def figures(label: str, measured: Measured, base: Ceilings, notes: str, **extra: Any) -> list[Figure]:
    """``measured`` against every ceiling; WAL bytes per deletion of each beside it."""
    out = []
    for name, (what, goal, share) in CEILINGS.items():
        ceiling = base[name]
        value = measured.per_second
        out.append(
            Figure(
                NAME,
                f"{label} rows/s vs {name}",
                value,
                "rows/s",
                what,
                ceiling.per_second,
                goal=goal,
                meets_goal=None if share is None else value >= share * ceiling.per_second,
                notes=notes,
                extra={
                    "rows": measured.rows,
                    "seconds": measured.seconds,
                    "wal_bytes_per_deletion": measured.wal_per_row,
                    "ceiling_seconds": ceiling.seconds,
                    "ceiling_wal_bytes_per_deletion": ceiling.wal_per_row,
                    "ceiling_runs": len(base.runs[name]),
                    **extra,
                },
            )
        )
    return out


class TimedCursor(Cursor):
    """A cursor that counts its statements and the time spent in them (round trip + server)."""

    statements = 0
    seconds = 0.0

    def execute(self, query: Any, vars: Any = None) -> None:
        start = time.perf_counter()
        super().execute(query, vars)
        self.statements, self.seconds = self.statements + 1, self.seconds + time.perf_counter() - start


def executor_run(conn: Connection, rows: int) -> tuple[Measured, TimedCursor]:
    """(a) ``PostgresExecutor.execute_batch`` (what the sink calls), one transaction per batch,
    its receipts signed with a sink key as the sink's are."""
    fill(conn, "sink_a", rows)
    executor, todo = PostgresExecutor(store_map("sink_a")), commands(rows)
    executor.receipt_signer = authenticity.MessageSigner(keys.generate_key()[0])
    cur = conn.cursor(cursor_factory=TimedCursor)
    lsn = wal_lsn(conn)
    with stopwatch() as elapsed:
        for start in range(0, rows, BATCH):
            with conn:
                executor.execute_batch(cur, todo[start : start + BATCH])
    measured = Measured(rows, elapsed(), wal_since(conn, lsn))
    if remaining(conn, "sink_a"):
        raise RuntimeError("the executor left rows behind")
    return measured, cur


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
        self.timed = TimedExecutor(stores)
        self.timed.receipt_signer = self.receipt_signer  # as the sink set it on the one replaced
        self.executor.executor = self.timed  # type: ignore[attr-defined]
        self.expected, self.receipts, self.batches, self.first, self.last = expected, 0, 0, 0.0, 0.0
        self.receipt_bytes, self.verifying = 0, 0.0

    def _process(self, out: Any, consumer: Any, batch: Any) -> bool:
        self.first = self.first or time.perf_counter()
        return super()._process(out, consumer, batch)

    def _verified(self, batch: Any) -> Any:
        start = time.perf_counter()
        try:
            return super()._verified(batch)
        finally:
            self.verifying += time.perf_counter() - start

    def _publish(self, out: Any, receipts: list[tuple[bytes, bytes]], dead: Any) -> None:
        self.receipt_bytes += sum(len(key) + len(value) for key, value in receipts)
        super()._publish(out, receipts, dead)

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


def sink_run(ctx: Context, conn: Connection, dsn: str, rows: int) -> tuple[Measured, TimedSink]:
    """(b) ``PostgresSink`` consuming ``rows`` commands from Kafka until every receipt is sent."""
    settings = ctx.unique_settings(NAME)
    topics = Topics(settings.topic_prefix)
    create_topics(settings, [topics.commands(STORE), topics.receipts, topics.dlq])
    try:
        publish_commands(settings, rows)
        fill(conn, "sink_b", rows)
        lsn = wal_lsn(conn)
        sink = run_sink(settings, dsn, rows)
        wal = wal_since(conn, lsn)
    finally:
        drop_topics(settings, [f"{settings.topic_prefix}."])
    if remaining(conn, "sink_b"):
        raise RuntimeError("the sink left rows behind")
    return Measured(rows, sink.last - sink.first, wal), sink


def run(ctx: Context) -> list[Figure]:
    """The ceilings, the executor alone, the whole sink, the ceilings again; every figure against
    every ceiling's median."""
    rows = ctx.size.rows
    with scratch_database(ctx.pg_dsn, NAME) as dsn, contextlib.closing(psycopg2.connect(dsn)) as conn:
        ensure_tracking(conn)
        base = Ceilings(rows)
        base.measure(ctx, conn)
        executor, cur = executor_run(conn, rows)
        ctx.report(f"deletion: executor {executor.per_second:,.0f} rows/s")
        sink, timed = sink_run(ctx, conn, dsn, rows)
        ctx.report(f"deletion: sink through Kafka {sink.per_second:,.0f} rows/s")
        base.measure(ctx, conn)
    executor_notes = (
        f"{cur.statements / rows:.3f} statements per row; {100 * cur.seconds / executor.seconds:.0f}% "
        "of the time in cursor.execute (round trip + server), the rest is Python: each receipt "
        "built, signed (Ed25519 over canonical JSON) and Avro-encoded. It signs but does not verify, so it "
        "may beat the crypto floor (verify + sign); the sink through Kafka does both."
    )
    share, verifying = 100 * timed.timed.seconds / sink.seconds, 100 * timed.verifying / sink.seconds
    sink_notes = (
        "The real PostgresSink in a thread, first non-empty poll to the broker's ack of the last "
        "receipt (group join excluded). Per poll: verify each command's signature, one "
        f"transaction, receipts sent and flushed (acks=all), offsets committed. {verifying:.0f}% of "
        f"it is decoding and verifying commands, {share:.0f}% in the executor (signing receipts "
        "included), the rest Kafka I/O and the loop."
    )
    return [
        *figures("executor", executor, base, executor_notes, statements=cur.statements),
        *figures(
            "sink through Kafka",
            sink,
            base,
            sink_notes,
            batches=timed.batches,
            rows_per_batch=rows / max(timed.batches, 1),
            seconds_in_executor=timed.timed.seconds,
            seconds_verifying=timed.verifying,
            kafka_receipt_bytes_per_deletion=timed.receipt_bytes / rows,
        ),
    ]
