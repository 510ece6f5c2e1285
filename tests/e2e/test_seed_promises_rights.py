"""The seeds' promises about the person's rights and the proof of deletion, end to end: the real
broker, the worker and the stores' sinks as processes, the stores' rows in PostgreSQL.

Each test is named after the clause it proves. Where a test says that something did *not*
happen (a row kept, no deletion ordered, no duty overdue), it first waits until the worker has
applied the tick on every partition (:func:`settle`): the worker writes its state only after
that tick's decisions, commands and answers are on the broker, so the topics then say all there
is to say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from ebbtide import bootstrap
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import (
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    ERASURE_ANSWER,
    LIFECYCLE_EVENT,
    codec_for,
)
from ebbtide.sinks.base.receipts import receipt_for
from ebbtide.sinks.logstore import partitions as logstore
from ebbtide.streams import certificates
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.tools import processes
from ebbtide.tools.client import to_record
from ebbtide.tools.state_reader import StateUnavailable, read_changelog, read_to_end
from tests.e2e.test_pipeline import OWN_DATABASES, WORKER_READY, Pipeline, ev, publish, rows, tick, written
from tests.e2e.test_rights import explain, statuses
from tests.support import TopicReader, demo_database, make_topics, revealed, signed_receipt, wait_until

# --- the worker's view: what it decided, said and knows --------------------------------------


def settle(settings: Settings, when: datetime) -> None:
    """Tick the clock to ``when`` and wait until every partition of the worker has applied it."""
    tick(settings, when)

    def clocks() -> set[int | None]:
        try:
            found = {k: v.get("now") for k, v in read_changelog(settings) if k.startswith("p:")}
        except StateUnavailable:  # the worker has not written its state yet
            return set()
        return set(found.values()) if len(found) == settings.partitions else set()

    wait_until(lambda: clocks() == {to_ms(when)}, WORKER_READY, f"the worker's clock at {when.isoformat()}")


def decisions(settings: Settings, subject: str) -> list[dict[str, Any]]:
    """Every decision about ``subject`` on the decisions topic, as of now, in order."""
    codec = codec_for(DECISION)
    found = (
        revealed(codec.decode(m.value))
        for m in read_to_end(settings, Topics(settings.topic_prefix).decisions)
    )
    return [d for d in found if d["subject_id"] == subject]


def decided(settings: Settings, subject: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in decisions(settings, subject) if d["kind"] == kind]


def ordered(settings: Settings, subject: str) -> set[str]:
    """The records of ``subject`` the worker has ordered deleted."""
    return {d["record"] for d in decided(settings, subject, "DELETION_ORDERED")}


def confirmed(settings: Settings, subject: str) -> set[str]:
    return {d["record"] for d in decided(settings, subject, "DELETION_CONFIRMED")}


def answers(settings: Settings) -> dict[str, dict[str, Any]]:
    """The erasure answers sent so far, by subject: each answer's items by record."""
    codec = codec_for(ERASURE_ANSWER)
    out: dict[str, dict[str, Any]] = {}
    for message in read_to_end(settings, Topics(settings.topic_prefix).answers):
        answer = revealed(codec.decode(message.value))
        out[answer["subject_id"]] = {i["record"]: i for i in answer["items"]}
    return out


@dataclass
class Running:
    """The lifecycle worker and the sinks a test needs, as processes; the test plays the rest."""

    settings: Settings
    children: list[processes.Child]

    def alive(self) -> bool:
        for child in self.children:
            assert child.alive(), f"{child.name} died:\n{child.tail()}"
        return True


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Running]:
    """The worker alone, on our two databases' store map (customer_db, billing_db): no sinks."""
    own = replace(settings, store_map=OWN_DATABASES)
    make_topics(own, list(bootstrap.store_map(own).ids))
    running = Running(own, [processes.start("worker", ["worker"], own, tmp_path / "logs")])
    yield running
    for child in running.children:
        child.stop()


# --- seed 001 'How long do we store' + bokføringsloven: the financial year is Norwegian ---------

