"""Stamping throughput: lifecycle events/s through the worker, against ceilings and baselines
measured in the same run over the same events.

All events are published before a consumer starts, so each figure is pure consume + process +
produce throughput. A rate runs from the first moment a consumer is seen to have taken an event
(applied it, or dead-lettered it) to the moment it has taken them all, so process start, group
join and table recovery are left out (startup is reported in the notes). A worker that stops
taking events fails the benchmark after ``STALL`` seconds with what it took and its log's tail.

Measured, each over the same events: the worker; today's worker (the issue's starting commit,
``bench.baseline_tree``); a bare aiokafka passthrough; the output-matched passthrough
(``bench.matched``: the worker's own outputs and changelog records out); the processor alone in
process; one and two workers started before the events arrive (``bench.two_workers``). The
figures are put together in ``bench.stamping_figures``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import baseline_tree, outputs, stamping_figures
from bench.common import Context, Figure
from bench.harness import CONSUMED as CONSUMED
from bench.harness import POLL as POLL
from bench.harness import SLOW_POLL as SLOW_POLL
from bench.harness import Message as Message
from bench.harness import Run as Run
from bench.harness import WorkerRun, cpu_seconds, wait_taken, worker_consumer
from bench.harness import drop_topics as drop_topics
from bench.harness import lifecycle_events as lifecycle_events
from bench.harness import partition_of as partition_of
from bench.harness import publish as publish
from bench.harness import running as running
from bench.harness import scratch as scratch
from bench.harness import wait_metrics as wait_metrics
from bench.matched import time_matched
from bench.stamping_figures import Measured
from bench.two_workers import time_live
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.streams.policy.rules import default_policy
from ebbtide.streams.worker.processor import LifecycleProcessor

NAME = "stamping"
PASSES = 3  # passthrough runs; the figure uses their median
BATCH = 500  # the worker's batch (streams.worker.app.BATCH)


def time_worker(
    ctx: Context, messages: list[Message], *, env: dict[str, str] | None = None, keep: bool = False
) -> WorkerRun:
    """Run a worker (``env``: e.g. the PYTHONPATH of another tree) over the pre-published events;
    time it by its metrics; read back what it wrote (the records themselves if ``keep``)."""
    with scratch(ctx, NAME) as settings:
        publish(settings, Topics(settings.topic_prefix).events, messages)
        started = time.perf_counter()
        with running("worker", settings, env=env) as child:
            me = [(child, settings.worker_metrics_port)]
            first, already = wait_taken(me, 1)
            cpu = cpu_seconds([child])
            last, _ = wait_taken(me, len(messages), poll=SLOW_POLL)
            cpu = _used(cpu, cpu_seconds([child]))
        recording = outputs.record(settings, len(messages), keep)  # after a clean stop: all flushed
    return WorkerRun(Run(first - started, last - first, int(len(messages) - already), cpu), recording)


def _used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def time_today(ctx: Context, messages: list[Message], commit: str) -> WorkerRun | str:
    """Today's worker (``commit``, exported from git) over the same events, or why it cannot run."""
    try:
        tree = baseline_tree.export(
            commit, Path(tempfile.mkdtemp(prefix="ebbtide-baseline-", dir=ctx.work_dir))
        )
    except baseline_tree.Unavailable as exc:
        return f"today's worker ({commit}) not measured: {exc}"
    try:
        return time_worker(ctx, messages, env=baseline_tree.python_path(tree))
    except (RuntimeError, TimeoutError) as exc:  # e.g. it refuses a setting of today's stack
        ctx.report(f"{NAME}: today's worker failed: {exc}")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"today's worker ({commit}) failed, so not measured: {first} (its log: {ctx.work_dir})"


def time_passthrough(ctx: Context, messages: list[Message]) -> Run:
    """aiokafka consume -> produce over the same events: the ceiling of a Python worker."""
    with scratch(ctx, f"{NAME}-pass") as settings:
        source, sink = f"{settings.topic_prefix}.in", f"{settings.topic_prefix}.out"
        create_topics(settings, [source, sink])
        publish(settings, source, messages)
        return asyncio.run(_passthrough(settings, source, sink, len(messages)))


