"""Recovery: how long a killed worker holding many pending deadlines takes to be back at work.

A worker builds up ``ctx.size.recovery_pending`` pending deadlines (one client record of a
closed account per subject; no tick is ever sent, so none falls due), commits, and is killed
with SIGKILL. Then, with the same app id (so the same group and changelog), one after the other:

- **same host**: a worker on the killed one's state dir (the on-disk store, EBBTIDE_STATE_STORE
  rocksdb) opens its partition databases and reads only the changelog written after them;
- **fresh host**: a worker on an empty state dir reads the whole changelog into its databases;
- **memory store**: a worker with EBBTIDE_STATE_STORE=memory (the store before issue 15) reads
  and decodes the whole changelog into RAM (up to ``MEMORY_STORE_MAX`` pending; past that it
  would take minutes and says nothing new).

Each must start its due index and counts (the on-disk store: from the digest kept beside the
states, ``streams.worker.digest``, derived by the bulk read on a fresh host; the memory store: a
rebuild from every state) and process a new event. Baselines from the same run: a worker
with an empty state (its start alone), and the ceiling of a changelog read, a bare aiokafka
consumer reading the same changelog from its start to its end (records and seconds). Each
worker's peak resident memory (VmHWM) is reported beside its times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from bench.changelog import Ceiling, read_to_end
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
from ebbtide.tools.processes import free_port

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
SAME_HOST_GOAL = 15.0  # seconds, at 1M pending (the goal)
FRESH_HOST_GOAL = 60.0
GOAL_PENDING = 1_000_000
# The memory store's restart (the store before issue 15) decodes the whole changelog into RAM:
# ~100 s at 200,000 pending, growing linearly. Past this many it is not run (the figure says so).
MEMORY_STORE_MAX = 200_000


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
    """One new CustomerRegistered per partition (every partition must start its index)."""
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
    peak_rss_mb: float  # the process's peak resident memory (VmHWM) when it had every pending


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (``VmHWM`` of /proc/PID/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def log_phases(log: Path, started: float) -> dict[str, float]:
    """Seconds from ``started`` (wall clock) to the first log line of each phase."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        for phase, marker in PHASES.items():
            if phase not in found and marker in line and line.startswith("["):
                stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")  # local time
                found[phase] = round(stamp.timestamp() - started, 3)
    return found


def start_and_probe(settings: Settings, label: str, target: float, timeout: float) -> Restart:
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
        rss = peak_rss_mb(child.process.pid)
    return Restart(
        up - started, first - started, full - started if target else 0.0, log_phases(child.log, wall), rss
    )


@dataclass(frozen=True)
class Load:
    seconds: float  # from the worker's start until it reported every pending deadline
    peak_rss_mb: float  # its peak resident memory then
    consumed: float  # events its counter says it consumed (more than published: some twice)
    published: int
    pending: float  # the pending deadlines it reported at the end (three copies per subject)


def load_and_kill(settings: Settings, target: int, timeout: float) -> Load:
    """Build up ``target`` pending deadlines in a worker, wait for its commit, SIGKILL it."""
    publish(settings, Topics(settings.topic_prefix).events, pending_events(target))
    started = time.perf_counter()
    with running("worker-loaded", settings, "--loglevel", "info") as child:
        done, _ = wait_metrics(
            child,
            settings.worker_metrics_port,
            lambda s: processes.total(s, CONSUMED) >= 2 * target,
            timeout,
            poll=SLOW_POLL,
        )
        wait_committed(settings, timeout)
        rss = peak_rss_mb(child.process.pid)
        samples = processes.scrape(settings.worker_metrics_port)
        child.kill()
    return Load(done - started, rss, processes.total(samples, CONSUMED), 2 * target, _pending(samples))


def run(ctx: Context) -> list[Figure]:
    """Restart times of a killed worker with pending deadlines (same host, fresh host, memory
    store), against an empty worker's start and a bare read of the changelog."""
    target = ctx.size.recovery_pending
    timeout = 120 + target / 200
    ctx.report(f"{NAME}: empty worker (baseline), session timeout {SESSION_TIMEOUT}s")
    with scratch(ctx, f"{NAME}-empty", session_timeout=SESSION_TIMEOUT) as settings:
        empty = start_and_probe(settings, "empty", 0, timeout)
    ctx.report(f"{NAME}: empty worker processed its first event after {empty.first_event:.2f}s")
    with scratch(ctx, NAME, session_timeout=SESSION_TIMEOUT, worker_instance_id="bench-recovery") as settings:
        ctx.report(f"{NAME}: loading {target:,} pending deadlines ({2 * target:,} events)")
        loaded = load_and_kill(settings, target, 300 + target / 20)  # a busy machine does 200 events/s
        ctx.report(f"{NAME}: loaded in {loaded.seconds:.1f}s, killed (SIGKILL); reading the changelog")
        ceiling = read_to_end(settings)
        ctx.report(
            f"{NAME}: changelog read to its end: {ceiling.records:,} records in {ceiling.seconds:.2f}s"
        )
        same = start_and_probe(settings, "same-host", loaded.pending, timeout)
        ctx.report(
            f"{NAME}: same host back after {same.first_event:.2f}s, all pending {same.all_pending:.2f}s"
        )
        fresh = start_and_probe(_elsewhere(settings, "fresh-host"), "fresh-host", loaded.pending, timeout)
        ctx.report(
            f"{NAME}: fresh host back after {fresh.first_event:.2f}s, all pending {fresh.all_pending:.2f}s"
        )
        memory = None
        if target <= MEMORY_STORE_MAX:
            memory = start_and_probe(
                replace(_elsewhere(settings, "memory"), state_store="memory"),
                "memory",
                loaded.pending,
                timeout,
            )
            ctx.report(f"{NAME}: memory store back after {memory.first_event:.2f}s")
    return _figures(target, empty, loaded, ceiling, same, fresh, memory)


