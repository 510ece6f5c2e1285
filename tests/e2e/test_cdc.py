"""Change data capture on the real stack: Kafka Connect with Debezium, the translator, the worker
and the sinks as processes. Rows inserted in the demo database are stamped without any
application code announcing them; a row the pipeline deleted and that is restored is flagged and
deleted again; a row deleted outside Ebbtide is reported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from ebbtide.cdc.connector import connector_name, slot_name, unregister
from ebbtide.cdc.ledger import Ledger
from ebbtide.cdc.translator import cdc_topic
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings
from ebbtide.tools import processes
from ebbtide.tools.topics import cluster
from ebbtide.tools.topics import spec as topic_spec
from tests.e2e.test_pipeline import Pipeline, ev, publish, rows, tick
from tests.support import TopicReader, demo_database, wait_until

CDC_READY = 90.0  # Debezium's snapshot, the translator's first poll and the worker's stamping


@pytest.fixture(scope="session")
def connect_url(stack: tuple[str, str]) -> str:
    """The stack's Kafka Connect (deploy/local/connect.sh), shared by every test of the session."""
    url = os.environ.get("EBBTIDE_CONNECT_URL")
    cdc_dsn = os.environ.get("EBBTIDE_CDC_DSN")
    if not url or not cdc_dsn:
        raise RuntimeError(
            "the CDC tests need Kafka Connect: `make test`, or `make stack-up` and the env file"
        )
    return url


@dataclass
class Capture:
    settings: Settings
    name: str
    translator: processes.Child
    metrics_port: int

    def changes(self, kind: str, category: str = "client") -> float:
        return processes.total(
            processes.scrape(self.metrics_port), "ebbtide_cdc_changes_total", kind=kind, category=category
        )


@pytest.fixture
def capture(
    settings: Settings, database: str, connect_url: str, pipeline: Pipeline, tmp_path: Path
) -> Iterator[Capture]:
    """Debezium's connector on this test's database (registered by `ebbtide cdc connect`) and the
    translator (`ebbtide cdc run`); the connector and its replication slot are removed afterwards."""
    cdc_dsn = urlunparse(urlparse(os.environ["EBBTIDE_CDC_DSN"])._replace(path=urlparse(database).path))
    port = processes.free_port()
    cdc_settings = replace(pipeline.settings, connect_url=connect_url, cdc_dsn=cdc_dsn, cdc_metrics_port=port)
    name = connector_name(cdc_settings, urlparse(database).path.strip("/"))
    try:
        connect(cdc_settings)
        translator = processes.start("cdc", ["cdc", "run"], cdc_settings, tmp_path / "logs")
        yield Capture(cdc_settings, name, translator, port)
        translator.stop()
    finally:
        unregister(connect_url, name)
        drop_slot(cdc_dsn, slot_name(name))


