"""One subject through erasure with a bookkeeping exception and a legal hold, on the real broker,
explained by `ebbtide explain` from the running worker and from its changelog."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ebbtide.runtime.settings import Settings
from ebbtide.schemas import ERASURE_ANSWER, codec_for
from ebbtide.tools import processes
from tests.e2e.test_pipeline import Pipeline, ev, publish, rows, tick, written
from tests.support import SEALED_WITH, TopicReader, demo_database

LIFE = [
    written("w1", "cust-00001", "2019-01-10T10:00:00Z", "client", "1"),
    ev("o1", "ServiceOrdered", "cust-00001", "2019-01-10T10:00:00Z", service_id="svc-1", kind="HOSTING"),
    ev("i1", "InvoiceIssued", "cust-00001", "2019-05-01T10:00:00Z", invoice_id="inv-10"),
    written("w2", "cust-00001", "2019-05-01T10:00:00Z", "invoice", "10", ref="inv-10"),
    written("w3", "cust-00001", "2019-06-01T10:00:00Z", "correspondence", "20"),
    written("w4", "cust-00001", "2019-01-10T10:00:00Z", "marketing", "30", ref="newsletter"),
    ev("x1", "ServiceCancelled", "cust-00001", "2020-02-01T10:00:00Z", service_id="svc-1"),
    ev("c1", "AccountClosed", "cust-00001", "2020-02-01T10:00:00Z"),
    ev(
        "h1",
        "LegalHoldPlaced",
        "cust-00001",
        "2020-06-01T10:00:00Z",
        hold_id="court-7",
        categories=["correspondence"],
        records=[],
    ),
    ev("r1", "ErasureRequested", "cust-00001", "2021-06-01T10:00:00Z", request_id="req-1", verified=True),
]


@pytest.fixture
def one_customer(database: str) -> str:
    return demo_database(
        database,
        """
        INSERT INTO customers VALUES (1, 'A', 'a@example.invalid', '1', 'x', '2019-01-10');
        INSERT INTO services VALUES (1, 1, 'HOSTING', '2019-01-10', '2020-02-01');
        INSERT INTO billing.invoices VALUES (10, 1, 'A', 'x', 100, '2019-05-01');
        INSERT INTO support_tickets VALUES (20, 1, 's', 'b', '2019-06-01');
        INSERT INTO newsletter_subscriptions VALUES (30, 1, 'a@example.invalid', '2019-01-10');
    """,
    )


def explain(settings: Settings, source: str, subject: str = "cust-00001") -> dict[str, Any]:
    """`ebbtide explain SUBJECT --json --reveal` (its sealed record keys opened with its key from
    the key store), from the running worker or from its changelog."""
    done = subprocess.run(
        [sys.executable, "-m", "ebbtide", "explain", subject, "--json", "--reveal", "--source", source],
        env=processes.settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {r["record"]: r["status"] for r in report["records"]}


def test_erasure_with_a_bookkeeping_exception_and_a_legal_hold(
    settings: Settings, one_customer: str, pipeline: Pipeline
) -> None:
    sealed_before = set(SEALED_WITH)  # other tests' keys of other key stores (same subject ids)
    publish(settings, LIFE)
    tick(settings, datetime(2021, 6, 2, tzinfo=UTC))
    pipeline.wait_confirmed({"customer_db/marketing/30"})  # erased now: nothing obliges us to keep it

    answers = TopicReader(settings, pipeline.topics.answers, codec_for(ERASURE_ANSWER))
    (answer,) = [r.value for r in answers.wait_for(lambda seen: len(seen) >= 1, 30, "the erasure answer")]
    answers.close()
    assert answer is not None
    items = {i["record"]: i for i in answer["items"]}
    assert items["customer_db/marketing/30"]["action"] == "DELETE"
    invoice = items["billing_db/invoice/10"]
    assert (invoice["action"], invoice["rule_id"], invoice["until"]) == (
        "KEEP",
        "bookkeeping",
        "2024-12-31T23:00:00Z",  # 1 January 2025 00:00 in Oslo
    )
    assert "17(3)(b)" in invoice["basis"]

    report = explain(settings, "worker")
    assert statuses(report) == {
        "customer_db/client/1": "restricted",
        "customer_db/correspondence/20": "held",
        "billing_db/invoice/10": "restricted",
        "customer_db/marketing/30": "deleted",
    }
    assert [d["status"] for d in report["duties"]] == ["done"]

    tick(settings, datetime(2023, 3, 1, tzinfo=UTC))  # account deadline 2023-02-01 passes, hold in force
    pipeline.wait_confirmed({"customer_db/client/1"})
    assert rows(one_customer, "SELECT ticket_id FROM support_tickets") == [(20,)]

    publish(
        settings, [ev("h2", "LegalHoldReleased", "cust-00001", "2023-06-01T10:00:00Z", hold_id="court-7")]
    )
    tick(settings, datetime(2023, 6, 2, tzinfo=UTC))
    pipeline.wait_confirmed({"customer_db/correspondence/20"})  # its deadline passed during the hold
    assert rows(one_customer, "SELECT count(*) FROM billing.invoices") == [(1,)]  # bookkeeping still runs

    tick(settings, datetime(2025, 1, 2, tzinfo=UTC))
    pipeline.wait_confirmed({"billing_db/invoice/10"})
    for table in ("customers", "billing.invoices", "support_tickets", "newsletter_subscriptions"):
        assert rows(one_customer, f"SELECT count(*) FROM {table}") == [(0,)]

    # No copy is left: the subject's data key is shredded, and the key store's sink confirms it.
    (key_id,) = {key_id for subject, key_id in set(SEALED_WITH) - sealed_before if subject == "cust-00001"}
    pipeline.wait_confirmed({f"keys/key/{key_id}"})
    final = explain(settings, "changelog")  # the same answer without the worker, from Kafka
    assert set(statuses(final).values()) == {"deleted"}
    assert final["clock"] == "2025-01-02T00:00:00Z"


def test_policy_diff_counts_how_the_live_deadlines_move(
    settings: Settings, one_customer: str, pipeline: Pipeline, tmp_path: Path
) -> None:
    from ebbtide.streams.policy.rules import DEFAULT_POLICY
    from tests.support import wait_until

    publish(settings, LIFE[:8])  # a closed account: client, invoice, ticket, newsletter
    longer = tmp_path / "longer.toml"
    longer.write_text(DEFAULT_POLICY.read_text().replace("keep = { years = 5 }", "keep = { years = 7 }"))

    def diff() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "ebbtide", "policy", "diff", str(DEFAULT_POLICY), str(longer), "--state"],
            env=processes.settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout if done.returncode == 0 else ""

    out = wait_until(
        lambda: (text := diff()) and "4 pending records" in text and text,
        60,
        "the worker's state in its changelog",
    )
    assert "rule bookkeeping: keep" in out
    assert "later: 1" in out and "unchanged: 3" in out and "clock starts: 0" in out