def _elsewhere(settings: Settings, label: str) -> Settings:
    """The same app id, group member id and topics, on an empty state dir (another host). The
    same web port (the worker before it has stopped): Faust puts the worker's web URL in the group
    metadata and refuses an assignment a static member rejoining with the same id gets back
    under another URL."""
    return replace(
        settings,
        state_dir=settings.state_dir.parent / f"{settings.state_dir.name}-{label}",
        worker_metrics_port=free_port(),
    )


def _figures(
    target: int,
    empty: Restart,
    loaded: Load,
    ceiling: Ceiling,
    same: Restart,
    fresh: Restart,
    memory: Restart | None,
) -> list[Figure]:
    at_goal = target >= GOAL_PENDING
    notes = (
        f"{target:,} pending deadlines ({2 * target:,} events); the changelog holds {ceiling.records:,} "
        f"records, read to its end by a bare aiokafka consumer in {ceiling.seconds:.2f}s "
        f"({ceiling.rate:,.0f} records/s); killed with SIGKILL after its offsets were committed; "
        f"session_timeout={SESSION_TIMEOUT}s, static membership; the loaded worker took "
        f"{loaded.seconds:.1f}s and consumed {loaded.consumed:,.0f} events of {loaded.published:,} "
        f"published; restart phases (s from process start, Faust log): same host {same.phases}, "
        f"fresh host {fresh.phases}, memory store "
        + (
            str(memory.phases)
            if memory
            else f"not run (over {MEMORY_STORE_MAX:,} pending: see MEMORY_STORE_MAX)"
        )
    )
    extra: dict[str, Any] = {
        "pending": target,
        "session_timeout_s": SESSION_TIMEOUT,
        "load": vars(loaded),
        "ceiling": {**vars(ceiling), "records_per_s": ceiling.rate},
        "same_host": vars(same),
        "fresh_host": vars(fresh),
        "memory_store": vars(memory) if memory else None,
        "empty": vars(empty),
    }
    empty_words = "a worker with an empty state (fresh app id): process start to first event processed"
    read_words = "a bare aiokafka consumer reading the whole changelog to its end (same run)"
    same_goal = f"< {SAME_HOST_GOAL:.0f} s at {GOAL_PENDING:,} pending"
    fresh_goal = f"<= {FRESH_HOST_GOAL:.0f} s at {GOAL_PENDING:,} pending"
    figure = _figure_maker(notes, extra)
    rows: list[tuple[str, float, str, float, str | None, bool]] = [
        ("same host: restart to a new event processed", same.first_event, empty_words, empty.first_event,
         same_goal, at_goal and same.first_event < SAME_HOST_GOAL),
        ("same host: restart to every pending deadline reported", same.all_pending, empty_words,
         empty.first_event, None, False),
        ("fresh host: restart to a new event processed", fresh.first_event, read_words, ceiling.seconds,
         fresh_goal, at_goal and fresh.first_event <= FRESH_HOST_GOAL),
        ("fresh host: restart to every pending deadline reported", fresh.all_pending, read_words,
         ceiling.seconds, None, False),
    ]  # fmt: skip
    if memory is not None:
        rows.append(("memory store (before issue 15): restart to a new event processed", memory.first_event,
                     read_words, ceiling.seconds, None, False))  # fmt: skip
    return [figure(*row) for row in rows] + [_rss_figure(target, loaded, same, fresh, memory, extra)]


def _rss_figure(
    target: int, loaded: Load, same: Restart, fresh: Restart, memory: Restart | None, extra: dict[str, Any]
) -> Figure:
    after_memory = f"memory store after its restart: {memory.peak_rss_mb:.0f} MiB; " if memory else ""
    return Figure(
        NAME,
        "worker peak RSS, loaded (state on disk)",
        loaded.peak_rss_mb,
        "MiB",
        "the same worker restarted on its own disk",
        same.peak_rss_mb,
        higher_is_better=False,
        goal="<= 1 GiB at 10M pending",
        notes=f"{after_memory}fresh host: "
        f"{fresh.peak_rss_mb:.0f} MiB; per pending deadline (loaded): "
        f"{loaded.peak_rss_mb * 1024**2 / target:,.0f} bytes",
        extra=extra,
    )


def _figure_maker(notes: str, extra: dict[str, Any]) -> Callable[..., Figure]:
    def figure(name: str, value: float, baseline: str, base: float, goal: str | None, met: bool) -> Figure:
        return Figure(NAME, name, value, "s", baseline, base, higher_is_better=False, goal=goal,
                      meets_goal=met if goal else None, notes=notes, extra=extra)  # fmt: skip

    return figure
