"""Bulk restore of the state table's changelog into the partition databases (``store``).

Faust's recovery hands each changelog record to the event loop one at a time (an event, a queue,
a buffer): a few thousand records a second. A partition whose database is far behind its
changelog (a new host, an empty state dir) is instead read here, when it is assigned, by a bare
consumer in large fetches, and written in large atomic write batches, each with the offset it
reaches; Faust's recovery then finds the database at the changelog's end and reads only what was
written after. Keys and values are written as they are, not decoded; what the worker derives
from them (``derived``: due entries, the digest of counts) is written in the same write batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition

from ebbtide.streams.worker.derived import Deriver, write_records

FETCH_PARTITION = 16 * 1024**2  # bytes per partition and fetch
FETCH_TOTAL = 64 * 1024**2  # bytes per fetch
RECORDS = 20_000  # records per read (one write batch per partition at most)
IDLE_READS = 5  # reads in a row (a second each) that bring nothing: the rest is left to Faust

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    records: int
    seconds: float


async def read_into(
    client: Mapping[str, Any],
    topic: str,
    dbs: Mapping[int, tuple[int, rocksdict.Rdict]],
    offset_key: bytes,
    deriver: Deriver | None = None,
    decode_key: Callable[[bytes], str] = bytes.decode,
) -> Restored:
    """Read each partition of ``topic`` in ``dbs`` (partition: (first offset to read, its
    database)) up to the changelog's end as it is now, into its database; ``client`` is the
    connection config (``ebbtide.runtime.kafka.client_config``). A partition whose position stops
    short of that end (nothing comes for :data:`IDLE_READS` reads: e.g. its last records were
    compacted away) is left there: Faust's recovery reads on from the offset its database
    holds. ``deriver`` (if any) derives from the records what is written with them
    (``derived.write_records``; ``decode_key`` gives a stored key's table key)."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        **client,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a first offset compacted or deleted away: from the oldest kept
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
        idle = 0
        while left and idle < IDLE_READS:
            fetched = await consumer.getmany(*left, timeout_ms=1000, max_records=RECORDS)
            idle = 0 if any(fetched.values()) else idle + 1
            for tp, batch in fetched.items():
                if batch:
                    records += _write(dbs[tp.partition][1], batch, offset_key, deriver, decode_key)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        if left:
            short = sorted(tp.partition for tp in left)
            log.info("bulk read of partitions %s stopped short of the end", short)
    finally:
        await consumer.stop()
    return Restored(records, time.perf_counter() - started)


def _write(
    db: rocksdict.Rdict,
    records: list[Any],
    offset_key: bytes,
    deriver: Deriver | None,
    decode_key: Callable[[bytes], str],
) -> int:
    """One atomic write: the records (a None value deletes its key), the last one's offset and
    what ``deriver`` derives from them."""
    pairs = [(record.key, record.value) for record in records]
    return write_records(db, pairs, records[-1].offset, offset_key, deriver, decode_key)
