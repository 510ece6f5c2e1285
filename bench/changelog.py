"""The ceiling of a recovery: a bare aiokafka consumer (the client Faust uses) reads a worker's
state changelog from its start to its end, values not decoded (used by ``bench.recovery``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioPartition

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import end_offsets, offsets_reader
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.topic_spec import changelog_topic


@dataclass(frozen=True)
class Ceiling:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def read_to_end(settings: Settings) -> Ceiling:
    """Read the worker's changelog (``settings.app_id``) to its end: how many records, how long."""
    return asyncio.run(_read_to_end(settings, changelog_topic(settings.app_id)))


async def _read_to_end(settings: Settings, topic: str) -> Ceiling:
    reader = offsets_reader(settings)
    ends = {p: end for p, end in end_offsets(reader, topic).items() if end > 0}
    reader.close()
    consumer = AIOKafkaConsumer(
        **kafka.client_config(settings.kafka_bootstrap, client_id=None, security=kafka.secured(settings)),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024**2,
        fetch_max_bytes=64 * 1024**2,
    )
    started = time.perf_counter()
    await consumer.start()
    records = 0
    try:
        tps = [AioPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        left = set(tps)
        while left:
            for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=50_000)).items():
                records += len(batch)
                if batch and batch[-1].offset >= ends[tp.partition] - 1:
                    left.discard(tp)
        return Ceiling(records, time.perf_counter() - started)
    finally:
        await consumer.stop()
