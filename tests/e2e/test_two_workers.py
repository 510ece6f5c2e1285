"""Several workers at once, on the real broker: two worker processes of one app, each with its own
static member id, share the partitions of one run with an accelerated clock. One leaves with
SIGTERM mid-run, and the other takes its partitions; then the first comes back and the other is
killed with SIGKILL while it joins. The chaos run's ledger then finds every due record deleted
exactly once, none too early, and no genuine message dead-lettered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from chaos.cluster import second_worker
from ebbtide.runtime.settings import Settings
from ebbtide.streams.worker.batch import EXIT_BATCH_FAILED
from ebbtide.tools import processes
from tests.e2e.ledger_run import LedgerRun, LoggedPipeline, failures
from tests.e2e.test_pipeline import OWN_DATABASES, WORKER_READY
from tests.support import wait_until

CUSTOMERS = 16
UNTIL = datetime(2031, 1, 1, tzinfo=UTC)
STEP_DAYS = 90
SETTLE = 120.0  # seconds a worker may take to finish the work of both after the last tick


def held(port: int) -> set[str]:
    """The partitions a worker reports a clock for: those it holds (a lost one's series goes)."""
    return {
        dict(labels)["partition"] for labels in processes.scrape(port).get("ebbtide_clock_time_seconds", {})
    }


def commands_sent(*ports: int) -> bool:
    return any(processes.total(processes.scrape(p), "ebbtide_commands_sent_total") > 0 for p in ports)


def test_two_workers_one_stopped_then_the_other_killed_delete_every_due_record_once(
    settings: Settings, database: str, tmp_path: Path
) -> None:
    first = replace(settings, store_map=OWN_DATABASES, worker_instance_id="worker-a")
    run = LedgerRun.prepare(first, database, CUSTOMERS, UNTIL, STEP_DAYS)
    logs = tmp_path / "logs"
    pipeline = LoggedPipeline(first, logs)  # worker A and the two databases' sinks
    # Worker B: the same app and keys, its own state directory, ports and member id.
    second = replace(second_worker(pipeline.settings, tmp_path), worker_instance_id="worker-b")
    a_port, b_port = first.worker_metrics_port, second.worker_metrics_port
    b = processes.start("worker-b", ["worker", "--loglevel", "INFO"], second, logs)
    try:
        third = len(run.ticks) // 3
        run.publish(third)
        wait_until(
            lambda: held(a_port) and held(b_port) and len(held(a_port) | held(b_port)) == first.partitions,
            WORKER_READY,
            "both workers holding partitions",
        )
        wait_until(lambda: commands_sent(a_port, b_port), WORKER_READY, "the first deletion commands")

        # Phase 1: B leaves with SIGTERM in the middle of the run; A takes its partitions.
        # 0, or EXIT_BATCH_FAILED if the signal cut a batch short (dropped, to be replayed).
        assert b.stop() in (0, EXIT_BATCH_FAILED), f"worker B failed on SIGTERM:\n{b.tail()}"
        run.publish(third)
        run.wait_settled([a_port], SETTLE, pipeline.worker.tail)
        assert held(a_port) == {str(p) for p in range(first.partitions)}

        # Phase 2: B starts again and A is killed (SIGKILL) while B joins and A is at work.
        b = processes.start("worker-b", ["worker", "--loglevel", "INFO"], second, logs)
        run.publish(2)
        pipeline.worker.kill()
        run.publish(len(run.ticks) - run.ticked)
        run.wait_settled([b_port], SETTLE, b.tail)
        verdict = run.verdict()
    finally:
        b.stop()
        pipeline.stop()
    assert verdict.passed, failures(run, verdict)
    assert verdict.counts["copies_due"] > 50, verdict.counts
    assert verdict.counts["copies_gone"] == verdict.counts["copies_due"], verdict.counts
