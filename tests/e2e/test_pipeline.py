"""The whole pipeline as separate processes on the real broker and database:
publish -> stamp -> tick past the deadline -> command -> row deleted -> receipt -> confirmed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from ebbtide import bootstrap
from ebbtide.demo import database as demo_db
from ebbtide.demo.run import publish_timeline
from ebbtide.demo.scenario import START, STORE_OF, Scenario, build
from ebbtide.runtime.authenticity import HoldKeys
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import CLOCK_TICK, DECISION, codec_for
from ebbtide.streams.engine.shredding import KEY_STORE
from ebbtide.streams.policy.rules import Policy, rules_policy
from ebbtide.streams.policy.stores import load_store_map
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.tools import processes, replay
from ebbtide.tools.audit.reading import TopicRead
from ebbtide.tools.audit.verdict import verify
from ebbtide.tools.client import EventPublisher, sign_hold, to_record
from ebbtide.tools.clock import ClockPublisher, steps
from tests.support import TopicReader, demo_database, hold_signer, make_topics, wait_until

WORKER_READY = 90.0  # a Faust worker joins its group and recovers its tables within this


OWN_DATABASES = Path(__file__).with_name("own_databases.toml")


def own_databases_policy() -> Policy:
    """What the pipeline's worker runs: the shipped rules, our two databases as the store map."""
    return rules_policy().with_stores(load_store_map(OWN_DATABASES))


class Pipeline:
    """The worker, one postgres sink per store of ``own_databases.toml`` and the key store's sink,
    as processes."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings = replace(settings, store_map=OWN_DATABASES)
        make_topics(settings, list(bootstrap.store_map(settings).ids))
        self.topics = Topics(settings.topic_prefix)
        self.log_dir = log_dir
        self.worker = self.start("worker")
        self.sink = self.start("sink")
        self.billing = self.start("billing")
        self.keys = self.start("keys")  # the key store's sink: destroys shredded keys
        self.decisions = TopicReader(settings, self.topics.decisions, codec_for(DECISION))

    def start(self, name: str) -> processes.Child:
        settings = self.settings
        if name == "worker":
            args = ["worker"]
        elif name == "sink":
            args = ["sink", "postgres"]
        elif name == "keys":
            args, settings = ["sink", "keys"], replace(settings, sink_metrics_port=0)
        else:  # billing: on a metrics port of its own (the tests read the customer sink's)
            args, settings = (
                ["sink", "postgres", "--map", "billing_db"],
                replace(settings, sink_metrics_port=0),
            )
        return processes.start(name, args, settings, self.log_dir)

    def restart(self, child: processes.Child) -> processes.Child:
        return self.start(child.name)

    def confirmed(self) -> set[str]:
        return {
            r.value["record"]
            for r in self.decisions.poll()
            if r.value and r.value["kind"] == "DELETION_CONFIRMED"
        }

    def wait_confirmed(self, records: set[str], timeout: float = WORKER_READY) -> None:
        for child in (self.worker, self.sink, self.billing):
            assert child.alive(), f"{child.name} died:\n{child.tail()}"
        wait_until(lambda: records <= self.confirmed(), timeout, f"deletions of {sorted(records)} confirmed")

    def stop(self) -> None:
        self.decisions.close()
        for child in (self.worker, self.sink, self.billing, self.keys):  # every process it started
            child.stop()


@pytest.fixture
def customer_db(database: str) -> str:
    """The demo schema with two customers: 1 with an invoice and a ticket, 2 still active."""
    return demo_database(
        database,
        """
        INSERT INTO customers VALUES (1, 'A', 'a@example.invalid', '1', 'x', '2019-01-10'),
                                     (2, 'B', 'b@example.invalid', '2', 'y', '2019-01-10');
        INSERT INTO services VALUES (1, 1, 'HOSTING', '2019-01-10', '2020-02-01'),
                                    (2, 2, 'DOMAIN', '2019-01-10', NULL);
        INSERT INTO billing.invoices VALUES (10, 1, 'A', 'x', 100, '2019-05-01');
        INSERT INTO support_tickets VALUES (20, 1, 's', 'b', '2019-06-01');
    """,
    )


def ev(event_id: str, event_type: str, subject: str, when: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": event_type,
        "subject_id": subject,
        "event_time": when,
        "producer": "test",
        "payload": payload,
    }


def written(
    event_id: str, subject: str, when: str, category: str, key: str, ref: str | None = None
) -> dict[str, Any]:
    return ev(
        event_id,
        "RecordWritten",
        subject,
        when,
        store=STORE_OF[category],
        category=category,
        record_key=key,
        ref=ref,
    )


CLOSED_ACCOUNT = [
    written("w1", "cust-00001", "2019-01-10T10:00:00Z", "client", "1"),
    ev("o1", "ServiceOrdered", "cust-00001", "2019-01-10T10:00:00Z", service_id="svc-1", kind="HOSTING"),
    ev("i1", "InvoiceIssued", "cust-00001", "2019-05-01T10:00:00Z", invoice_id="inv-10"),
    written("w2", "cust-00001", "2019-05-01T10:00:00Z", "invoice", "10", ref="inv-10"),
    written("w3", "cust-00001", "2019-06-01T10:00:00Z", "correspondence", "20"),
    ev("x1", "ServiceCancelled", "cust-00001", "2020-02-01T10:00:00Z", service_id="svc-1"),
    ev("c1", "AccountClosed", "cust-00001", "2020-02-01T10:00:00Z"),
    written("w4", "cust-00002", "2019-01-10T10:00:00Z", "client", "2"),
    ev("o2", "ServiceOrdered", "cust-00002", "2019-01-10T10:00:00Z", service_id="svc-2", kind="DOMAIN"),
]


def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish ``events`` (JSON form), legal holds signed with the key the worker trusts."""
    with EventPublisher(settings, hold_signer=hold_signer(settings)) as publisher:
        for event in events:
            publisher.publish(event)