NEW_YEARS_NIGHT = "2021-01-01T00:30:00+01:00"  # half past midnight in Oslo: 23:30 UTC on 31 December 2020


@pytest.fixture
def new_years_invoice(database: str) -> str:
    return demo_database(
        database,
        "INSERT INTO billing.invoices VALUES (110, 11, 'Ola Nordmann', 'Storgata 1', 1250, "
        f"'{NEW_YEARS_NIGHT}');",
    )


def test_seed_001_bookkeeping_counts_the_norwegian_financial_year(
    settings: Settings, new_years_invoice: str, pipeline: Pipeline
) -> None:
    # An invoice issued just after midnight on New Year's Day in Oslo is in the books of 2021,
    # though it is still 2020 in UTC: kept 5 years from the end of 2021, Oslo time.
    publish(
        settings,
        [
            ev("fy-issued", "InvoiceIssued", "cust-00011", NEW_YEARS_NIGHT, invoice_id="inv-110"),
            written("fy-written", "cust-00011", NEW_YEARS_NIGHT, "invoice", "110", ref="inv-110"),
        ],
    )

    # Mid-2026: five years after the end of the UTC year 2020 have passed, not those of 2021.
    settle(pipeline.settings, datetime(2026, 6, 1, tzinfo=UTC))
    assert "billing_db/invoice/110" not in ordered(settings, "cust-00011")
    assert rows(new_years_invoice, "SELECT invoice_id FROM billing.invoices") == [(110,)]
    (stamped,) = [
        d for d in decided(settings, "cust-00011", "STAMPED") if d["record"] == "billing_db/invoice/110"
    ]
    assert stamped["rule_id"] == "bookkeeping"
    assert stamped["deadline"] == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # 1 January 2027 00:00 in Oslo

    # Once 2026 has ended in Oslo, the invoice goes.
    tick(settings, datetime(2027, 1, 2, tzinfo=UTC))
    pipeline.wait_confirmed({"billing_db/invoice/110"})
    assert rows(new_years_invoice, "SELECT count(*) FROM billing.invoices") == [(0,)]


# --- seed 000 'Storage and deletion' + seed 004: correspondence only where a claim is pending ------


def closed_account_with_a_ticket(subject: str, customer: int) -> list[dict[str, Any]]:
    """A customer who wrote to support, then cancelled everything and closed the account."""
    return [
        written(f"{subject}-client", subject, "2019-01-10T10:00:00Z", "client", str(customer)),
        ev(
            f"{subject}-order",
            "ServiceOrdered",
            subject,
            "2019-01-10T10:00:00Z",
            service_id=f"svc-{customer}",
            kind="HOSTING",
        ),
        written(f"{subject}-ticket", subject, "2019-06-01T10:00:00Z", "correspondence", f"{customer}0"),
        ev(
            f"{subject}-cancel",
            "ServiceCancelled",
            subject,
            "2020-02-01T10:00:00Z",
            service_id=f"svc-{customer}",
        ),
        ev(f"{subject}-closed", "AccountClosed", subject, "2020-02-01T10:00:00Z"),
    ]


def erasure_requested(subject: str, request: str, when: str, verified: bool) -> dict[str, Any]:
    return ev(
        f"{subject}-{request}", "ErasureRequested", subject, when, request_id=request, verified=verified
    )


@pytest.fixture
def two_former_customers(database: str) -> str:
    return demo_database(
        database,
        """
        INSERT INTO customers VALUES (21, 'A', 'a@example.invalid', '1', 'x', '2019-01-10'),
                                     (22, 'B', 'b@example.invalid', '2', 'y', '2019-01-10');
        INSERT INTO services VALUES (21, 21, 'HOSTING', '2019-01-10', '2020-02-01'),
                                    (22, 22, 'HOSTING', '2019-01-10', '2020-02-01');
        INSERT INTO support_tickets VALUES (210, 21, 'invoice question', 'b', '2019-06-01'),
                                           (220, 22, 'complaint', 'b', '2019-06-01');
        INSERT INTO newsletter_subscriptions VALUES (221, 22, 'b@example.invalid', '2019-01-10');
        """,
    )


