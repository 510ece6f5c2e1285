"""Issue 5, end to end: a closed account's data is deleted in every store of the map, on the real
broker and database, with vendor failures in between; overdue deletions show up and recover when
the vendor comes back; the signed certificate verifies, and a tampered one does not."""

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
from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, codec_for
from ebbtide.sinks.backups import catalogue as backups
from ebbtide.sinks.http.vendors import tuned
from ebbtide.sinks.logstore import partitions as logstore
from ebbtide.streams import certificates
from ebbtide.tools import processes
from ebbtide.tools.client import EventPublisher
from tests.e2e.test_pipeline import ev as pipeline_ev
from tests.e2e.test_pipeline import rows, tick
from tests.support import TopicReader, demo_database, free_port, make_topics, revealed, wait_until

WORKER_READY = 90.0
SUBJECT = "cust-00007"
DOMAIN = "kari-nordmann.no"
LOG_DAY = date(2025, 10, 1)

# The shipped vendor config with short timeouts, backoff and breaker pauses, so that failures
# and recovery take a second, not minutes.
FAST: dict[str, float | int] = {
    "timeout": 1.0,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "breaker_threshold": 2,
    "breaker_open_seconds": 0.5,
}


def ev(event_id: str, event_type: str, when: str, **payload: Any) -> dict[str, Any]:
    """An event of the subject of this file (see :func:`tests.e2e.test_pipeline.ev`)."""
    return pipeline_ev(event_id, event_type, SUBJECT, when, **payload)


def written(
    event_id: str, when: str, store: str, category: str, key: str, ref: str | None = None
) -> dict[str, Any]:
    return ev(event_id, "RecordWritten", when, store=store, category=category, record_key=key, ref=ref)


LIFE = [
    written("w-client", "2019-01-10T10:00:00Z", "customer_db", "client", "7"),
    ev("o-domain", "ServiceOrdered", "2019-01-10T10:00:00Z", service_id="70", kind="DOMAIN"),
    ev("d-reg", "DomainRegistered", "2019-01-10T10:00:00Z", domain=DOMAIN),
    written("w-domain", "2019-01-10T10:00:00Z", "customer_db", "domain_contact", "71", ref=DOMAIN),
    written("w-ticket", "2019-06-01T10:00:00Z", "support_desk", "correspondence", "720"),
    ev("o-hosting", "ServiceOrdered", "2019-02-01T10:00:00Z", service_id="72", kind="HOSTING"),
    written("w-site", "2019-02-01T10:00:00Z", "hosting", "hosted", "site-7", ref="agr-7"),
    ev("d-rel", "DomainReleased", "2023-01-01T10:00:00Z", domain=DOMAIN, how="EXPIRED"),
    ev(
        "h-end",
        "HostingAgreementTerminated",
        "2023-01-01T10:00:00Z",
        agreement_id="agr-7",
        paid_until="2023-03-31T00:00:00Z",
    ),
    ev("h-exp", "ExportOffered", "2023-01-02T10:00:00Z", agreement_id="agr-7"),
    ev("x-domain", "ServiceCancelled", "2023-01-01T10:00:00Z", service_id="70"),
    ev("x-hosting", "ServiceCancelled", "2023-01-01T10:00:00Z", service_id="72"),
    ev("closed", "AccountClosed", "2023-01-01T10:00:00Z"),
]