async def _passthrough(settings: Settings, source: str, sink: str, count: int) -> Run:
    # The worker's client settings (streams.worker.app / Faust defaults): acks=-1, no linger,
    # 16 KiB batches, 1 MiB per partition fetch, commit every 1000 messages or 1 s.
    consumer = worker_consumer(settings, source)
    producer = AIOKafkaProducer(
        **kafka.connection(settings, client_id=None), acks="all", linger_ms=0, max_batch_size=16384
    )
    started = time.perf_counter()
    await producer.start()
    await consumer.start()
    try:
        done, first, cpu, committed = 0, 0.0, 0.0, time.perf_counter()
        pending: list[Any] = []
        while done < count:
            batches = await consumer.getmany(timeout_ms=1000)
            if batches and not first:
                first, cpu = time.perf_counter(), time.process_time()  # counted from here on
            for messages in batches.values():
                pending += [await producer.send(sink, m.value, key=m.key) for m in messages]
                done += len(messages)
            if len(pending) >= 1000 or time.perf_counter() - committed >= 1.0 or done >= count:
                await asyncio.gather(*pending)  # output acknowledged before the offsets move
                pending = []
                await consumer.commit()
                committed = time.perf_counter()
        return Run(first - started, time.perf_counter() - first, count, time.process_time() - cpu)
    finally:
        await consumer.stop()
        await producer.stop()


def time_in_process(messages: list[Message], partitions: int) -> Run:
    """Our processor alone, on a plain dict: no Kafka, no Faust, metrics included; its writes
    flushed to the dict every ``BATCH`` events, as the worker's batch step does."""
    processor = LifecycleProcessor(default_policy(), Topics("x"), {}, partitions)
    routed = [(partition_of(key, partitions), key, value) for key, value in messages]
    offsets = [0] * partitions
    start, cpu = time.perf_counter(), time.process_time()
    for n, (partition, key, value) in enumerate(routed, start=1):
        processor.on_event(partition, offsets[partition], key, value)
        offsets[partition] += 1
        if n % BATCH == 0:
            processor.flush()  # the state written once per batch, as the worker does
    processor.flush()
    return Run(0.0, time.perf_counter() - start, len(messages), time.process_time() - cpu)


def median_passthrough(ctx: Context, messages: list[Message]) -> tuple[Run, list[Run]]:
    """The bare passthrough ``PASSES`` times: the median run (a short run: steadier) and all."""
    passes = sorted((time_passthrough(ctx, messages) for _ in range(PASSES)), key=lambda r: r.rate)
    return passes[PASSES // 2], passes


def measure(ctx: Context) -> Measured:
    """Run every stamping measurement over the same events, reporting progress."""
    ctx.report(f"{NAME}: generating {ctx.size.events:,} lifecycle events")
    messages = lifecycle_events(ctx.size.events)
    ctx.report(f"{NAME}: bare aiokafka passthrough, median of {PASSES}")
    passthrough, passes = median_passthrough(ctx, messages)
    ctx.report(f"{NAME}: bare passthrough {passthrough.rate:,.0f} events/s; now the worker")
    worker = time_worker(ctx, messages, keep=True)
    ctx.report(f"{NAME}: worker {worker.run.rate:,.0f} events/s, {worker.recording.written.summary()}")
    commit = ctx.baseline_commit
    today: WorkerRun | str = "no baseline commit given (--baseline-commit)"
    if commit:
        ctx.report(f"{NAME}: today's worker ({commit})")
        today = time_today(ctx, messages, commit)
        ctx.report(
            f"{NAME}: today's worker "
            + (today if isinstance(today, str) else f"{today.run.rate:,.0f} events/s")
        )
    ctx.report(f"{NAME}: output-matched passthrough, median of {PASSES}")
    runs = sorted(
        (time_matched(ctx, messages, worker.recording) for _ in range(PASSES)), key=lambda r: r.rate
    )
    ctx.report(
        f"{NAME}: output-matched passthrough {runs[PASSES // 2].rate:,.0f} events/s; the processor alone"
    )
    alone = time_in_process(messages, ctx.settings.partitions)
    ctx.report(
        f"{NAME}: in-process {alone.rate:,.0f} events/s; one, then two workers started before the events"
    )
    live = {n: time_live(ctx, messages, n) for n in (1, 2)}
    ctx.report(f"{NAME}: one worker {live[1].run.rate:,.0f} events/s, two {live[2].run.rate:,.0f} events/s")
    worker.recording.outputs.clear()  # the records are no longer needed; their sizes are kept
    worker.recording.changelog.clear()
    return Measured(
        len(messages),
        ctx.settings.partitions,
        passthrough,
        passes,
        worker,
        today,
        commit,
        runs[PASSES // 2],
        runs,
        alone,
        live,
        sum(len(key) + len(value) for key, value in messages) / len(messages),
    )


def run(ctx: Context) -> list[Figure]:
    """Every stamping figure (``bench.stamping_figures``), each with its ceiling or baseline."""
    return stamping_figures.figures(measure(ctx))
