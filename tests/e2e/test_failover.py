"""A real cluster, not one node: three KRaft brokers (deploy/local/kafka-cluster.sh), every topic
of the pipeline at replication factor 3 and min.insync.replicas=2, the worker's Faust changelog
too. The broker that leads the most partitions is killed (SIGKILL) in the middle of a run with an
accelerated clock; publishing, stamping and deletion go on, and the chaos run's ledger finds every
due record deleted exactly once and no genuine message refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ebbtide import bootstrap
from ebbtide.runtime.kafka import pipeline_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import processes
from tests.e2e.kafka_cluster import NODES, REPLICATION, LocalCluster, create_replicated, describe, leaders
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


def replicated_topics(settings: Settings) -> dict[str, int]:
    """The pipeline's topics and the worker's own (Faust's table changelog and its leader topic,
    which it would otherwise make at replication factor 1): name and partition count."""
    stores = bootstrap.store_map(settings).ids
    names = {name: settings.partitions for name in pipeline_topics(Topics(settings.topic_prefix), stores)}
    names[f"{settings.app_id}-state-changelog"] = settings.partitions
    names[f"{settings.app_id}-__assignor-__leader"] = 1
    return names


def test_killing_the_busiest_broker_mid_run_loses_no_deletion_and_repeats_none(
    cluster: LocalCluster, database: str, tmp_path: Path
) -> None:
    settings = unique_settings(cluster.bootstrap, tmp_path / "state", database)
    # The production default session timeout (30 s) rides out a group coordinator's failover; the
    # tests' 6 s does not (a node is fenced after 6 s, then its partitions move), and a client that
    # gives up its session then rejoins mid-failover (librdkafka may fence its own static member).
    settings = replace(settings, store_map=OWN_DATABASES, session_timeout=SESSION_TIMEOUT)
    topics = replicated_topics(settings)
    create_replicated(settings, topics, compacted=[f"{settings.app_id}-state-changelog"])
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