@dataclass
class EveryStore:
    settings: Settings
    dsn: str
    standin: VendorStandIn
    children: list[processes.Child]
    decisions: TopicReader
    certificates: TopicReader

    def confirmed(self) -> set[str]:
        return {
            r.value["record"]
            for r in self.decisions.poll()
            if r.value and r.value["kind"] == "DELETION_CONFIRMED"
        }

    def has_confirmed(self, records: set[str]) -> bool:
        self.alive()
        return records <= self.confirmed()

    def kinds(self, record: str) -> list[str]:
        return [r.value["kind"] for r in self.decisions.poll() if r.value and r.value["record"] == record]

    def alive(self) -> None:
        for child in self.children:
            assert child.alive(), f"{child.name} died:\n{child.tail()}"

    def worker_metric(self, name: str, **labels: str) -> float:
        return processes.total(processes.scrape(self.settings.worker_metrics_port), name, **labels)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ebbtide", *args],
            env=processes.settings_env(self.settings),
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def every_store(
    settings: Settings, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EveryStore]:
    demo_database(
        database,
        f"""
        INSERT INTO customers VALUES (7, 'Kari', 'kari@example.invalid', '1', 'Gate 1', '2019-01-10');
        INSERT INTO services VALUES (70, 7, 'DOMAIN', '2019-01-10', '2023-01-01'),
                                    (72, 7, 'HOSTING', '2019-02-01', '2023-01-01');
        INSERT INTO orders VALUES (700, 7, 'HOSTING', '2019-02-01', '192.0.2.7', 'kari@example.invalid');
        INSERT INTO domain_contacts VALUES (71, 7, '{DOMAIN}', 'Kari', 'kari@example.invalid', '01017012345',
                                           '2019-01-10');
        INSERT INTO support_tickets VALUES (720, 7, 's', 'b', '2019-06-01');
        """,
    )
    conn = psycopg2.connect(database)
    try:
        logstore.create_log_table(conn)
        logstore.create_day_partition(conn, LOG_DAY)
        logstore.append_rows(conn, [(datetime(2025, 10, 1, 12, tzinfo=UTC), "www", "192.0.2.7", "GET /")])
        backups.create_catalogue(conn)
        backups.take_backup(
            conn,
            "daily-2025-12-31",
            datetime(2025, 12, 31, tzinfo=UTC),
            datetime(2026, 3, 31, tzinfo=UTC),
            [("hosted", "site-7")],
        )
    finally:
        conn.close()
    standin = VendorStandIn()
    standin.start()
    for store, category, key in (
        ("support_desk", "client", "7"),
        ("support_desk", "correspondence", "720"),
        ("chat_vendor", "client", "7"),
        ("registry_norid", "domain_contact", "71"),
        ("hosting", "hosted", "site-7"),
    ):
        standin.seed(store, category, key)
    vendors = tmp_path / "vendors.toml"
    vendors.write_text(tuned(FAST))
    monkeypatch.setenv("EBBTIDE_VENDOR_URL", standin.url)
    make_topics(settings, list(bootstrap.store_map(settings).ids))
    log_dir = tmp_path / "logs"

    def sink(name: str, *args: str) -> processes.Child:
        return processes.start(
            name, ["sink", *args], replace(settings, sink_metrics_port=free_port()), log_dir
        )

    children = [processes.start("worker", ["worker"], settings, log_dir)]
    children += [
        sink("customer_db", "postgres"),
        sink("billing_db", "postgres", "--map", "sinks/postgres/maps/billing_db.toml"),
        sink("vendors", "http", "--config", str(vendors), "--metrics-port", str(free_port())),
        sink("log_store", "logstore"),
        sink("backups", "backups"),
        sink("keys", "keys"),  # the key store's: destroys the keys of subjects with no copy left
    ]
    topics = Topics(settings.topic_prefix)
    running = EveryStore(
        settings,
        database,
        standin,
        children,
        TopicReader(settings, topics.decisions, codec_for(DECISION)),
        TopicReader(settings, topics.certificates),
    )
    yield running
    running.decisions.close()
    running.certificates.close()
    for child in children:
        child.stop()
    standin.stop()


EVERY_COPY = {
    "customer_db/client/7",
    "support_desk/client/7",
    "chat_vendor/client/7",
    "customer_db/domain_contact/71",
    "registry_norid/domain_contact/71",
    "customer_db/correspondence/720",
    "support_desk/correspondence/720",
    "hosting/hosted/site-7",
    "hosting_backups/hosted/site-7",
}


