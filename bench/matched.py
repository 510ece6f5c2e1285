"""The output-matched passthrough: the ceiling of a worker that writes what ours writes.

The same events in, and out the worker's own recorded outputs (decisions, commands, dead
letters, answers, certificates, checkpoints: the records it wrote for these events, to the same
topic names under a fresh prefix and the same partitions, with their keys, values and headers) and
its own state changelog records, written to a topic made like the worker's changelog (compacted).
Every batch (up to the worker's batch size) does what the worker's batch step does, in its order
(streams.worker.batch): send the batch's share of the outputs and await their acknowledgements
(``acks=-1``), then send its share of the changelog records and await those; offsets are committed
as the worker's Faust app does (every 10,000 messages or 1 s). A batch's share is proportional to
the events consumed so far (records in the order the worker wrote them), so the totals are exactly
the worker's; only nothing is computed: no decoding, no policy, no state.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import Context
from bench.harness import Message, Run, publish, scratch, worker_consumer
from bench.outputs import Record, Recording
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.topic_spec import MIN_INSYNC, TopicSpec, changelog_config

BATCH = 500  # the worker's batch (streams.worker.app.BATCH)
COMMIT_EVERY, COMMIT_SECONDS = 10_000, 1.0  # the worker's broker_commit_every / _interval


def time_matched(ctx: Context, messages: list[Message], recording: Recording) -> Run:
    """The passthrough above over ``messages``, writing ``recording``'s records."""
    with scratch(ctx, "stamping-match") as settings:
        return passthrough(settings, messages, recording)


def passthrough(settings: Settings, messages: list[Message], recording: Recording) -> Run:
    """Under ``settings``' prefix and app id: the recorded topics made as the worker's are, the
    events published, then the passthrough run over them."""
    source = Topics(settings.topic_prefix).events
    specs: list[str | TopicSpec] = [source]
    for suffix, partitions in recording.partitions.items():
        changelog = suffix.endswith("-changelog")
        config = (
            changelog_config(settings) if changelog else {MIN_INSYNC: str(settings.topic_min_insync_replicas)}
        )
        name = (settings.app_id if changelog else settings.topic_prefix) + suffix
        specs.append(TopicSpec(name, partitions, settings.topic_replication_factor, config))
    create_topics(settings, specs)
    publish(settings, source, messages)
    return asyncio.run(_matched(settings, source, len(messages), recording))


def _target(settings: Settings, record: Record) -> str:
    base = settings.app_id if record.kind == "changelog" else settings.topic_prefix
    return base + record.suffix


async def _send_all(producer: AIOKafkaProducer, settings: Settings, records: Sequence[Record]) -> None:
    """Send ``records`` and wait until the broker has acknowledged every one."""
    sent = [
        await producer.send(
            _target(settings, r), r.value, key=r.key, partition=r.partition, headers=list(r.headers) or None
        )
        for r in records
    ]
    await asyncio.gather(*sent)


async def _matched(settings: Settings, source: str, count: int, recording: Recording) -> Run:
    consumer = worker_consumer(settings, source)
    # The worker's producer (streams.worker.app): acks=-1, linger 5 ms, Faust's 16 KiB batches and
    # 1 MB requests (a changelog value can be large).
    producer = AIOKafkaProducer(
        **kafka.connection(settings, client_id=None),
        acks="all",
        linger_ms=5,
        max_batch_size=16384,
        max_request_size=1024**2,
    )
    outputs, changelog = recording.outputs, recording.changelog
    started = time.perf_counter()
    await producer.start()
    await consumer.start()
    try:
        done, first, cpu, committed, uncommitted = 0, 0.0, 0.0, time.perf_counter(), 0
        out_sent = log_sent = 0
        while done < count:
            batches: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            taken = sum(len(m) for m in batches.values())
            if not taken:
                continue
            if not first:
                first, cpu = time.perf_counter(), time.process_time()  # counted from here on
            done += taken
            uncommitted += taken
            out_due = math.ceil(len(outputs) * done / count)
            log_due = math.ceil(len(changelog) * done / count)
            await _send_all(producer, settings, outputs[out_sent:out_due])  # output acknowledged first,
            await _send_all(producer, settings, changelog[log_sent:log_due])  # then the state
            out_sent, log_sent = out_due, log_due
            if (
                uncommitted >= COMMIT_EVERY
                or time.perf_counter() - committed >= COMMIT_SECONDS
                or done >= count
            ):
                await consumer.commit()
                committed, uncommitted = time.perf_counter(), 0
        return Run(first - started, time.perf_counter() - first, count, time.process_time() - cpu)
    finally:
        await consumer.stop()
        await producer.stop()
