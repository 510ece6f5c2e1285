"""Replay speed: ``ebbtide audit replay`` of a log against the worker's own stamping of it.

The worker stamps pre-published demo-scenario events (timed as in ``bench.stamping``: from its
first event consumed to its last); then the replay reads that log (events and decisions) from
the broker and re-derives every decision in memory, timed from its start to its verdict. Both
figures are events per second of the same log in the same run, so their ratio is the issue's
"at least as fast as the worker's own stamping" (goal: ratio >= 1).
"""

from __future__ import annotations

import time

from bench.common import Context, Figure
from bench.harness import SLOW_POLL, Run, lifecycle_events, publish, running, scratch, wait_taken
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import end_offsets
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import replay

NAME = "replay"


def _settled(settings: Settings, timeout: float) -> int:
    """Wait until the decisions topic stops growing (the worker's last batch is out); its size."""
    reader = kafka.offsets_reader(settings)
    try:
        topic, last, deadline = Topics(settings.topic_prefix).decisions, -1, time.monotonic() + timeout
        while time.monotonic() < deadline:
            size = sum(end_offsets(reader, topic).values())
            if size == last:
                return size
            last = size
            time.sleep(1.0)
        raise TimeoutError(f"the decisions topic still grew after {timeout:.0f}s")
    finally:
        reader.close()


def run(ctx: Context) -> list[Figure]:
    """The worker's stamping rate and the replay's rate over the same log."""
    ctx.report(f"{NAME}: generating {ctx.size.events:,} lifecycle events")
    messages = lifecycle_events(ctx.size.events)
    timeout = 120 + len(messages) / 200
    with scratch(ctx, NAME) as settings:
        publish(settings, Topics(settings.topic_prefix).events, messages)
        started = time.perf_counter()
        with running("worker", settings) as child:
            me = [(child, settings.worker_metrics_port)]
            first, already = wait_taken(me, 1)  # taken: applied or dead-lettered (unsigned holds)
            last, _ = wait_taken(me, len(messages), poll=SLOW_POLL)
            worker = Run(first - started, last - first, int(len(messages) - already))
            decisions = _settled(settings, timeout)
        ctx.report(f"{NAME}: worker {worker.rate:,.0f} events/s, {decisions:,} decisions; now the replay")
        begun = time.perf_counter()
        result = replay.replay(settings, replay.Options(timeout=60))
        seconds = time.perf_counter() - begun
    rate = len(messages) / seconds
    ctx.report(f"{NAME}: replay {rate:,.0f} events/s, {len(result.differences)} differences")
    if result.differences:
        raise RuntimeError(f"the replay found {len(result.differences)} differences in the worker's log")
    return [
        Figure(
            NAME,
            "audit replay events/s (read from the broker, re-derived, compared)",
            rate,
            "events/s",
            "the worker's own stamping of the same log, same run (events/s, first to last consumed)",
            worker.rate,
            goal=">= 1 x the worker's stamping",
            meets_goal=rate >= worker.rate,
            notes=(
                f"{len(messages):,} demo-scenario events (no ticks or receipts), "
                f"{result.decisions:,} decisions, 0 differences; replay {seconds:.2f}s from start to "
                f"verdict (reading included); worker "
                f"{worker.events:,} events in {worker.seconds:.2f}s after a startup of {worker.startup:.2f}s"
            ),
            extra={
                "replay_seconds": seconds,
                "worker_seconds": worker.seconds,
                "decisions": result.decisions,
            },
        )
    ]
