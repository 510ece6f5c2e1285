"""Exactly-once deletions when something dies between the database and the broker.

1. The sink is killed (SIGKILL) after its batch's transaction committed and before any receipt
   was sent: the sink started again takes the batch again, deletes nothing more and sends the
   receipts its tracking rows kept, byte for byte.
2. PostgreSQL crashes right after the receipts were published, on a server whose database turned
   ``synchronous_commit`` off and whose WAL writer waits 10 s: every deletion a receipt names is
   there after crash recovery, with the tracking row that holds that receipt.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg2

from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks.postgres.sink import PostgresSink
from ebbtide.sinks.postgres.table_map import TableAction, TableMap
from ebbtide.tools import processes
from tests.integration.sinks.postgres.scratch_cluster import scratch_cluster
from tests.support import TopicReader, deletion_command, signed_command, wait_until, worker_signer

STORE = "customer_db"
KEYS = [str(n) for n in range(1, 41)]
ROOT = Path(__file__).resolve().parents[4]
PEOPLE = (
    "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL);"
    "INSERT INTO people SELECT g, 'p' || g FROM generate_series(1, 100) g"
)
MAP_TOML = (
    f'store = "{STORE}"\n[[categories.client]]\ntable = "people"\nkey_column = "id"\naction = "delete"\n'
)


def _sql(dsn: str, statement: str, autocommit: bool = False) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def _send(settings: Settings) -> None:
    """One signed client command per key of :data:`KEYS`, on the store's command topic."""
    codec, out = codec_for(DELETION_COMMAND), producer(settings)
    for key in KEYS:
        command = deletion_command(STORE, "client", key, command_id=f"cmd-{key}", subject=f"cust-{key}")
        out.send(
            Topics(settings.topic_prefix).commands(STORE),
            key=command["subject_id"].encode(),
            value=codec.encode(signed_command(settings, command)),
        )
    out.flush()
    out.close()


def _stored(dsn: str) -> dict[str, bytes]:
    rows = _sql(dsn, "SELECT command_id, receipt FROM ebbtide_sink.applied_commands")
    return {str(command_id): bytes(receipt) for command_id, receipt in rows}


def _left(dsn: str) -> set[str]:
    return {str(row[0]) for row in _sql(dsn, "SELECT id FROM people")}


def test_a_sink_killed_between_commit_and_receipts_sends_the_stored_receipts_byte_for_byte(
    settings: Settings, database: str, tmp_path: Path
) -> None:
    _sql(database, PEOPLE)
    table_map = tmp_path / "people.toml"
    table_map.write_text(MAP_TOML, encoding="utf-8")
    worker_signer(settings)
    env = processes.settings_env(settings)
    receipts = TopicReader(settings, Topics(settings.topic_prefix).receipts, codec_for(DELETION_RECEIPT))
    try:
        _send(settings)
        dying = subprocess.run(  # the sink, SIGKILLed by itself where its receipts would go out
            [sys.executable, "-m", "tests.integration.sinks.postgres.die_before_receipts", str(table_map)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )
        assert dying.returncode == -9, dying.stderr.decode(errors="replace")[-2000:]
        first = _stored(database)  # its first batch: maybe not every command yet
        assert first, "the killed sink committed nothing"
        assert _left(database).isdisjoint(c.removeprefix("cmd-") for c in first)  # committed
        assert receipts.poll() == []  # and it died before sending any receipt
        sink = processes.start(
            "sink", ["sink", "postgres", "--map", str(table_map)], settings, tmp_path / "logs"
        )
        try:
            got = receipts.wait_for(lambda seen: len(seen) >= len(KEYS), 90, f"{len(KEYS)} receipts")
        finally:
            sink.stop()
        by_command = {r.value["command_id"]: r.raw for r in got if r.value is not None}
        assert sorted(by_command) == sorted(f"cmd-{key}" for key in KEYS)
        assert {c: by_command[c] for c in first} == first  # the kept receipts, byte for byte
        assert _stored(database) == by_command  # each command applied once, its receipt kept
        assert _left(database).isdisjoint(KEYS)
    finally:
        receipts.close()


def test_no_deletion_is_lost_when_postgresql_crashes_after_its_receipts(settings: Settings) -> None:
    with scratch_cluster() as cluster:
        _sql(cluster.dsn, PEOPLE)
        _sql(cluster.dsn, "ALTER DATABASE postgres SET synchronous_commit = off", autocommit=True)
        _sql(cluster.dsn, "ALTER SYSTEM SET wal_writer_delay = '10s'", autocommit=True)
        _sql(cluster.dsn, "SELECT pg_reload_conf()")
        table_map = TableMap(STORE, {"client": (TableAction("client", "people", "id", "delete"),)})
        worker_signer(settings)
        stop = threading.Event()
        sink = PostgresSink(settings, table_map, cluster.dsn, stop=stop)
        thread = threading.Thread(target=sink.run, daemon=True)
        receipts = TopicReader(settings, Topics(settings.topic_prefix).receipts, codec_for(DELETION_RECEIPT))
        try:
            thread.start()
            _send(settings)
            got = receipts.wait_for(lambda seen: len(seen) >= len(KEYS), 90, f"{len(KEYS)} receipts")
            cluster.crash()  # the moment the receipts are on the broker
            stop.set()
            thread.join(60)
            assert not thread.is_alive()
        finally:
            stop.set()
            receipts.close()
        cluster.start()  # crash recovery replays the WAL
        wait_until(lambda: _sql(cluster.dsn, "SELECT 1"), 30, "the server back after the crash")
        published = {r.value["command_id"]: r.raw for r in got if r.value is not None}
        assert {r.value["outcome"] for r in got if r.value is not None} == {"DELETED"}
        assert _stored(cluster.dsn) == published  # every receipt's tracking row, the same bytes
        assert _left(cluster.dsn).isdisjoint(KEYS)  # and every deletion a receipt names
