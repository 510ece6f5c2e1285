"""Seed promises about who holds a copy and who is told to delete it, end to end on every store of
the shipped store map (worker, sinks and the vendor stand-in as processes on the real broker and
database): .nu domains are registered through Realtime Register, a domain transferred out stays
with its registry, Trustpilot's review invitations go when the customer unsubscribes, and hosted
data goes at the end of the paid period whether or not it was exported.

Each test follows one customer of its own through the `every_store` pipeline of
:mod:`tests.e2e.test_every_store`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

from ebbtide.runtime.settings import Topics
from ebbtide.schemas import DECISION, DELETION_COMMAND, codec_for
from ebbtide.sinks.backups import catalogue as backups
from ebbtide.streams.engine.shredding import KEY_STORE
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.tools.state_reader import StateUnavailable, read_to_end, subject_from_worker
from tests.e2e.test_every_store import WORKER_READY, EveryStore, every_store
from tests.e2e.test_pipeline import ev, publish, rows, tick
from tests.support import revealed, wait_until

__all__ = ["every_store"]  # the fixture, imported to be used here


def announced(
    subject: str, event_id: str, when: str, store: str, category: str, key: str, ref: str
) -> dict[str, Any]:
    """A store announces that it holds record ``key`` of ``category`` for ``subject``."""
    return ev(
        event_id, "RecordWritten", subject, when, store=store, category=category, record_key=key, ref=ref
    )


def load(dsn: str, sql: str) -> None:
    """Rows the customer database holds before the pipeline hears of them."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def commands_to(s: EveryStore, store: str, subject: str) -> list[dict[str, Any]]:
    """Every deletion command the store's topic holds for ``subject``, read to its current end."""
    codec = codec_for(DELETION_COMMAND)
    topic = Topics(s.settings.topic_prefix).commands(store)
    return [
        revealed(codec.decode(m.value))
        for m in read_to_end(s.settings, topic, missing=f"no command topic for {store}")
        if m.key == subject.encode()
    ]


def ticked(s: EveryStore, subject: str, when: datetime) -> None:
    """Tick the pipeline clock to ``when`` and wait until the subject's partition has taken the
    tick (the worker publishes a tick's commands before it records the new clock)."""
    tick(s.settings, when)

    def taken() -> bool:
        s.alive()
        try:
            return subject_from_worker(s.settings, subject)[1] == to_ms(when)
        except StateUnavailable:  # the worker's web server is not up yet
            return False

    wait_until(taken, WORKER_READY, f"the worker's clock at {when:%Y-%m-%d}")