def test_seed_000_correspondence_is_kept_on_erasure_only_where_a_legal_claim_holds_it(
    settings: Settings, two_former_customers: str, pipeline: Pipeline
) -> None:
    publish(settings, closed_account_with_a_ticket("cust-00021", 21))
    publish(
        settings,
        [
            *closed_account_with_a_ticket("cust-00022", 22),
            written(
                "cust-00022-newsletter",
                "cust-00022",
                "2019-01-10T10:00:00Z",
                "marketing",
                "221",
                ref="newsletter",
            ),
            # A claim is actually pending against cust-00022 (seed 004: judged case by case).
            ev(
                "cust-00022-hold",
                "LegalHoldPlaced",
                "cust-00022",
                "2020-06-01T10:00:00Z",
                hold_id="claim-22",
                categories=["correspondence"],
                records=[],
            ),
        ],
    )
    publish(
        settings,
        [
            erasure_requested("cust-00021", "req-21", "2021-06-01T10:00:00Z", verified=True),
            erasure_requested("cust-00022", "req-22", "2021-06-01T10:00:00Z", verified=True),
        ],
    )
    settle(pipeline.settings, datetime(2021, 6, 2, tzinfo=UTC))

    # What each person is told.
    told = answers(settings)
    free, held = told["cust-00021"], told["cust-00022"]
    assert free["customer_db/correspondence/210"]["action"] == "DELETE"
    assert held["customer_db/correspondence/220"]["action"] == "KEEP"
    assert "legal hold claim-22" in held["customer_db/correspondence/220"]["reason"]
    assert held["customer_db/marketing/221"]["action"] == "DELETE"  # the hold keeps only what it names

    # What is done: without a pending claim the ticket goes now, not three years after closing.
    pipeline.wait_confirmed({"customer_db/correspondence/210", "customer_db/marketing/221"})
    assert "customer_db/correspondence/220" not in ordered(settings, "cust-00022")
    assert rows(two_former_customers, "SELECT ticket_id FROM support_tickets") == [(220,)]
    assert (
        statuses(explain(pipeline.settings, "worker", "cust-00022"))["customer_db/correspondence/220"]
        == "held"
    )


# --- GDPR art. 12(3) + seed 004: a request refused or withdrawn closes the duty to answer ----------


@pytest.fixture
def two_active_customers(database: str) -> str:
    return demo_database(
        database,
        """
        INSERT INTO customers VALUES (31, 'C', 'c@example.invalid', '3', 'z', '2021-01-10'),
                                     (32, 'D', 'd@example.invalid', '4', 'w', '2021-01-10');
        INSERT INTO services VALUES (31, 31, 'DOMAIN', '2021-01-10', NULL),
                                    (32, 32, 'DOMAIN', '2021-01-10', NULL);
        INSERT INTO support_tickets VALUES (310, 31, 's', 'b', '2021-06-01'),
                                           (320, 32, 's', 'b', '2021-06-01');
        """,
    )


def customer_with_a_ticket(subject: str, customer: int) -> list[dict[str, Any]]:
    return [
        written(f"{subject}-client", subject, "2021-01-10T10:00:00Z", "client", str(customer)),
        ev(
            f"{subject}-order",
            "ServiceOrdered",
            subject,
            "2021-01-10T10:00:00Z",
            service_id=f"svc-{customer}",
            kind="DOMAIN",
        ),
        written(f"{subject}-ticket", subject, "2021-06-01T10:00:00Z", "correspondence", f"{customer}0"),
    ]