def tick(settings: Settings, when: datetime) -> None:
    clock = ClockPublisher(settings, "scripted")
    clock.tick(when)
    clock.close()


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
        found = cur.fetchall()
    conn.close()
    return found


def test_a_closed_account_becomes_a_proven_deletion(
    settings: Settings, customer_db: str, pipeline: Pipeline
) -> None:
    publish(settings, CLOSED_ACCOUNT)
    tick(settings, datetime(2023, 6, 1, tzinfo=UTC))
    pipeline.wait_confirmed({"customer_db/client/1", "customer_db/correspondence/20"})
    assert rows(customer_db, "SELECT customer_id FROM customers") == [(2,)]
    assert rows(customer_db, "SELECT count(*) FROM services WHERE customer_id = 1") == [(0,)]
    assert rows(customer_db, "SELECT ticket_id FROM support_tickets") == []
    assert rows(customer_db, "SELECT invoice_id FROM billing.invoices") == [(10,)]  # bookkeeping: until 2025

    receipts = TopicReader(settings, pipeline.topics.receipts, codec_for("deletion_receipt"))
    got = receipts.wait_for(lambda seen: len(seen) >= 2, 30, "two receipts")
    receipts.close()
    assert sorted((r.value["category"], r.value["outcome"]) for r in got if r.value) == [
        ("client", "DELETED"),
        ("correspondence", "DELETED"),
    ]

    tick(settings, datetime(2025, 1, 2, tzinfo=UTC))
    pipeline.wait_confirmed({"billing_db/invoice/10"})
    assert rows(customer_db, "SELECT count(*) FROM billing.invoices") == [(0,)]
    assert "customer_db/client/2" not in pipeline.confirmed()
    stamped = {
        r.value["record"]: r.value
        for r in pipeline.decisions.seen
        if r.value and r.value["kind"] == "STAMPED"
    }
    assert stamped["billing_db/invoice/10"]["rule_id"] == "bookkeeping"
    assert "seed 001" in stamped["billing_db/invoice/10"]["clause"]


def test_bad_events_go_to_the_dlq_and_the_pipeline_goes_on(
    settings: Settings, customer_db: str, pipeline: Pipeline
) -> None:
    out = producer(settings)
    out.send(pipeline.topics.events, key=b"cust-00001", value=b'{"not": "avro"}')
    out.send(pipeline.topics.events, key=b"cust-00001", value=b"\xc3\x01" + bytes(8) + b"\x00")
    out.send(pipeline.topics.clock, key=b"tick", value=b"garbage tick", partition=0)
    out.flush()
    out.close()
    publish(settings, CLOSED_ACCOUNT)
    tick(settings, datetime(2023, 6, 1, tzinfo=UTC))
    pipeline.wait_confirmed({"customer_db/client/1"})

    dlq = TopicReader(settings, pipeline.topics.dlq)
    dead = dlq.wait_for(lambda seen: len(seen) >= 3, 30, "three dead letters")
    dlq.close()
    reasons = sorted(r.headers["reason"].decode() for r in dead)
    assert any("not Avro single-object encoded" in r for r in reasons)
    assert any("unknown writer schema fingerprint" in r for r in reasons)
    assert any(r.startswith("clock_tick:") for r in reasons)
    assert all(r.headers["source_offset"].isdigit() for r in dead)
    assert {r.raw for r in dead} >= {b'{"not": "avro"}', b"garbage tick"}  # nothing lost