def test_a_closed_account_is_deleted_in_every_store_and_proven_with_a_signed_certificate(
    every_store: EveryStore, tmp_path: Path
) -> None:
    s = every_store
    s.standin.set_mode("chat_vendor", "fail", count=2)  # two 500s, then it answers: retried
    s.standin.set_mode("support_desk", "slow", delay=0.2)  # slow, within the timeout
    s.standin.set_mode("registry_norid", "down")  # 503 until it comes back
    with EventPublisher(s.settings) as publisher:
        for event in LIFE:
            publisher.publish(event)
        publisher.publish(logstore.announcement(LOG_DAY))
    tick(s.settings, datetime(2026, 2, 1, tzinfo=UTC))

    # Every copy but the registry's is confirmed; the registry is down.
    wait_until(
        lambda: s.has_confirmed(EVERY_COPY - {"registry_norid/domain_contact/71"}),
        WORKER_READY,
        "every store but the registry answered",
    )
    assert "registry_norid/domain_contact/71" not in s.confirmed()
    assert [r for r in s.certificates.poll() if r.key == SUBJECT.encode()] == []  # not every store answered

    # Past the registry's service level (7 days) the command is sent again and reported overdue.
    tick(s.settings, datetime(2026, 2, 9, tzinfo=UTC))
    wait_until(
        lambda: "DELETION_OVERDUE" in s.kinds("registry_norid/domain_contact/71"), 60, "overdue decision"
    )
    wait_until(
        lambda: s.worker_metric("ebbtide_deletions_overdue", store="registry_norid") == 1, 30, "overdue gauge"
    )
    listed = s.cli("overdue", "--json", "--store", "registry_norid")
    assert listed.returncode == 0, listed.stderr
    (row,) = revealed(json.loads(listed.stdout), "cust-00007")
    assert (row["subject"], row["record"], row["reissues"]) == (
        SUBJECT,
        "registry_norid/domain_contact/71",
        1,
    )

    # The registry comes back: the waiting command goes through, the overdue count recovers.
    s.standin.set_mode("registry_norid", "ok")
    wait_until(lambda: s.has_confirmed(EVERY_COPY), 60, "the registry answered")
    wait_until(
        lambda: s.worker_metric("ebbtide_deletions_overdue", store="registry_norid") == 0,
        30,
        "overdue recovered",
    )
    cleared = s.cli("overdue", "--json")
    assert cleared.returncode == 0 and json.loads(cleared.stdout) == [], cleared.stderr

    # Really gone everywhere (orders stay, anonymised, for bookkeeping).
    assert rows(s.dsn, "SELECT count(*) FROM customers WHERE customer_id = 7") == [(0,)]
    assert rows(s.dsn, "SELECT count(*) FROM services WHERE customer_id = 7") == [(0,)]
    assert rows(
        s.dsn, "SELECT customer_id, ordered_from_ip, contact_email FROM orders WHERE order_id = 700"
    ) == [(None, None, None)]
    assert rows(s.dsn, "SELECT count(*) FROM domain_contacts WHERE contact_id = 71") == [(0,)]
    assert rows(s.dsn, "SELECT count(*) FROM support_tickets WHERE ticket_id = 720") == [(0,)]
    for store, category in (
        ("support_desk", "client"),
        ("support_desk", "correspondence"),
        ("chat_vendor", "client"),
        ("registry_norid", "domain_contact"),
        ("hosting", "hosted"),
    ):
        assert s.standin.keys(store, category) == set(), f"{store} still holds {category}"
    assert s.standin.requests("chat_vendor", "DELETE") >= 3  # two failures, then the delete
    conn = psycopg2.connect(s.dsn)
    assert [p.name for p in logstore.list_partitions(conn)] == []  # the day's logs dropped
    conn.close()

    # One certificate, issued when the last store answered, lists every store's answer.
    wait_until(
        lambda: [r for r in s.certificates.poll() if r.key == SUBJECT.encode()], 30, "certificate published"
    )
    out = tmp_path / "certificates"
    got = s.cli("certificate", "get", SUBJECT, "--out", str(out))
    assert got.returncode == 0, got.stderr
    document = json.loads((out / "certificate-1.json").read_text())
    entries = {f"{e['store']}": e for e in document["certificate"]["entries"] if e["category"] == "hosted"}
    assert {e["record"] for e in revealed(document["certificate"]["entries"], SUBJECT)} == EVERY_COPY
    assert entries["hosting_backups"]["outcome"] == "EXPIRES"
    assert entries["hosting_backups"]["executed_at"] == "2026-03-31T00:00:00Z"
    assert (out / "certificate-1.html").read_text().count("hosting_backups") >= 1

    public = s.settings.signing_key.with_suffix(".pub")
    valid = s.cli("certificate", "verify", str(out / "certificate-1.json"), "--public-key", str(public))
    assert valid.returncode == 0 and valid.stdout.startswith("VALID"), valid.stdout + valid.stderr
    # Each entry embeds its store's signed receipt: with the sinks' keys, every store's word checks.
    assert all(e["receipt"] is not None for e in document["certificate"]["entries"])
    stores = str(s.settings.trusted_keys_dir)
    with_stores = s.cli(
        "certificate",
        "verify",
        str(out / "certificate-1.json"),
        "--public-key",
        str(public),
        "--store-keys",
        stores,
    )
    assert with_stores.returncode == 0 and "each store's receipt verified" in with_stores.stdout, (
        with_stores.stdout + with_stores.stderr
    )
    forged = json.loads(json.dumps(document))
    forged["certificate"]["entries"][0]["receipt"]["signed"]["rows"] += 1
    forged_path = tmp_path / "forged-receipt.json"
    forged_path.write_text(certificates.dumps(forged))
    refused = s.cli(
        "certificate", "verify", str(forged_path), "--public-key", str(public), "--store-keys", stores
    )
    first = forged["certificate"]["entries"][0]
    assert refused.returncode == 1, refused.stdout
    assert f"entry {first['store']!r}/{first['record']!r}: bad store receipt signature" in refused.stdout

    document["certificate"]["entries"][0]["outcome"] = (
        "NOT_FOUND" if document["certificate"]["entries"][0]["outcome"] != "NOT_FOUND" else "DELETED"
    )
    tampered = tmp_path / "tampered.json"
    tampered.write_text(certificates.dumps(document))
    refused = s.cli("certificate", "verify", str(tampered), "--public-key", str(public))
    assert refused.returncode == 1 and refused.stdout.startswith("INVALID"), refused.stdout