def test_seed_004_an_erasure_request_refused_or_withdrawn_is_answered_and_deletes_nothing(
    settings: Settings, two_active_customers: str, pipeline: Pipeline
) -> None:
    refused, withdrawn = "cust-00031", "cust-00032"
    publish(
        settings,
        [
            *customer_with_a_ticket(refused, 31),
            *customer_with_a_ticket(withdrawn, 32),
            erasure_requested(refused, "req-31", "2022-03-01T10:00:00Z", verified=False),
            erasure_requested(withdrawn, "req-32", "2022-03-01T10:00:00Z", verified=False),
            ev(
                "refusal-31",
                "ErasureRefused",
                refused,
                "2022-03-20T10:00:00Z",
                request_id="req-31",
                reason="IDENTITY_NOT_VERIFIED",
            ),
            ev("withdrawal-32", "ErasureWithdrawn", withdrawn, "2022-03-08T10:00:00Z", request_id="req-32"),
        ],
    )
    everything = [(31, 310), (32, 320)]  # each customer with the ticket they wrote

    def their_data() -> list[tuple[Any, ...]]:
        return rows(
            two_active_customers,
            "SELECT customer_id, ticket_id FROM customers JOIN support_tickets USING (customer_id) "
            "ORDER BY 1",
        )

    # A month after the requests (GDPR art. 12(3)): both were answered in time, by their ending.
    settle(pipeline.settings, datetime(2022, 4, 15, tzinfo=UTC))
    for subject, request, ending in ((refused, "req-31", "refused"), (withdrawn, "req-32", "withdrawn")):
        (done,) = [
            d for d in decided(settings, subject, "DUTY_DONE") if d["record"] == f"duty/erasure/{request}"
        ]
        assert ending in done["reason"]
        assert decided(settings, subject, "DUTY_OVERDUE") == []
        assert ordered(settings, subject) == set()
    assert their_data() == everything

    # A verification arriving after the request ended carries nothing out.
    publish(
        settings,
        [
            ev("late-31", "ErasureVerified", refused, "2022-05-01T10:00:00Z", request_id="req-31"),
            ev("late-32", "ErasureVerified", withdrawn, "2022-05-01T10:00:00Z", request_id="req-32"),
        ],
    )
    settle(pipeline.settings, datetime(2022, 5, 2, tzinfo=UTC))
    for subject in (refused, withdrawn):
        assert ordered(settings, subject) == set()
        assert decided(settings, subject, "ERASURE_ANSWERED") == []
    assert answers(settings) == {}
    assert their_data() == everything


# --- announcements the policy could never enforce: marketing without its consent's purpose ------