def expected_deletions(
    records: list[dict[str, Any]], ticks: list[datetime], hold_keys: HoldKeys | None = None
) -> set[str]:
    """The same timeline through the in-memory processor: what must be deleted."""
    topics = Topics("oracle")
    oracle = LifecycleProcessor(own_databases_policy(), topics, {}, hold_keys=hold_keys)
    events, ticker = codec_for("lifecycle_event"), codec_for(CLOCK_TICK)
    ordered: set[str] = set()
    offset = index = 0
    for moment in ticks:
        while index < len(records) and records[index]["event_time"] <= moment:
            oracle.on_event(0, offset, records[index]["subject_id"].encode(), events.encode(records[index]))
            oracle.flush()
            offset += 1
            index += 1
        for out in oracle.on_tick(
            0, 0, b"t", ticker.encode({"now": moment, "events_end": offset, "source": "o"})
        ):
            if ".commands." in out.topic:
                command = codec_for("deletion_command").decode(out.value)
                ordered.add(f"{command['store']}/{command['category']}/{command['record_key']}")
        oracle.flush()
    return ordered


@pytest.fixture
def forty_customers(database: str) -> Scenario:
    scenario = build(customers=40, seed=11)
    demo_db.load(database, scenario)
    return scenario


def test_killing_worker_and_sink_mid_run_loses_no_deletion_and_repeats_none(
    settings: Settings, forty_customers: Scenario, database: str, pipeline: Pipeline
) -> None:
    scenario = forty_customers
    holds = hold_signer(settings)  # the scenario has legal holds: signed as the legal team would
    records = [sign_hold(to_record(e), holds) for e in scenario.events]
    ticks = list(steps(START, datetime(2032, 1, 1, tzinfo=UTC), 30))
    expected = expected_deletions(records, ticks, HoldKeys([holds.public_pem]))
    assert len(expected) > 100
    half = len(ticks) // 2

    publish_timeline(settings, records, ticks[:half])
    wait_until(
        lambda: (
            processes.total(processes.scrape(settings.worker_metrics_port), "ebbtide_commands_sent_total") > 0
        ),
        WORKER_READY,
        "first commands",
    )
    pipeline.worker.kill()  # SIGKILL mid-run: no clean shutdown, no final commit
    publish_timeline(settings, records, ticks[half:], after=ticks[half - 1])
    pipeline.worker = pipeline.restart(pipeline.worker)
    wait_until(lambda: len(pipeline.confirmed()) > len(expected) // 3, WORKER_READY, "a third confirmed")
    pipeline.sink.kill()
    pipeline.sink = pipeline.restart(pipeline.sink)
    pipeline.wait_confirmed(expected, timeout=180)

    confirmed = pipeline.confirmed()
    shredded = {r for r in confirmed if r.startswith(f"{KEY_STORE}/")}  # the keys of subjects all gone
    assert confirmed - shredded == expected
    tracking = rows(database, "SELECT category, outcome, rows FROM ebbtide_sink.applied_commands")
    assert len(tracking) == len(expected)  # one command per record, even across restarts
    # none executed twice: a second run would have found nothing (NOT_FOUND)
    assert {outcome for _, outcome, _ in tracking} == {"DELETED"}
    present = demo_db.present_keys(database)
    still_there = {f"{STORE_OF[c]}/{c}/{k}" for c, keys in present.items() for k in keys}
    assert not (expected & still_there)
    # The decisions' hash chains hold across the kill: a batch replayed after it re-sent its
    # decisions (the same, or superseding ones after the last checkpoint), nothing broken.
    topics = Topics(settings.topic_prefix)
    chains = verify(
        TopicRead(settings, topics.decisions),
        TopicRead(settings, topics.checkpoints),
        settings.command_public_key.read_bytes(),
    )
    assert chains.ok, [f.line() for f in chains.findings]
    replayed = replay.replay(pipeline.settings, replay.Options())  # crashes leave the log replayable
    assert replayed.decisions > len(expected) and replayed.differences == []
