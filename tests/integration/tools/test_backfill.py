"""``ebbtide backfill`` against the real database and broker: every row announced once, with the
same event ids on every run."""

from __future__ import annotations

from collections import Counter
from io import StringIO
from typing import Any

import psycopg2
import pytest
from rich.console import Console

from ebbtide.cli import main
from ebbtide.client import publisher as sync_publisher
from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import Scenario, build
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.sinks.postgres.table_map import (
    TableMap,
    TableMapError,
    load_table_map,
    map_path,
    parse_table_map,
)
from ebbtide.tools.backfill import Backfill, run_backfill
from ebbtide.tools.client import to_record
from tests.support import Received, TopicReader

MAPS = ("customer_db", "billing_db")
BROKER_WAIT = 2.0  # seconds a publisher waits for a broker where none listens


@pytest.fixture
def scenario(database: str) -> Scenario:
    sc = build(customers=12, seed=5)
    demo_db.load(database, sc)
    return sc


def maps() -> list[TableMap]:
    return [load_table_map(map_path(m)) for m in MAPS]


def announced(records: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """What RecordWritten events say: subject, time, store, category, key, ref."""
    out: Counter[tuple[Any, ...]] = Counter()
    for record in records:
        name, payload = record["payload"]
        if name.endswith("RecordWritten"):
            fields = (payload["store"], payload["category"], payload["record_key"], payload.get("ref"))
            out[(record["subject_id"], record["event_time"], *fields)] += 1
    return out


def read_events(settings: Settings, expected: int) -> list[Received]:
    reader = TopicReader(settings, Topics(settings.topic_prefix).events, codec_for(LIFECYCLE_EVENT))
    try:
        return reader.wait_for(lambda seen: len(seen) >= expected, 60, f"{expected} events")
    finally:
        reader.close()


def test_every_row_is_announced_as_the_writing_service_would_and_again_with_the_same_ids(
    settings: Settings, database: str, scenario: Scenario
) -> None:
    out = StringIO()
    reports = run_backfill(settings, database, maps(), console=Console(file=out, width=200))
    counts = demo_db.counts(database)
    assert [(r.action.qualified, r.total, r.events, r.skipped) for r in reports] == [
        ("public.customers", counts["customers"], counts["customers"], 0),
        ("public.domain_contacts", counts["domain_contacts"], counts["domain_contacts"], 0),
        ("public.ssl_contacts", counts["ssl_contacts"], counts["ssl_contacts"], 0),
        ("public.support_tickets", counts["support_tickets"], counts["support_tickets"], 0),
        (
            "public.newsletter_subscriptions",
            counts["newsletter_subscriptions"],
            counts["newsletter_subscriptions"],
            0,
        ),
        ("billing.invoices", counts["billing.invoices"], counts["billing.invoices"], 0),
        ("billing.payments", counts["billing.payments"], counts["billing.payments"], 0),
    ]
    total = sum(r.events for r in reports)
    # Not a terminal: one plain line per table, nothing personal in it.
    customers = counts["customers"]
    assert out.getvalue().splitlines()[0] == (
        f"customer_db client public.customers: {customers} rows, published {customers} events"
    )
    first = read_events(settings, total)
    assert len(first) == total
    records = [r.value for r in first if r.value is not None]
    # The same announcements (subject, time, store, category, key, ref) the scenario's services
    # made for the two databases (the hosting platform and the log shipper announce their own).
    databases = {"customer_db", "billing_db"}
    expected = announced([to_record(e) for e in scenario.events])
    assert announced(records) == Counter({k: n for k, n in expected.items() if k[2] in databases})
    ids = [r["event_id"] for r in records]
    assert len(set(ids)) == total
    assert "backfill:customer_db:client:1" in ids and "backfill:billing_db:payment:1" in ids

    run_backfill(settings, database, maps(), console=Console(file=StringIO()))
    both = read_events(settings, 2 * total)
    assert Counter(r.value["event_id"] for r in both if r.value) == Counter({i: 2 for i in ids})


class Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.flushes = 0

    def publish_record(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def flush(self) -> None:
        self.flushes += 1


def test_rows_are_read_in_chunks_and_rows_without_a_subject_are_skipped(
    database: str, scenario: Scenario
) -> None:
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET customer_id = NULL WHERE order_id = 1")
        cur.execute("SELECT count(*) FROM orders")
        orders = int(cur.fetchone()[0])  # type: ignore[index]
    conn.close()
    store_map = parse_table_map(
        {
            "store": "customer_db",
            "categories": {
                "client": [
                    {
                        "table": "orders",
                        "key_column": "order_id",
                        "action": "anonymise",
                        "columns": ["contact_email"],
                        "subject_column": "customer_id",
                        "subject_format": "cust-{:05d}",
                    }
                ]
            },
        },
        "orders.toml",
    )
    conn = psycopg2.connect(database)
    backfill = Backfill(conn, [store_map], chunk=5)
    (report,) = backfill.plan()
    publisher = Collect()
    chunks: list[int] = []
    backfill.run(report, publisher, chunks.append)
    conn.close()
    assert (report.total, report.events, report.skipped) == (orders, orders - 1, 1)
    assert sum(chunks) == orders and max(chunks) == 5 and publisher.flushes == len(chunks)
    assert "backfill:customer_db:client:1" not in {r["event_id"] for r in publisher.records}
    # No time column: the event time is the backfill's start.
    assert {r["event_time"] for r in publisher.records} == {backfill.started}


def test_a_missing_table_or_column_is_named(database: str, scenario: Scenario) -> None:
    bad = parse_table_map(
        {
            "store": "customer_db",
            "categories": {
                "client": [
                    {
                        "table": "customers",
                        "key_column": "customer_id",
                        "action": "delete",
                        "subject_column": "who",
                    }
                ]
            },
        },
        "bad.toml",
    )
    conn = psycopg2.connect(database)
    with pytest.raises(
        TableMapError, match=r"^bad.toml: categories.client\[0\].subject_column: no column who"
    ):
        Backfill(conn, [bad]).plan()
    conn.close()


def test_the_cli_dry_run_reads_everything_and_publishes_nothing(
    settings: Settings,
    database: str,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EBBTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # a publisher would fail to connect
    code = main(["backfill", "--map", "customer_db", "--map", "billing_db", "--dsn", database, "--dry-run"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 8  # seven tables, one total
    rows = (
        scenario.customers,
        scenario.domains,
        scenario.certificates,
        scenario.tickets,
        scenario.subscriptions,
        scenario.invoices,
        scenario.payments,
    )
    assert lines[-1] == f"would publish {sum(map(len, rows))} event(s)"


def test_a_row_no_event_can_announce_is_refused_by_name_and_the_others_are_published(
    database: str, scenario: Scenario
) -> None:
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE support_tickets ALTER COLUMN ticket_id TYPE text")
        cur.execute(
            "UPDATE support_tickets SET ticket_id = repeat('k', 600) "
            "WHERE ticket_id = (SELECT min(ticket_id) FROM support_tickets)"
        )
        cur.execute("SELECT count(*) FROM support_tickets")
        tickets = int(cur.fetchone()[0])  # type: ignore[index]
    conn.close()
    store_map = parse_table_map(
        {
            "store": "customer_db",
            "categories": {
                "correspondence": [
                    {
                        "table": "support_tickets",
                        "key_column": "ticket_id",
                        "action": "delete",
                        "subject_column": "customer_id",
                        "subject_format": "cust-{:05d}",
                    }
                ]
            },
        },
        "tickets.toml",
    )
    conn = psycopg2.connect(database)
    backfill = Backfill(conn, [store_map])
    (report,) = backfill.plan()
    publisher = Collect()
    backfill.run(report, publisher)
    conn.close()
    assert (report.events, report.refused) == (tickets - 1, 1)
    assert report.first_refusal is not None and "over the 512 allowed" in report.first_refusal
    assert "k" * 600 not in report.summary() and "refused 1" in report.summary()
    assert all(len(r["payload"][1]["record_key"]) <= 512 for r in publisher.records)


def test_a_broker_that_does_not_answer_is_one_line_and_nothing_is_published(
    database: str, scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EBBTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    # The publisher waits for a broker as long as its delivery timeout (EventPublisher's timeout,
    # 30 s by default): the same refusal, the same error path, after 2 s of it.
    bounded = sync_publisher.producer
    monkeypatch.setattr(sync_publisher, "producer", lambda settings, timeout: bounded(settings, BROKER_WAIT))
    code = main(["backfill", "--map", "customer_db", "--dsn", database])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("ebbtide backfill: the broker at 127.0.0.1:1 did not answer")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