def connect(settings: Settings) -> None:
    """`ebbtide cdc connect` as a process; it exits 0 once the connector runs."""
    done = subprocess.run(
        [sys.executable, "-m", "ebbtide", "cdc", "connect"],
        env=processes.settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("connector "), done.stdout


def drop_slot(cdc_dsn: str, slot: str) -> None:
    """Drop the connector's slot once its task let go of it (a database with a slot cannot be dropped)."""
    conn = psycopg2.connect(cdc_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:

            def released() -> bool:
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                row = cur.fetchone()
                return row is None or not row[0]

            wait_until(released, 60, f"replication slot {slot} released")
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            )
    finally:
        conn.close()


@pytest.fixture
def demo_rows(database: str) -> str:
    """The demo schema; customer 1 (a ticket) and 2 are there before the connector: its snapshot."""
    return demo_database(
        database,
        """
        INSERT INTO customers VALUES (1, 'A', 'a@example.invalid', '1', 'x', '2019-01-10'),
                                     (2, 'B', 'b@example.invalid', '2', 'y', '2019-01-10');
        INSERT INTO support_tickets VALUES (20, 1, 's', 'b', '2019-06-01');
        """,
    )


FACTS = [  # what the application announces of its customers: no record, only their lives
    ev("o1", "ServiceOrdered", "cust-00001", "2019-01-10T10:00:00Z", service_id="svc-1", kind="HOSTING"),
    ev("x1", "ServiceCancelled", "cust-00001", "2020-02-01T10:00:00Z", service_id="svc-1"),
    ev("c1", "AccountClosed", "cust-00001", "2020-02-01T10:00:00Z"),
    ev("o3", "ServiceOrdered", "cust-00003", "2019-01-10T10:00:00Z", service_id="svc-3", kind="DOMAIN"),
]


def execute(dsn: str, statement: str) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def decided(pipeline: Pipeline, kind: str, subject: str, category: str) -> int:
    """How many ``kind`` decisions of ``subject``'s records of ``category`` (the record key in a
    decision is sealed with the subject's key, which the translator's process holds, not this one)."""
    pipeline.decisions.poll()
    return sum(
        1
        for r in pipeline.decisions.seen
        if r.value
        and r.value["kind"] == kind
        and r.value["subject_id"] == subject
        and r.value["record"].startswith(f"customer_db/{category}/")
    )


def test_captured_rows_are_stamped_deleted_and_deleted_again_when_restored(
    demo_rows: str, pipeline: Pipeline, capture: Capture
) -> None:
    """Long because it follows one database through the whole life: snapshot and insert
    announced, deletion by the pipeline, a restored row deleted again, a deletion outside."""
    execute(demo_rows, "INSERT INTO customers VALUES (3, 'C', 'c@example.invalid', '3', 'z', '2019-01-10')")
    out = producer(capture.settings)
    out.send(cdc_topic(capture.settings), key=b"k", value=b'{"op": "c"}')  # not Debezium's
    out.flush()
    out.close()
    for subject, category in (
        ("cust-00001", "client"),
        ("cust-00002", "client"),
        ("cust-00003", "client"),
        ("cust-00001", "correspondence"),
    ):
        wait_until(
            lambda s=subject, c=category: decided(pipeline, "STAMPED", s, c),  # type: ignore[misc]
            CDC_READY,
            f"{category} record of {subject} stamped",
        )
    assert capture.changes("snapshot") == 2 and capture.changes("insert") == 1
    connect(capture.settings)  # registered again: the same connector, no second snapshot

    publish(pipeline.settings, FACTS)
    tick(pipeline.settings, datetime(2023, 6, 1, tzinfo=UTC))
    for category in ("client", "correspondence"):
        wait_until(
            lambda c=category: decided(pipeline, "DELETION_CONFIRMED", "cust-00001", c),  # type: ignore[misc]
            CDC_READY,
            f"{category} record of cust-00001 deleted",
        )
    assert rows(demo_rows, "SELECT customer_id FROM customers ORDER BY 1") == [(2,), (3,)]
    wait_until(lambda: capture.changes("deleted_by_ebbtide") == 1, 30, "the deletion seen as Ebbtide's")
    assert capture.changes("deleted_outside") == 0

    # A backup brings customer 1 back: flagged, announced again, deleted again at the next tick.
    execute(demo_rows, "INSERT INTO customers VALUES (1, 'A', 'a@example.invalid', '1', 'x', '2019-01-10')")
    wait_until(lambda: capture.changes("restored") == 1, 30, "the restored row flagged")
    wait_until(
        lambda: decided(pipeline, "STAMPED", "cust-00001", "client") == 2,
        CDC_READY,
        "the restored row stamped",
    )
    tick(pipeline.settings, datetime(2023, 6, 2, tzinfo=UTC))
    wait_until(
        lambda: decided(pipeline, "DELETION_CONFIRMED", "cust-00001", "client") == 2,
        CDC_READY,
        "deleted again",
    )
    assert rows(demo_rows, "SELECT customer_id FROM customers ORDER BY 1") == [(2,), (3,)]
    wait_until(
        lambda: capture.changes("deleted_by_ebbtide") == 2, 30, "the second deletion seen as Ebbtide's"
    )

    # Someone deletes customer 3 by hand: reported, its key's hash kept in the ledger, nothing logged.
    execute(demo_rows, "DELETE FROM customers WHERE customer_id = 3")
    wait_until(lambda: capture.changes("deleted_outside") == 1, 30, "the deletion outside Ebbtide reported")
    [(ledger_key,)] = rows(demo_rows, "SELECT key FROM ebbtide_cdc.ledger_key")
    hashed = Ledger(bytes(ledger_key)).hashed
    ledgered = rows(
        demo_rows,
        "SELECT key_hash, by_ebbtide, written_at FROM ebbtide_cdc.deleted_keys WHERE category = 'client'",
    )
    assert {bytes(h): rest for h, *rest in ledgered} == {
        hashed("1"): [True, datetime(2019, 1, 10, tzinfo=UTC)],  # as announced (registered_at)
        hashed("3"): [False, datetime(2019, 1, 10, tzinfo=UTC)],
    }
    dlq = TopicReader(capture.settings, pipeline.topics.dlq)
    [dead] = dlq.wait_for(lambda seen: len(seen) >= 1, 30, "the dead letter")
    dlq.close()
    assert dead.headers["reason"] == b"cdc: field source: missing (not a Debezium change event)"
    assert dead.raw == b"" and not dead.key  # a change event holds a row's values: coordinates only
    assert dead.headers["source_topic"] == cdc_topic(capture.settings).encode()
    raw = TopicReader(capture.settings, cdc_topic(capture.settings))
    captured = raw.wait_for(lambda seen: len(seen) >= 8, 30, "the captured changes")
    raw.close()
    assert not any(b"example.invalid" in r.raw for r in captured)  # only the mapped columns
    log = capture.translator.log.read_text()
    assert "deleted outside Ebbtide" in log and "c@example.invalid" not in log
    assert capture.changes("snapshot") == 2  # (snapshot: customers 1, 2; the ticket is correspondence)
    assert capture.translator.alive(), capture.translator.tail()
    # `cdc connect` gave the CDC topic its declared retention (the rows' values are in it in clear)
    assert cluster.check(capture.settings, [topic_spec.cdc_topic(capture.settings)]).differences == []
