"""Stamping throughput: lifecycle events/s through the worker, against a bare passthrough.

All events are published before any consumer starts, so each figure is pure
consume + process + produce throughput. A rate runs from the first moment a consumer is
seen to have consumed something to the moment it has consumed everything, so process start,
group join and table recovery are left out (startup is reported in the notes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from kafka.errors import KafkaError

from bench.common import Context, Figure
from ebbtide.demo.scenario import build
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics, pipeline_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.streams.policy.rules import default_policy
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.tools import processes
from ebbtide.tools.client import to_record
from ebbtide.tools.processes import free_port

NAME = "stamping"
CONSUMED = "ebbtide_events_consumed_total"
GOAL_RATE = 50_000.0
GOAL_SHARE = 0.5
PASSES = 3  # passthrough runs; the figure uses their median
POLL = 0.1  # seconds between metric scrapes: resolution of the start and restart times
SLOW_POLL = 0.25  # while the worker is busy: each scrape takes CPU (and the GIL) from it
EVENTS_PER_CUSTOMER = 15  # the demo scenario gives 16-17; round down to have enough
Message = tuple[bytes, bytes]  # key, value


@dataclass(frozen=True)
class Run:
    """Timing of one consumer over pre-published events."""

    startup: float  # seconds from start until it was first seen consuming
    seconds: float  # seconds from then until it had consumed everything
    events: int  # events consumed within ``seconds``

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


# Helpers, also used by bench.recovery.
@contextmanager
def scratch(ctx: Context, label: str, **changes: Any) -> Iterator[Settings]:
    """Fresh prefix, app id, state dir and ports; the pipeline's topics, dropped afterwards."""
    settings = replace(
        ctx.unique_settings(label), worker_metrics_port=free_port(), worker_web_port=free_port(), **changes
    )
    create_topics(settings, pipeline_topics(Topics(settings.topic_prefix), ["customer_db"]))
    try:
        yield settings
    finally:
        drop_topics(settings)


def drop_topics(settings: Settings) -> None:
    """Delete this run's topics: ``<prefix>.*`` and Faust's ``<app id>-*`` (best effort)."""
    admin = kafka.admin(settings, client_id=None)
    with suppress(KafkaError):  # a leftover topic is harmless
        mine = (f"{settings.topic_prefix}.", f"{settings.app_id}-")
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(mine)])
    admin.close()


@contextmanager
def running(name: str, settings: Settings, *args: str) -> Iterator[processes.Child]:
    """``ebbtide worker ARGS`` as a child process, stopped (SIGTERM, then SIGKILL) afterwards."""
    child = processes.start(name, ["worker", *args], settings, settings.state_dir / "logs")
    try:
        yield child
    finally:
        child.stop()


def publish(settings: Settings, topic: str, messages: list[Message]) -> None:
    """Publish ``messages`` to ``topic`` and wait until the broker has them all."""
    asyncio.run(_publish(settings.kafka_bootstrap, topic, messages))