def explained(s: EveryStore, subject: str) -> dict[str, Any]:
    """The subject's explain report, its sealed values opened as this test published them; without
    the key store's copy of its data key (key shredding: tests/e2e/test_sealed_log.py)."""
    done = s.cli("explain", subject, "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = revealed(json.loads(done.stdout), subject)
    report["records"] = [r for r in report["records"] if not r["record"].startswith(f"{KEY_STORE}/")]
    return report


def stamped(s: EveryStore, subject: str) -> set[str]:
    """The copies the worker has stamped for ``subject`` so far: where the policy says it is held."""
    codec = codec_for(DECISION)
    topic = Topics(s.settings.topic_prefix).decisions
    return {
        decision["record"]
        for decision in (revealed(codec.decode(m.value)) for m in read_to_end(s.settings, topic))
        if decision["subject_id"] == subject and decision["kind"] == "STAMPED"
    }


# --- seed 001 "How we share" / seed 003 Vedlegg 2: .nu goes through Realtime Register -----------

NU_CUSTOMER = "cust-00041"


def test_seed_001_how_we_share_nu_goes_to_realtime_register(every_store: EveryStore) -> None:
    s = every_store
    load(
        s.dsn,
        "INSERT INTO domain_contacts VALUES (4101, 41, 'example.nu', 'Ola', 'ola@example.invalid', "
        "NULL, '2024-03-01')",
    )
    s.standin.seed("registry_rtr", "domain_contact", "4101")
    publish(
        s.settings,
        [
            ev("nu-reg", "DomainRegistered", NU_CUSTOMER, "2024-03-01T10:00:00Z", domain="example.nu"),
            announced(
                NU_CUSTOMER,
                "nu-w",
                "2024-03-01T10:00:00Z",
                "customer_db",
                "domain_contact",
                "4101",
                "example.nu",
            ),
            ev(
                "nu-rel",
                "DomainReleased",
                NU_CUSTOMER,
                "2025-03-01T10:00:00Z",
                domain="example.nu",
                how="EXPIRED",
            ),
        ],
    )
    ticked(s, NU_CUSTOMER, datetime(2025, 4, 2, tzinfo=UTC))  # past the 30-day grace

    ours, registrar = "customer_db/domain_contact/4101", "registry_rtr/domain_contact/4101"
    wait_until(lambda: s.has_confirmed({ours}), WORKER_READY, "our copy deleted")
    assert stamped(s, NU_CUSTOMER) == {ours, registrar}  # the registrant data: ours and RTR's only
    wait_until(lambda: s.has_confirmed({registrar}), 30, "Realtime Register's copy deleted")

    (command,) = commands_to(s, "registry_rtr", NU_CUSTOMER)
    assert (command["store"], command["category"], command["record_key"], command["rule_id"]) == (
        "registry_rtr",
        "domain_contact",
        "4101",
        "domain",
    )
    assert commands_to(s, "registry_nicse", NU_CUSTOMER) == []  # NIC.SE registers .se only
    assert s.standin.requests("registry_nicse") == 0
    assert "4101" not in s.standin.keys("registry_rtr", "domain_contact")
    assert rows(s.dsn, "SELECT count(*) FROM domain_contacts WHERE contact_id = 4101") == [(0,)]


# --- seed 001 "Data portability": a domain transferred out stays registered, with its registry ---

MOVING_CUSTOMER = "cust-00042"
MOVED = "kari-flytter.no"


def test_seed_001_data_portability_a_transferred_domain_is_never_deleted_at_its_registry(
    every_store: EveryStore,
) -> None:
    s = every_store
    load(
        s.dsn,
        f"INSERT INTO domain_contacts VALUES (4201, 42, '{MOVED}', 'Kari', 'kari@example.invalid', "
        "'01017012345', '2024-03-01')",
    )
    s.standin.seed("registry_norid", "domain_contact", "4201")
    publish(
        s.settings,
        [
            ev("mv-reg", "DomainRegistered", MOVING_CUSTOMER, "2024-03-01T10:00:00Z", domain=MOVED),
            announced(
                MOVING_CUSTOMER,
                "mv-w",
                "2024-03-01T10:00:00Z",
                "customer_db",
                "domain_contact",
                "4201",
                MOVED,
            ),
            ev(
                "mv-out",
                "DomainReleased",
                MOVING_CUSTOMER,
                "2025-03-01T10:00:00Z",
                domain=MOVED,
                how="TRANSFERRED_OUT",
            ),
        ],
    )
    ticked(s, MOVING_CUSTOMER, datetime(2025, 4, 2, tzinfo=UTC))  # past the 30-day grace

    # Our copy goes at its deadline...
    wait_until(lambda: s.has_confirmed({"customer_db/domain_contact/4201"}), WORKER_READY, "our copy deleted")
    assert rows(s.dsn, "SELECT count(*) FROM domain_contacts WHERE contact_id = 4201") == [(0,)]

    # ...and the registry is never told to delete: not at the deadline, nor past its service level.
    ticked(s, MOVING_CUSTOMER, datetime(2025, 6, 1, tzinfo=UTC))
    assert commands_to(s, "registry_norid", MOVING_CUSTOMER) == []
    assert s.standin.requests("registry_norid") == 0
    assert "4201" in s.standin.keys("registry_norid", "domain_contact")  # still registered there
    registry_copy = "registry_norid/domain_contact/4201"
    assert not {"DELETION_ORDERED", "DELETION_OVERDUE"} & set(s.kinds(registry_copy))

    report = explained(s, MOVING_CUSTOMER)
    status = {r["record"]: r["status"] for r in report["records"]}
    assert status == {"customer_db/domain_contact/4201": "deleted", registry_copy: "transferred"}
    (why,) = next(r["why"] for r in report["records"] if r["record"] == registry_copy)
    assert "transferred out" in why and "Data portability" in why


# --- seed 001 "How we share" + seed 000 "Trustpilot A/S": you can unsubscribe at any time ------

REVIEWED_CUSTOMER = "cust-00043"


def test_seed_000_trustpilot_unsubscribing_deletes_the_review_invitation_at_trustpilot(
    every_store: EveryStore, tmp_path: Path
) -> None:
    s = every_store
    s.standin.seed("review_vendor", "marketing", "4301")
    publish(
        s.settings,
        [
            ev(
                "tp-yes",
                "ConsentGiven",
                REVIEWED_CUSTOMER,
                "2024-05-01T10:00:00Z",
                purpose="review_invitation",
            ),
            announced(
                REVIEWED_CUSTOMER,
                "tp-w",
                "2024-05-01T10:00:00Z",
                "review_vendor",
                "marketing",
                "4301",
                "review_invitation",
            ),
            ev(
                "tp-no",
                "ConsentWithdrawn",
                REVIEWED_CUSTOMER,
                "2025-02-01T10:00:00Z",
                purpose="review_invitation",
            ),
        ],
    )
    ticked(s, REVIEWED_CUSTOMER, datetime(2025, 2, 2, tzinfo=UTC))

    invitation = "review_vendor/marketing/4301"
    assert stamped(s, REVIEWED_CUSTOMER) == {invitation}  # Trustpilot's; our newsletter tool never held it
    wait_until(lambda: s.has_confirmed({invitation}), WORKER_READY, "Trustpilot's copy deleted")
    assert "4301" not in s.standin.keys("review_vendor", "marketing")
    assert s.standin.requests("review_vendor", "DELETE") == 1
    assert commands_to(s, "customer_db", REVIEWED_CUSTOMER) == []

    # The signed certificate names Trustpilot's deletion, and verifies.
    wait_until(
        lambda: [r for r in s.certificates.poll() if r.key == REVIEWED_CUSTOMER.encode()],
        30,
        "certificate published",
    )
    out = tmp_path / "certificates"
    got = s.cli("certificate", "get", REVIEWED_CUSTOMER, "--out", str(out))
    assert got.returncode == 0, got.stderr
    document = json.loads((out / "certificate-1.json").read_text())
    assert document["certificate"]["subject_id"] == REVIEWED_CUSTOMER
    (entry,) = revealed(document["certificate"]["entries"], REVIEWED_CUSTOMER)
    assert (entry["store"], entry["record"], entry["rule_id"], entry["outcome"]) == (
        "review_vendor",
        invitation,
        "marketing",
        "DELETED",
    )
    public = s.settings.signing_key.with_suffix(".pub")
    valid = s.cli("certificate", "verify", str(out / "certificate-1.json"), "--public-key", str(public))
    assert valid.returncode == 0 and valid.stdout.startswith("VALID"), valid.stdout + valid.stderr
    # ... and Trustpilot's own signed receipt in it verifies with the vendor sink's key.
    assert entry["receipt"]["signed"]["store"] == "review_vendor"
    valid = s.cli(
        "certificate",
        "verify",
        str(out / "certificate-1.json"),
        "--public-key",
        str(public),
        "--store-keys",
        str(s.settings.trusted_keys_dir),
    )
    assert valid.returncode == 0 and "each store's receipt verified (review_vendor)" in valid.stdout, (
        valid.stdout + valid.stderr
    )


# --- seed 003 section 13, last paragraph: data not exported is the customer's loss --------------

HOSTED_CUSTOMER = "cust-00044"
AGREEMENT = "agr-44"
PAID_UNTIL = "2025-06-30T22:00:00Z"  # 1 July 00:00 in Oslo


def test_seed_003_section_13_data_not_exported_is_deleted_when_the_paid_period_ends(
    every_store: EveryStore,
) -> None:
    s = every_store
    s.standin.seed("hosting", "hosted", "site-44")
    conn = psycopg2.connect(s.dsn)
    try:
        backups.take_backup(
            conn,
            "daily-2025-06-15",
            datetime(2025, 6, 15, tzinfo=UTC),
            datetime(2025, 9, 15, tzinfo=UTC),
            [("hosted", "site-44")],
        )
    finally:
        conn.close()
    publish(
        s.settings,
        [
            ev(
                "hs-o",
                "ServiceOrdered",
                HOSTED_CUSTOMER,
                "2024-02-01T10:00:00Z",
                service_id="440",
                kind="HOSTING",
            ),
            announced(
                HOSTED_CUSTOMER, "hs-w", "2024-02-01T10:00:00Z", "hosting", "hosted", "site-44", AGREEMENT
            ),
            ev(
                "hs-end",
                "HostingAgreementTerminated",
                HOSTED_CUSTOMER,
                "2025-05-01T10:00:00Z",
                agreement_id=AGREEMENT,
                paid_until=PAID_UNTIL,
            ),
            # No ExportOffered: the export was never offered.
        ],
    )
    ticked(s, HOSTED_CUSTOMER, datetime(2025, 7, 1, 12, tzinfo=UTC))

    # The data goes all the same, backups included...
    copies = {"hosting/hosted/site-44", "hosting_backups/hosted/site-44"}
    wait_until(lambda: s.has_confirmed(copies), WORKER_READY, "the hosted data and its backups answered")
    assert "site-44" not in s.standin.keys("hosting", "hosted")

    # ...and the missed export is reported as an overdue duty, counted and explained.
    duty = f"duty/export/{AGREEMENT}"
    wait_until(lambda: "DUTY_OVERDUE" in s.kinds(duty), 30, "the export duty reported overdue")
    assert "DUTY_DONE" not in s.kinds(duty)
    wait_until(
        lambda: s.worker_metric("ebbtide_duties_overdue_total", duty="export") >= 1,
        30,
        "ebbtide_duties_overdue_total{duty=export}",
    )
    report = explained(s, HOSTED_CUSTOMER)
    (export,) = [d for d in report["duties"] if d["duty"] == f"export/{AGREEMENT}"]
    assert (export["status"], export["due"], export["done_at"]) == ("overdue", PAID_UNTIL, None)
    status = {r["record"]: r["status"] for r in report["records"]}
    assert status == {"hosting/hosted/site-44": "deleted", "hosting_backups/hosted/site-44": "expiring"}
