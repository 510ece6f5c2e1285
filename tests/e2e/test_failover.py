"""A real cluster, not one node: three KRaft brokers (deploy/local/kafka-cluster.sh), every topic
of the project (the worker's Faust changelog and leader topic too) made by ``topics apply`` at the
production values, replication factor 3 and min.insync.replicas=2, and ``topics check`` clean.
The broker that leads the most partitions is killed (SIGKILL) in the middle of a run with an
accelerated clock; publishing, stamping and deletion go on, and the chaos run's ledger finds every
due record deleted exactly once and no genuine message refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ebbtide.runtime.settings import Settings
from ebbtide.tools import processes
from ebbtide.tools import topics as project_topics
from ebbtide.tools.topics import cluster as topics_cluster
from tests.e2e.kafka_cluster import MIN_INSYNC, NODES, REPLICATION, LocalCluster, describe, leaders
from tests.e2e.ledger_run import LedgerRun, LoggedPipeline, failures
from tests.e2e.test_pipeline import OWN_DATABASES, WORKER_READY, Pipeline
from tests.support import unique_settings, wait_until

CUSTOMERS = 20
UNTIL = datetime(2031, 1, 1, tzinfo=UTC)
STEP_DAYS = 90
SESSION_TIMEOUT = 20.0
SETTLE = 120.0  # seconds the pipeline may take to finish after the last tick (failover included)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three brokers of this test's own on free ports; every node killed afterwards (its data is
    thrown away with the test's directory), also when the start fails half way."""
    running = LocalCluster(tmp_path / "cluster")
    try:
        running.start()
        yield running
    finally:
        running.kill()


def applied_topics(settings: Settings) -> list[str]:
    """Every topic of the project made by ``topics apply`` as the settings declare them; ``topics
    check`` finds nothing to report afterwards. Their names."""
    specs = project_topics.declared(settings)
    assert {spec.replication_factor for spec in specs} == {REPLICATION}
    applied = topics_cluster.apply(settings, specs, timeout=60.0)
    assert applied.differences == [], applied.differences
    assert topics_cluster.check(settings, specs).differences == []
    return [spec.name for spec in specs]


def test_killing_the_busiest_broker_mid_run_loses_no_deletion_and_repeats_none(
    cluster: LocalCluster, database: str, tmp_path: Path
) -> None:
    settings = unique_settings(cluster.bootstrap, tmp_path / "state", database)
    # The production default session timeout (30 s) rides out a group coordinator's failover; the
    # tests' 6 s does not (a node is fenced after 6 s, then its partitions move), and a client that
    # gives up its session then rejoins mid-failover (librdkafka may fence its own static member).
    settings = replace(
        settings,
        store_map=OWN_DATABASES,
        session_timeout=SESSION_TIMEOUT,
        topic_replication_factor=REPLICATION,
        topic_min_insync_replicas=MIN_INSYNC,
    )
    topics = applied_topics(settings)
    run = LedgerRun.prepare(settings, database, CUSTOMERS, UNTIL, STEP_DAYS)
    pipeline = LoggedPipeline(settings, tmp_path / "logs")  # the topics exist: it creates none
    try:
        half = len(run.ticks) // 2
        run.publish(half)
        wait_until(lambda: commands_sent(settings), WORKER_READY, "the first deletion commands")
        victim, led = leaders(settings, topics).most_common(1)[0]
        cluster.kill(victim)  # while the pipeline works on the first half
        run.publish(len(run.ticks) - half)  # its partitions' leaders move to the two others
        run.wait_settled([settings.worker_metrics_port], SETTLE, lambda: logs(pipeline))
        verdict = run.verdict()
        for child in (pipeline.worker, pipeline.sink, pipeline.billing):
            assert child.alive(), f"the {child.name} died with the broker:\n{child.tail()}"
    finally:
        pipeline.stop()
    assert verdict.passed, failures(run, verdict)
    assert verdict.counts["copies_due"] > 50, verdict.counts
    assert verdict.counts["copies_gone"] == verdict.counts["copies_due"], verdict.counts
    # Every partition the victim led (``led`` of them) has a leader among the two brokers left, and
    # all three still hold a replica of each.
    partitions = describe(settings, topics)
    assert {p["leader_id"] for p in partitions} <= set(NODES) - {victim}, (led, partitions)
    assert {len(p["replica_nodes"]) for p in partitions} == {REPLICATION}


def commands_sent(settings: Settings) -> bool:
    return processes.total(processes.scrape(settings.worker_metrics_port), "ebbtide_commands_sent_total") > 0


def logs(pipeline: Pipeline) -> str:
    return "\n".join(
        f"--- {child.name} ---\n{child.tail()}"
        for child in (pipeline.worker, pipeline.sink, pipeline.billing)
    )
