"""A real Prometheus (Debian's) scrapes a real worker and postgres sink on the real broker and
database: the first dead letter and the first overdue duty of the worker's life fire
EbbtideDeadLetters and EbbtideDutyOverdue, and every query of the Grafana dashboard answers
(issue 13). One run, shared by the tests of this module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import processes
from tests.integration.test_prometheus import RealPrometheus

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
OWN_DATABASES = ROOT / "tests" / "e2e" / "own_databases.toml"
READY = 90.0  # a Faust worker joins its group and recovers its tables within this

# Customer 1 closed its account in 2020: its client record is deleted by 2023. Customer 2 asked
# for erasure in June 2021 without being verified, and nobody answered: a month later that duty
# is overdue. The tick of 2023-06-01 brings both.
SUBJECT_ROWS = """
    INSERT INTO customers VALUES (1, 'A', 'a@example.invalid', '1', 'x', '2019-01-10'),
                                 (2, 'B', 'b@example.invalid', '2', 'y', '2019-01-10');
"""


@dataclass
class Run:
    """The running processes, their Prometheus and what the run published."""

    settings: Settings
    prometheus: RealPrometheus
    worker: processes.Child
    sink: processes.Child

    def firing(self, alert: str) -> list[dict[str, str]]:
        answer = self.prometheus.get(
            "/api/v1/query?query=" + _quote(f'ALERTS{{alertname="{alert}",alertstate="firing"}}')
        )
        assert answer["status"] == "success", answer
        return [r["metric"] for r in answer["data"]["result"]]

    def alive(self) -> None:
        for child in (self.worker, self.sink):
            assert child.alive(), f"{child.name} died:\n{child.tail()}"


def _quote(expr: str) -> str:
    from urllib.parse import quote

    return quote(expr)


def _events() -> list[dict[str, object]]:
    from tests.e2e.test_pipeline import ev, written

    return [
        written("w1", "cust-00001", "2019-01-10T10:00:00Z", "client", "1"),
        ev("o1", "ServiceOrdered", "cust-00001", "2019-01-10T10:00:00Z", service_id="svc-1", kind="HOSTING"),
        ev("x1", "ServiceCancelled", "cust-00001", "2020-02-01T10:00:00Z", service_id="svc-1"),
        ev("c1", "AccountClosed", "cust-00001", "2020-02-01T10:00:00Z"),
        written("w2", "cust-00002", "2019-01-10T10:00:00Z", "client", "2"),
        ev("o2", "ServiceOrdered", "cust-00002", "2019-01-10T10:00:00Z", service_id="svc-2", kind="DOMAIN"),
        ev(
            "r2", "ErasureRequested", "cust-00002", "2021-06-01T10:00:00Z", request_id="req-1", verified=False
        ),
    ]


@pytest.fixture(scope="module")
def run(stack: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Prometheus scraping a worker and the customer_db sink every second; once it holds their
    series at 0, a bad event (the first dead letter) and the events and tick that bring the
    first overdue duty and a deletion are published."""
    from tests.e2e.test_pipeline import publish, tick
    from tests.support import (
        demo_database,
        drop_topics,
        make_topics,
        scratch_database,
        unique_settings,
        wait_until,
    )

    tmp = tmp_path_factory.mktemp("prometheus-run")
    with scratch_database(stack[1]) as dsn:
        demo_database(dsn, SUBJECT_ROWS)
        settings = replace(unique_settings(stack[0], tmp, dsn), store_map=OWN_DATABASES)
        make_topics(settings, ["customer_db", "billing_db"])
        prometheus = RealPrometheus(
            {"ebbtide-worker": settings.worker_metrics_port, "ebbtide-sink": settings.sink_metrics_port}, tmp
        )
        worker = processes.start("worker", ["worker"], settings, tmp / "logs")
        sink = processes.start("sink", ["sink", "postgres"], settings, tmp / "logs")
        running = Run(settings, prometheus, worker, sink)
        try:
            wait_until(prometheus.ready, 60, "prometheus to answer")
            # The zero series are scraped before anything happens: that is what lets increase()
            # see the first occurrence.
            zeros = (
                'ebbtide_duties_overdue_total{job="ebbtide-worker",duty="erasure"} == 0',
                'ebbtide_dlq_messages_total{job="ebbtide-worker",source="events",reason="invalid"} == 0',
            )
            for expr in zeros:
                wait_until(lambda e=expr: running.alive() or prometheus.query(e), READY, f"{expr} scraped")
            out = producer(settings)
            out.send(Topics(settings.topic_prefix).events, key=b"cust-00001", value=b'{"not": "avro"}')
            out.flush()
            out.close()
            publish(settings, _events())
            tick(settings, datetime(2023, 6, 1, tzinfo=UTC))
            yield running
        finally:
            for child in (worker, sink):
                child.stop()
            prometheus.stop()
            drop_topics(settings)


def test_the_first_dead_letter_and_the_first_overdue_duty_fire_their_alerts(run: Run) -> None:
    from tests.support import wait_until

    dead = wait_until(lambda: run.alive() or run.firing("EbbtideDeadLetters"), READY, "EbbtideDeadLetters")
    assert [(a["source"], a["reason"], a["severity"]) for a in dead] == [("events", "invalid", "warning")]
    late = wait_until(lambda: run.alive() or run.firing("EbbtideDutyOverdue"), READY, "EbbtideDutyOverdue")
    assert [(a["duty"], a["severity"]) for a in late] == [("erasure", "critical")]
    # The overdue duty is still open.
    assert run.prometheus.query('ebbtide_duties_open{duty="erasure"}') == {"ebbtide-worker": 1.0}
    # Each was the first of its kind: one dead letter, one overdue duty.
    assert run.prometheus.query('ebbtide_dlq_messages_total{source="events",reason="invalid"}') == {
        "ebbtide-worker": 1.0
    }
    assert run.prometheus.query('ebbtide_duties_overdue_total{duty="erasure"}') == {"ebbtide-worker": 1.0}
    # Nothing else is wrong in this run: no other alert of the shipped rules fires (the clock,
    # which ticked once, makes EbbtideClockStalled pending; it would fire after 5 minutes).
    alerts = run.prometheus.get("/api/v1/alerts")["data"]["alerts"]
    firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    assert firing == {"EbbtideDeadLetters", "EbbtideDutyOverdue"}


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the committed dashboard."""
    board = json.loads((GRAFANA / "ebbtide.json").read_text())
    return [
        (p["title"], t["expr"]) for p in board["panels"] if p["type"] != "row" for t in p.get("targets", [])
    ]


def test_every_panel_query_answers_from_the_real_run(run: Run) -> None:
    from tests.support import wait_until

    queries = panel_queries()
    assert len(queries) >= 20
    # The run's deletion went through: the per-store and per-partition series have values.
    wait_until(
        lambda: run.alive() or run.prometheus.query('ebbtide_receipts_total{outcome="DELETED"} > 0'),
        READY,
        "a deletion confirmed",
    )
    for title, expr in queries:
        promql = expr.replace("$__rate_interval", "1m")  # what Grafana puts there at a 15 s step
        wait_until(
            lambda q=promql: run.alive() or run.prometheus.query(q), 30, f"an answer to {title!r}: {promql}"
        )