def test_seed_000_a_marketing_record_announced_without_its_purpose_is_refused_not_kept_forever(
    worker: Running, tmp_path: Path
) -> None:
    settings, topics = worker.settings, Topics(worker.settings.topic_prefix)
    # Consent is withdrawn per purpose (seed 000: unsubscribe from Trustpilot or the newsletter):
    # a marketing record without one could never be deleted.
    no_purpose = ev(
        "m-41",
        "RecordWritten",
        "cust-00041",
        "2022-01-10T10:00:00Z",
        store="customer_db",
        category="marketing",
        record_key="41",
    )
    client = written("c-41", "cust-00041", "2022-01-10T10:00:00Z", "client", "41")

    # `ebbtide publish` refuses the file, naming the field, and publishes none of it.
    events = tmp_path / "events.jsonl"
    events.write_text(f"{json.dumps(client)}\n{json.dumps(no_purpose)}\n")
    done = subprocess.run(
        [sys.executable, "-m", "ebbtide", "publish", str(events)],
        env=processes.settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert "line 2" in done.stderr and "payload.ref" in done.stderr, done.stderr
    assert list(read_to_end(settings, topics.events)) == []

    # Sent past the client, straight to the broker: dead-lettered, and the pipeline goes on.
    raw = codec_for(LIFECYCLE_EVENT).encode(to_record(no_purpose))
    out = producer(settings)
    out.send(topics.events, key=b"cust-00041", value=raw)
    out.flush()
    out.close()
    publish(settings, [client])

    dlq = TopicReader(settings, topics.dlq)
    (dead,) = dlq.wait_for(lambda seen: len(seen) >= 1 and worker.alive(), WORKER_READY, "the dead letter")
    dlq.close()
    assert "payload.ref" in dead.headers["reason"].decode()
    assert dead.raw == raw  # kept as sent, for whoever fixes the producer
    wait_until(
        lambda: any(
            d["record"] == "customer_db/client/41" for d in decided(settings, "cust-00041", "STAMPED")
        ),
        60,
        "the next event stamped",
    )
    assert [d["record"] for d in decisions(settings, "cust-00041") if "marketing" in d["record"]] == []


# --- seed 000 'Storage and deletion': one person's erasure keeps the others' log lines ---------

LOG_DAY = date(2025, 10, 1)
LOG_PARTITION = logstore.partition_name(LOG_DAY)
LOG_RECORD = f"{logstore.STORE}/{logstore.CATEGORY}/{LOG_PARTITION}"


@pytest.fixture
def a_day_of_logs(database: str) -> str:
    """One day's partition of the access log, with the lines of two people."""
    conn = psycopg2.connect(database)
    try:
        logstore.create_day_partition(conn, LOG_DAY)
        logstore.append_rows(
            conn,
            [
                (
                    datetime(2025, 10, 1, 12, tzinfo=UTC),
                    "www",
                    "192.0.2.51",
                    "GET /account kari@example.invalid",
                ),
                (datetime(2025, 10, 1, 13, tzinfo=UTC), "mail", "198.51.100.7", "AUTH ola@example.invalid"),
            ],
        )
    finally:
        conn.close()
    return database


def log_partitions(dsn: str) -> dict[str, int]:
    conn = psycopg2.connect(dsn)
    try:
        return {p.name: p.rows for p in logstore.list_partitions(conn)}
    finally:
        conn.close()


@pytest.fixture
def log_pipeline(settings: Settings, a_day_of_logs: str, tmp_path: Path) -> Iterator[Running]:
    """The worker on the shipped store map and the log store's sink, on that day of logs."""
    make_topics(settings, [logstore.STORE])
    sink_settings = replace(settings, sink_metrics_port=processes.free_port())
    running = Running(
        settings,
        [
            processes.start("worker", ["worker"], settings, tmp_path / "logs"),
            processes.start("log_store", ["sink", "logstore"], sink_settings, tmp_path / "logs"),
        ],
    )
    yield running
    for child in running.children:
        child.stop()


def test_seed_000_one_persons_erasure_keeps_everyones_log_lines_until_the_log_period_ends(
    settings: Settings, a_day_of_logs: str, log_pipeline: Running
) -> None:
    publish(
        settings,
        [
            logstore.announcement(LOG_DAY),  # the log shipper: the day, under the system subject
            ev(
                "cust-00051-log",
                "RecordWritten",
                "cust-00051",
                "2025-10-01T12:00:00Z",
                store=logstore.STORE,
                category=logstore.CATEGORY,
                record_key=LOG_PARTITION,
            ),
            erasure_requested("cust-00051", "req-51", "2025-10-05T10:00:00Z", verified=True),
        ],
    )
    settle(settings, datetime(2025, 10, 6, tzinfo=UTC))

    # The answer says the lines are kept, on what basis and until when.
    kept = answers(settings)["cust-00051"][LOG_RECORD]
    assert kept["action"] == "KEEP"
    assert "legitimate interest" in kept["basis"]
    assert kept["until"] == "2025-12-30T23:00:00Z"  # 90 days after 1 October ended in Oslo

    # Nothing is dropped: the day still holds both people's lines.
    assert ordered(settings, "cust-00051") == ordered(settings, logstore.day_subject(LOG_DAY)) == set()
    assert log_partitions(a_day_of_logs) == {LOG_PARTITION: 2}

    # When the log period ends, the day goes whole, for everyone alike.
    tick(settings, datetime(2026, 1, 2, tzinfo=UTC))
    wait_until(
        lambda: log_pipeline.alive() and LOG_RECORD in confirmed(settings, logstore.day_subject(LOG_DAY)),
        WORKER_READY,
        "the day's deletion confirmed",
    )
    assert log_partitions(a_day_of_logs) == {}
    wait_until(lambda: LOG_RECORD in confirmed(settings, "cust-00051"), 60, "the person's copy confirmed")
    codec = codec_for(DELETION_RECEIPT)
    receipts = [
        revealed(codec.decode(m.value)) for m in read_to_end(settings, Topics(settings.topic_prefix).receipts)
    ]
    answered = sorted((r["outcome"], r["rows"]) for r in receipts if r["record_key"] == LOG_PARTITION)
    assert answered == [("DELETED", 2), ("NOT_FOUND", 0)]  # dropped once, with both lines


# --- seed 003 section 13: deletion confirmed in writing, and that proof cannot be lost -----------


def test_seed_003_a_deletion_is_confirmed_in_writing_by_exactly_one_verifiable_certificate(
    worker: Running,
) -> None:
    settings, topics = worker.settings, Topics(worker.settings.topic_prefix)
    publish(
        settings,
        [
            written("c-61", "cust-00061", "2019-01-10T10:00:00Z", "client", "61"),
            ev(
                "o-61",
                "ServiceOrdered",
                "cust-00061",
                "2019-01-10T10:00:00Z",
                service_id="svc-61",
                kind="HOSTING",
            ),
            ev("x-61", "ServiceCancelled", "cust-00061", "2020-02-01T10:00:00Z", service_id="svc-61"),
            ev("closed-61", "AccountClosed", "cust-00061", "2020-02-01T10:00:00Z"),
        ],
    )
    tick(settings, datetime(2023, 6, 1, tzinfo=UTC))  # three years after the account closed
    commands = TopicReader(settings, topics.commands("customer_db"), codec_for(DELETION_COMMAND))
    (got,) = [
        r
        for r in commands.wait_for(
            lambda seen: len(seen) >= 1 and worker.alive(), WORKER_READY, "the command"
        )
        if r.value is not None
    ]
    commands.close()
    assert got.value is not None and (got.value["subject_id"], got.value["record_key"]) == (
        "cust-00061",
        "61",
    )
    command = codec_for(DELETION_COMMAND).decode(got.raw)  # as sent: its record key sealed

    receipts, out = codec_for(DELETION_RECEIPT), producer(settings)

    def answer(outcome: str, count: int) -> None:
        receipt = receipt_for(command, outcome, count, None, datetime(2023, 6, 1, 0, 5, tzinfo=UTC))
        out.send(topics.receipts, key=b"cust-00061", value=receipts.encode(signed_receipt(settings, receipt)))
        out.flush()

    # The store answers "anonymised" but touched no row: that cannot be certified.
    answer("ANONYMISED", 0)
    dlq = TopicReader(settings, topics.dlq)
    (dead,) = dlq.wait_for(
        lambda seen: len(seen) >= 1 and worker.alive(), 60, "the self-contradicting receipt"
    )
    dlq.close()
    assert "ANONYMISED with 0 rows" in dead.headers["reason"].decode()

    # The copy still waits for a true answer; when it comes, the deletion is certified once.
    answer("DELETED", 1)
    out.close()

    def certified() -> list[bytes]:
        return [m.value for m in read_to_end(settings, topics.certificates) if m.key == b"cust-00061"]

    wait_until(certified, 60, "the certificate")
    assert "customer_db/client/61" in confirmed(settings, "cust-00061")
    # One certificate in all: none came of the contradicting answer (its batch was on the broker
    # before the true answer was read), and it is the true answer that is certified.
    (published,) = certified()
    document = certificates.loads(published)
    assert certificates.verify(document, settings.signing_key.with_suffix(".pub").read_bytes()) == []
    (entry,) = revealed(document["certificate"]["entries"], "cust-00061")
    assert (entry["record"], entry["outcome"], entry["rows"]) == ("customer_db/client/61", "DELETED", 1)
