"""Recovery: how long a killed worker holding many pending deadlines takes to be back at work.

A worker builds up ``ctx.size.recovery_pending`` pending deadlines (one client record of a
closed account per subject; no tick is ever sent, so none falls due), commits, and is killed
with SIGKILL. A new worker with the same app id must recover its table from the changelog
and rebuild the due index before it processes anything new. The baseline is a worker with
an empty state starting and processing its first event, measured in the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from bench.common import Context, Figure
from bench.stamping import (
    CONSUMED,
    SLOW_POLL,
    Message,
    partition_of,
    publish,
    running,
    scratch,
    wait_metrics,
)
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import end_offsets, offsets_reader
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.tools import processes

NAME = "recovery"
PENDING = "ebbtide_pending_deadlines"
SESSION_TIMEOUT = 6.0  # seconds: how soon the killed member's partitions are given away
NAMESPACE = "io.ebbtide.events"
WRITTEN = datetime(2024, 1, 10, tzinfo=UTC)
CLOSED = datetime(2024, 6, 1, tzinfo=UTC)  # account clock: deadline 2027-06-01, never reached
# Faust's INFO log lines that mark the phases of a start: group joined, changelog read, ready.
PHASES = {
    "group_joined": "Joined group",
    "recovery_started": "Restoring state from changelog",
    "recovery_done": "Recovery complete",
    "worker_ready": "Worker ready",
}


def _event(event_id: str, subject: str, when: datetime, kind: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "subject_id": subject,
        "event_time": when,
        "producer": "bench",
        "payload": (f"{NAMESPACE}.{kind}", payload),
    }


def pending_events(subjects: int) -> list[Message]:
    """Two events per subject: a client record written, then the account closed."""
    codec = codec_for(LIFECYCLE_EVENT)
    out: list[Message] = []
    for n in range(subjects):
        subject = f"rec-{n:08d}"
        for event in (
            _event(
                f"{subject}-w",
                subject,
                WRITTEN,
                "RecordWritten",
                store="customer_db",
                category="CLIENT",
                record_key=str(n),
                ref=None,
            ),
            _event(f"{subject}-c", subject, CLOSED, "AccountClosed"),
        ):
            out.append((subject.encode(), codec.encode(event)))
    return out


def probes(partitions: int, label: str) -> list[Message]:
    """One new CustomerRegistered per partition (every partition must rebuild its index)."""
    codec = codec_for(LIFECYCLE_EVENT)
    found: dict[int, Message] = {}
    n = 0
    while len(found) < partitions:
        subject = f"probe-{label}-{n}"
        key = subject.encode()
        found.setdefault(
            partition_of(key, partitions),
            (key, codec.encode(_event(f"{subject}-r", subject, datetime.now(UTC), "CustomerRegistered"))),
        )
        n += 1
    return [found[p] for p in sorted(found)]


def _pending(samples: processes.Samples) -> float:
    return processes.total(samples, PENDING)


def wait_committed(settings: Settings, timeout: float) -> None:
    """Wait until the worker's group has committed every event (so nothing is replayed)."""
    topic = Topics(settings.topic_prefix).events
    reader = offsets_reader(settings)
    group = kafka.consumer(
        settings, client_id=None, group_id=settings.app_id, enable_auto_commit=False
    )  # never subscribes: only reads commits
    try:
        ends = end_offsets(reader, topic)
        deadline = time.monotonic() + timeout
        while True:
            committed = {p: group.committed(TopicPartition(topic, p)) or 0 for p in ends}
            if all(committed[p] >= end for p, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"offsets not committed after {timeout:.0f}s: {committed} < {ends}")
            time.sleep(0.2)
    finally:
        group.close()
        reader.close()


@dataclass(frozen=True)
class Restart:
    """Seconds from a worker's process start to each milestone."""

    metrics_up: float  # its /metrics endpoint answers
    first_event: float  # it has processed a new event published right after start
    all_pending: float  # it reports every pending deadline again (0.0 for an empty state)
    phases: dict[str, float]  # Faust's own milestones, from its INFO log (see PHASES)