async def _publish(bootstrap: str, topic: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(
        **kafka.client_config(bootstrap, client_id=None), acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def wait_metrics(
    child: processes.Child,
    port: int,
    done: Callable[[processes.Samples], bool],
    timeout: float,
    poll: float = POLL,
) -> tuple[float, processes.Samples]:
    """Scrape ``port`` until ``done(samples)``; return when (perf_counter) and the samples."""
    deadline = time.perf_counter() + timeout
    while True:
        samples = processes.scrape(port, timeout=1.0)
        now = time.perf_counter()
        if samples and done(samples):
            return now, samples
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
        if now > deadline:
            raise TimeoutError(f"{child.name}: condition not met after {timeout:.0f}s:\n{child.tail()}")
        time.sleep(poll)


def lifecycle_events(count: int, seed: int = 11) -> list[Message]:
    """About ``count`` encoded events of the demo scenario (time order), keyed by subject."""
    scenario = build(customers=count // EVENTS_PER_CUSTOMER + 10, seed=seed)
    codec = codec_for(LIFECYCLE_EVENT)
    return [(e["subject_id"].encode(), codec.encode(to_record(e))) for e in scenario.events[:count]]


def time_worker(ctx: Context, messages: list[Message]) -> Run:
    """Run the real worker over the pre-published events; time it by its metrics."""
    timeout = 120 + len(messages) / 200
    with scratch(ctx, NAME) as settings:
        publish(settings, Topics(settings.topic_prefix).events, messages)
        started = time.perf_counter()
        with running("worker", settings) as child:
            port = settings.worker_metrics_port
            first, samples = wait_metrics(child, port, lambda s: processes.total(s, CONSUMED) > 0, timeout)
            already = processes.total(samples, CONSUMED)
            last, _ = wait_metrics(
                child, port, lambda s: processes.total(s, CONSUMED) >= len(messages), timeout, poll=SLOW_POLL
            )
    return Run(first - started, last - first, int(len(messages) - already))


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
    consumer = AIOKafkaConsumer(
        source,
        **kafka.connection(settings, client_id=None),
        group_id=settings.app_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=1500,
        max_partition_fetch_bytes=1024**2,
        session_timeout_ms=int(settings.session_timeout * 1000),
    )
    producer = AIOKafkaProducer(
        **kafka.connection(settings, client_id=None), acks="all", linger_ms=0, max_batch_size=16384
    )
    started = time.perf_counter()
    await producer.start()
    await consumer.start()
    try:
        done, first, committed = 0, 0.0, time.perf_counter()
        pending: list[Any] = []
        while done < count:
            batches = await consumer.getmany(timeout_ms=1000)
            if batches and not first:
                first = time.perf_counter()  # everything from here on is counted
            for messages in batches.values():
                pending += [await producer.send(sink, m.value, key=m.key) for m in messages]
                done += len(messages)
            if len(pending) >= 1000 or time.perf_counter() - committed >= 1.0 or done >= count:
                await asyncio.gather(*pending)  # output acknowledged before the offsets move
                pending = []
                await consumer.commit()
                committed = time.perf_counter()
        return Run(first - started, time.perf_counter() - first, count)
    finally:
        await consumer.stop()
        await producer.stop()


def time_in_process(messages: list[Message], partitions: int) -> Run:
    """Our processor alone, on a plain dict: no Kafka, no Faust, metrics included."""
    processor = LifecycleProcessor(default_policy(), Topics("x"), {})
    routed = [(partition_of(key, partitions), key, value) for key, value in messages]
    offsets = [0] * partitions
    start = time.perf_counter()
    for partition, key, value in routed:
        processor.on_event(partition, offsets[partition], key, value)
        offsets[partition] += 1
        processor.flush()
    return Run(0.0, time.perf_counter() - start, len(messages))


def run(ctx: Context) -> list[Figure]:
    """Worker and in-process processor throughput, each against the aiokafka passthrough."""
    ctx.report(f"{NAME}: generating {ctx.size.events:,} lifecycle events")
    messages = lifecycle_events(ctx.size.events)
    partitions = ctx.settings.partitions
    ctx.report(f"{NAME}: aiokafka passthrough (baseline), median of {PASSES}")
    passes = sorted((time_passthrough(ctx, messages) for _ in range(PASSES)), key=lambda r: r.rate)
    passthrough = passes[PASSES // 2]  # a short run: the median of a few is steadier
    ctx.report(f"{NAME}: passthrough {passthrough.rate:,.0f} events/s; now the worker")
    worker = time_worker(ctx, messages)
    ctx.report(f"{NAME}: worker {worker.rate:,.0f} events/s; now the in-process processor")
    alone = time_in_process(messages, partitions)
    ctx.report(f"{NAME}: in-process {alone.rate:,.0f} events/s")
    baseline = (
        f"aiokafka consume->produce passthrough, same broker, {partitions} partitions, "
        "same client settings as the worker"
    )
    common = (
        f"{len(messages):,} demo-scenario events pre-published, keyed by subject; "
        f"passthrough (median of {[round(p.rate) for p in passes]}) {passthrough.rate:,.0f} "
        f"events/s over {passthrough.seconds:.2f}s, "
        f"startup {passthrough.startup:.2f}s"
    )
    share = worker.rate / passthrough.rate
    return [
        Figure(
            NAME,
            "worker events/s (full policy, one worker)",
            worker.rate,
            "events/s",
            baseline,
            passthrough.rate,
            goal=f">= {GOAL_SHARE} of the passthrough and >= {GOAL_RATE:,.0f} events/s",
            meets_goal=share >= GOAL_SHARE and worker.rate >= GOAL_RATE,
            notes=(
                f"{common}; worker {worker.events:,} events in {worker.seconds:.2f}s after a "
                f"startup of {worker.startup:.2f}s (process start to first event consumed)"
            ),
            extra={
                "worker_startup_s": worker.startup,
                "worker_seconds": worker.seconds,
                "passthrough_startup_s": passthrough.startup,
                "events": len(messages),
            },
        ),
        Figure(
            NAME,
            "processor events/s in process (no Kafka, no Faust)",
            alone.rate,
            "events/s",
            baseline,
            passthrough.rate,
            goal=f">= {GOAL_RATE:,.0f} events/s (the worker cannot beat this ceiling)",
            meets_goal=alone.rate >= GOAL_RATE,
            notes=f"{common}; LifecycleProcessor.on_event + flush on a dict, {alone.seconds:.2f}s",
            extra={"seconds": alone.seconds, "events": len(messages)},
        ),
    ]
