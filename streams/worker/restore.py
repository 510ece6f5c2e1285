"""Bulk restore of the state table's changelog into the partition databases (``store``).

Faust's recovery hands each changelog record to the event loop one at a time (an event, a queue,
a buffer): a few thousand records a second. A partition whose database is far behind its
changelog (a new host, an empty state dir) is instead read here, when it is assigned, by a bare
consumer in large fetches, and written in large atomic write batches, each with the offset it
reaches; Faust's recovery then finds the database at the changelog's end and reads only what was
written after. Keys and values are written as they are, not decoded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_PARTITION = 16 * 1024**2  # bytes per partition and fetch
FETCH_TOTAL = 64 * 1024**2  # bytes per fetch
RECORDS = 20_000  # records per read (one write batch per partition at most)


@dataclass(frozen=True)
class Restored:
    records: int
    seconds: float


async def read_into(
    client: Mapping[str, Any], topic: str, dbs: Mapping[int, tuple[int, rocksdict.Rdict]], offset_key: bytes
) -> Restored:
    """Read each partition of ``topic`` in ``dbs`` (partition: (first offset to read, its
    database)) up to the changelog's end as it is now, into its database; ``client`` is the
    connection config (``ebbtide.runtime.kafka.client_config``)."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        **client,
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_PARTITION,
        fetch_max_bytes=FETCH_TOTAL,
    )
    await consumer.start()
    records = 0
    try:
        tps = [TopicPartition(topic, p) for p in dbs]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > dbs[tp.partition][0]}
        for tp in left:
            consumer.seek(tp, dbs[tp.partition][0])
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=1000, max_records=RECORDS)
            for tp, batch in fetched.items():
                if batch:
                    records += _write(dbs[tp.partition][1], batch, offset_key)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return Restored(records, time.perf_counter() - started)


def _write(db: rocksdict.Rdict, records: list[Any], offset_key: bytes) -> int:
    """One atomic write: the records (a None value deletes its key) and the last one's offset."""
    batch = rocksdict.WriteBatch(raw_mode=True)
    for record in records:
        if record.value is None:
            batch.delete(record.key)
        else:
            batch.put(record.key, record.value)
    batch.put(offset_key, str(records[-1].offset).encode())
    db.write(batch)
    return len(records)
