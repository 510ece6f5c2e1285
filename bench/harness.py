"""What the Kafka benchmarks share: scratch topics, events, worker processes and their metrics.

(``bench.stamping`` re-exports these names, which ``bench.recovery`` and ``bench.replay`` import
from it.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from kafka.errors import KafkaError

from bench.common import Context
from bench.outputs import Recording
from ebbtide.demo.scenario import build
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics, pipeline_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.tools import processes
from ebbtide.tools.client import to_record
from ebbtide.tools.processes import free_port

CONSUMED = "ebbtide_events_consumed_total"
DEAD_LETTERS = "ebbtide_dlq_messages_total"
POLL = 0.1  # seconds between metric scrapes: resolution of the start and restart times
SLOW_POLL = 0.25  # while the worker is busy: each scrape takes CPU (and the GIL) from it
STALL = 90.0  # seconds a worker may take no further event (startup included) before it fails
EVENTS_PER_CUSTOMER = 15  # the demo scenario gives 16-17; round down to have enough
Message = tuple[bytes, bytes]  # key, value


@dataclass(frozen=True)
class Run:
    """Timing of one consumer over pre-published events."""

    startup: float  # seconds from start until it was first seen consuming
    seconds: float  # seconds from then until it had consumed everything
    events: int  # events consumed within ``seconds``
    cpu: float | None = None  # CPU seconds the consuming processes used within ``seconds``, if known

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us(self) -> float | None:
        """CPU microseconds per event, if known: less sensitive to a busy machine than the rate."""
        return None if self.cpu is None or self.events <= 0 else 1e6 * self.cpu / self.events

    @property
    def cores(self) -> float | None:
        """CPU seconds per second: how many cores the consumers kept busy."""
        return None if self.cpu is None or self.seconds <= 0 else self.cpu / self.seconds


@dataclass(frozen=True)
class WorkerRun:
    """A worker's timing over the events, and what it wrote for them."""

    run: Run
    recording: Recording


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
def running(
    name: str, settings: Settings, *args: str, env: dict[str, str] | None = None
) -> Iterator[processes.Child]:
    """``ebbtide worker ARGS`` as a child process (``env`` on top of the settings' environment,
    e.g. a PYTHONPATH), stopped (SIGTERM, then SIGKILL) afterwards."""
    child = processes.start(name, ["worker", *args], settings, settings.state_dir / "logs", env=env)
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


def taken(samples: processes.Samples) -> float:
    """Events a worker is done with: applied (``CONSUMED``), or dead-lettered (the scenario's legal
    holds are not signed by a key the bench's worker trusts, say)."""
    return processes.total(samples, CONSUMED) + processes.total(samples, DEAD_LETTERS, source="events")


def wait_taken(
    workers: list[tuple[processes.Child, int]], count: float, poll: float = POLL, stall: float = STALL
) -> tuple[float, float]:
    """Scrape the ``(child, metrics port)`` of each worker until together they have taken ``count``
    events; return when (perf_counter) and how many. Fails with a clear message (each worker's
    counts and log tail) as soon as one exits, or once they took no further event for ``stall``
    seconds (an event neither applied nor dead-lettered, say)."""
    best, moved = -1.0, time.perf_counter()
    while True:
        scraped = [processes.scrape(port, timeout=1.0) for _, port in workers]
        now, done = time.perf_counter(), sum(taken(s) for s in scraped)
        if all(scraped) and done >= count:
            return now, done
        if done > best:
            best, moved = done, now
        for child, _ in workers:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
        if now - moved > stall:
            counts = "; ".join(
                f"{child.name}: {processes.total(s, CONSUMED):,.0f} applied, "
                f"{processes.total(s, DEAD_LETTERS, source='events'):,.0f} dead-lettered"
                for (child, _), s in zip(workers, scraped, strict=True)
            )
            raise TimeoutError(
                f"the worker took {max(best, 0):,.0f} of {count:,.0f} events and no further one for "
                f"{stall:.0f}s ({counts}):\n" + "\n".join(child.tail() for child, _ in workers)
            )
        time.sleep(poll)


def cpu_seconds(children: list[processes.Child]) -> float | None:
    """User + system CPU seconds ``children`` have used so far (Linux /proc), None elsewhere."""
    total = 0.0
    for child in children:
        try:
            stat = Path(f"/proc/{child.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def lifecycle_events(count: int, seed: int = 11) -> list[Message]:
    """About ``count`` encoded events of the demo scenario (time order), keyed by subject."""
    scenario = build(customers=count // EVENTS_PER_CUSTOMER + 10, seed=seed)
    codec = codec_for(LIFECYCLE_EVENT)
    return [(e["subject_id"].encode(), codec.encode(to_record(e))) for e in scenario.events[:count]]


def worker_consumer(settings: Settings, source: str) -> AIOKafkaConsumer:
    """A consumer of ``source`` with the worker's settings (its group, 1 MiB per partition fetch,
    no auto commit, its session timeout): the passthroughs read as the worker does."""
    return AIOKafkaConsumer(
        source,
        **kafka.connection(settings, client_id=None),
        group_id=settings.app_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=1500,
        max_partition_fetch_bytes=1024**2,
        session_timeout_ms=int(settings.session_timeout * 1000),
    )