def log_phases(log: Path, started: float) -> dict[str, float]:
    """Seconds from ``started`` (wall clock) to the first log line of each phase."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        for phase, marker in PHASES.items():
            if phase not in found and marker in line and line.startswith("["):
                stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")  # local time
                found[phase] = round(stamp.timestamp() - started, 3)
    return found


def start_and_probe(settings: Settings, label: str, target: int, timeout: float) -> Restart:
    """Start a worker, publish one new event per partition, time the milestones."""
    started, wall = time.perf_counter(), time.time()
    with running(f"worker-{label}", settings, "--loglevel", "info") as child:
        publish(settings, Topics(settings.topic_prefix).events, probes(settings.partitions, label))
        port = settings.worker_metrics_port
        up, _ = wait_metrics(child, port, lambda s: True, timeout)
        first, _ = wait_metrics(
            child, port, lambda s: processes.total(s, CONSUMED, type="CustomerRegistered") > 0, timeout
        )
        full = first
        if target:
            full, _ = wait_metrics(child, port, lambda s: _pending(s) >= target, timeout)
    return Restart(
        up - started, first - started, full - started if target else 0.0, log_phases(child.log, wall)
    )


def load_and_kill(settings: Settings, target: int, timeout: float) -> float:
    """Build up ``target`` pending deadlines in a worker, wait for its commit, SIGKILL it."""
    publish(settings, Topics(settings.topic_prefix).events, pending_events(target))
    started = time.perf_counter()
    with running("worker-loaded", settings) as child:
        done, _ = wait_metrics(
            child, settings.worker_metrics_port, lambda s: _pending(s) >= target, timeout, poll=SLOW_POLL
        )
        wait_committed(settings, 60.0 + target / 2000)  # the tail of a big load takes a while to commit
        child.kill()
    return done - started


def run(ctx: Context) -> list[Figure]:
    """Restart time of a killed worker with pending deadlines, against an empty worker's start."""
    target = ctx.size.recovery_pending
    timeout = 120 + target / 200
    ctx.report(f"{NAME}: empty worker (baseline), session timeout {SESSION_TIMEOUT}s")
    with scratch(ctx, f"{NAME}-empty", session_timeout=SESSION_TIMEOUT) as settings:
        empty = start_and_probe(settings, "empty", 0, timeout)
    ctx.report(f"{NAME}: empty worker processed its first event after {empty.first_event:.2f}s")
    with scratch(ctx, NAME, session_timeout=SESSION_TIMEOUT, worker_instance_id="bench-recovery") as settings:
        ctx.report(f"{NAME}: loading {target:,} pending deadlines ({2 * target:,} events)")
        loaded = load_and_kill(settings, target, timeout)
        ctx.report(f"{NAME}: loaded in {loaded:.1f}s, killed (SIGKILL); restarting")
        back = start_and_probe(settings, "restart", target, timeout)
    ctx.report(f"{NAME}: back after {back.first_event:.2f}s, all pending after {back.all_pending:.2f}s")
    baseline = "a worker with an empty state (fresh app id): process start to first event processed"
    notes = (
        f"{target:,} pending deadlines ({2 * target:,} events, changelog of the state table "
        f"holds about {4 * target:,} writes), killed with SIGKILL after its offsets were "
        f"committed; session_timeout={SESSION_TIMEOUT}s, static membership "
        f"(worker_instance_id) for the restarted worker, --loglevel info for both; "
        f"new worker's /metrics up after {back.metrics_up:.2f}s (empty: {empty.metrics_up:.2f}s); "
        f"the loaded worker took {loaded:.1f}s to consume the {2 * target:,} events; "
        f"restart phases (s from process start, Faust log): {back.phases}"
    )
    extra = {
        "pending": target,
        "session_timeout_s": SESSION_TIMEOUT,
        "load_seconds": loaded,
        "restart": vars(back),
        "empty": vars(empty),
    }
    return [
        Figure(
            NAME,
            "restart to a new event processed",
            back.first_event,
            "s",
            baseline,
            empty.first_event,
            higher_is_better=False,
            notes=notes,
            extra=extra,
        ),
        Figure(
            NAME,
            "restart to every pending deadline reported",
            back.all_pending,
            "s",
            baseline,
            empty.first_event,
            higher_is_better=False,
            notes=notes,
            extra=extra,
        ),
    ]
