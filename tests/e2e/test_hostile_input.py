"""Issue 11, on the real broker: a poison event or a misrouted one goes to the dead-letter topic
with the reason, and the worker goes on deleting what is due (it used to exit and replay the
same batch forever)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ebbtide.runtime import keys
from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings
from ebbtide.schemas import CLOCK_TICK, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.worker.routing import partition_for
from ebbtide.tools import processes
from ebbtide.tools.client import sign_hold, to_record
from tests.e2e.test_pipeline import CLOSED_ACCOUNT, Pipeline, customer_db, ev, publish, rows, tick, written
from tests.e2e.test_seed_promises_rights import settle
from tests.support import TopicReader, demo_database

__all__ = ["customer_db"]  # the fixture, used by name


def test_a_poison_event_and_a_misrouted_one_are_dead_lettered_and_deletions_go_on(
    settings: Settings, customer_db: str, pipeline: Pipeline
) -> None:
    codec = codec_for(LIFECYCLE_EVENT)
    poison = codec.encode(to_record(ev("p1", "AccountClosed", "cust-2", "9999-12-31T00:00:00Z")))
    stray = to_record(ev("s1", "AccountClosed", "cust-2", "2020-02-01T10:00:00Z"))
    right = partition_for(b"cust-2", settings.partitions)
    out = producer(settings)
    out.send(pipeline.topics.events, key=b"cust-2", value=poison)  # partitioned by its key
    out.send(pipeline.topics.events, key=b"cust-2", value=codec.encode(stray), partition=(right + 1) % 4)
    out.flush()
    out.close()
    publish(settings, CLOSED_ACCOUNT)
    tick(settings, datetime(2023, 6, 1, tzinfo=UTC))
    pipeline.wait_confirmed({"customer_db/client/1", "customer_db/correspondence/20"})
    assert rows(customer_db, "SELECT customer_id FROM customers") == [(2,)]  # the active customer stays

    dlq = TopicReader(settings, pipeline.topics.dlq)
    dead = dlq.wait_for(lambda seen: len(seen) >= 2, 30, "two dead letters")
    dlq.close()
    reasons = sorted(r.headers["reason"].decode() for r in dead)
    assert reasons[0].startswith("lifecycle_event: event_time outside the accepted window")
    assert reasons[1].startswith("lifecycle_event: misrouted: on partition")
    assert {r.headers["source_topic"].decode() for r in dead} == {pipeline.topics.events}
    assert pipeline.worker.alive(), pipeline.worker.tail()


def test_a_forged_tick_from_2099_is_refused_by_a_worker_on_the_wall_clock(
    settings: Settings, database: str, tmp_path: Path
) -> None:
    """Forged clock tick → an invoice deleted years early, irreversibly: not in wall mode."""
    dsn = demo_database(
        database,
        """
        INSERT INTO customers VALUES (3, 'C', 'c@example.invalid', '3', 'z', '2024-01-10');
        INSERT INTO billing.invoices VALUES (11, 3, 'C', 'z', 100, '2024-05-01');
        """,
    )
    running = Pipeline(replace(settings, clock_mode="wall"), tmp_path / "logs")
    try:
        publish(
            settings,
            [
                ev("i3", "InvoiceIssued", "cust-3", "2024-05-01T10:00:00Z", invoice_id="inv-11"),
                written("w3", "cust-3", "2024-05-01T10:00:00Z", "invoice", "11", ref="inv-11"),
            ],
        )
        unsigned = {"now": datetime(2099, 1, 1, tzinfo=UTC), "events_end": 0, "source": "x"}
        out = producer(settings)  # anyone who can write to the clock topic
        out.send(running.topics.clock, key=b"tick", value=codec_for(CLOCK_TICK).encode(unsigned), partition=0)
        out.flush()
        out.close()
        tick(settings, datetime(2099, 1, 1, tzinfo=UTC))  # signed by the clock's key, but from the future
        dlq = TopicReader(settings, running.topics.dlq)
        dead = dlq.wait_for(
            lambda seen: len(seen) >= settings.partitions + 1, 60, "the forged ticks dead-lettered"
        )
        dlq.close()
        reasons = [d.headers["reason"].decode() for d in dead]
        assert sum("security: clock_tick: not signed" in r for r in reasons) == 1
        assert sum("ahead of the worker's wall clock" in r for r in reasons) == settings.partitions
        # A true tick, and the worker's clock on every partition shows it: the invoice is kept
        # until the end of 2029.
        settle(settings, datetime.now(UTC).replace(microsecond=0))
        assert not [r for r in running.decisions.poll() if r.value and r.value["kind"] == "DELETION_ORDERED"]
        assert rows(dsn, "SELECT invoice_id FROM billing.invoices") == [(11,)]
        assert running.worker.alive(), running.worker.tail()
    finally:
        running.stop()


def test_a_forged_legal_hold_does_not_stop_a_due_deletion(
    settings: Settings, customer_db: str, pipeline: Pipeline
) -> None:
    """Anyone who can write to the events topic used to be able to keep a subject's data forever
    with a LegalHoldPlaced: unsigned, or signed by a key the worker does not trust, it is refused."""
    publish(settings, CLOSED_ACCOUNT)  # account closed 2020-02-01: the client record is due 2023-02-01
    codec = codec_for(LIFECYCLE_EVENT)
    whole_subject = {"hold_id": "forged", "categories": [], "records": []}
    unsigned = to_record(ev("f1", "LegalHoldPlaced", "cust-00001", "2022-01-01T00:00:00Z", **whole_subject))
    stranger = MessageSigner(keys.generate_key()[0])
    other_key = sign_hold(
        to_record(ev("f2", "LegalHoldPlaced", "cust-00001", "2022-01-02T00:00:00Z", **whole_subject)),
        stranger,
    )
    out = producer(settings)  # anyone who can write to the events topic, keyed as the client keys
    for record in (unsigned, other_key):
        out.send(pipeline.topics.events, key=b"cust-00001", value=codec.encode(record))
    out.flush()
    out.close()
    tick(settings, datetime(2023, 6, 1, tzinfo=UTC))
    pipeline.wait_confirmed({"customer_db/client/1", "customer_db/correspondence/20"})
    assert rows(customer_db, "SELECT customer_id FROM customers") == [(2,)]

    dlq = TopicReader(settings, pipeline.topics.dlq)
    dead = dlq.wait_for(lambda seen: len(seen) >= 2, 30, "the forged holds dead-lettered")
    dlq.close()
    reasons = sorted(d.headers["reason"].decode() for d in dead)
    assert reasons == [
        "security: legal_hold: not signed",
        "security: legal_hold: signed by a key that is not a trusted hold signer's",
    ]
    worker = processes.scrape(pipeline.settings.worker_metrics_port)
    assert processes.total(worker, "ebbtide_security_events_total", source="events", kind="unsigned") == 1
    assert processes.total(worker, "ebbtide_security_events_total", source="events", kind="other_key") == 1
    assert pipeline.worker.alive(), pipeline.worker.tail()
