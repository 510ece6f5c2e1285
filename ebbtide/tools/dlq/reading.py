"""Reading the dead-letter topic from its beginning to its end, without a consumer group."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import DELIVERY_TIMEOUT
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.dlq.letters import DeadLetter, DlqError


def read(settings: Settings, timeout: float = DELIVERY_TIMEOUT) -> Iterator[DeadLetter]:
    """Every dead letter of ``<prefix>.dlq``, each partition from its beginning to its end as of
    now (no consumer group, nothing committed). Raises :class:`DlqError` if the topic does not
    exist or the broker does not answer for ``timeout`` seconds."""
    topic = Topics(settings.topic_prefix).dlq
    ms = max(1000, round(timeout * 1000))
    where = f"the broker at {settings.kafka_bootstrap}"
    try:
        consumer = kafka.consumer(
            settings,
            enable_auto_commit=False,
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
        )
    except KafkaError as exc:
        raise DlqError(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
    try:
        try:
            tps, starts, ends = _assign(consumer, topic, ms)
        except KafkaError as exc:
            raise DlqError(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
        for tp in tps:
            consumer.seek(tp, starts[tp])
        done = {tp: starts[tp] for tp in tps}  # the next offset to read
        quiet_since = time.monotonic()
        while any(done[tp] < ends[tp] for tp in tps):
            try:
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    for tp in tps:  # past control records; known locally after the explicit seek
                        position = consumer.position(tp, timeout_ms=0)
                        if position is not None:
                            done[tp] = max(done[tp], position)
            except KafkaError as exc:
                raise DlqError(f"reading {topic} failed ({type(exc).__name__})") from None
            if not batch:
                if time.monotonic() - quiet_since > timeout and any(done[tp] < ends[tp] for tp in tps):
                    read_so_far = sum(done[tp] - starts[tp] for tp in tps)
                    total = sum(ends[tp] - starts[tp] for tp in tps)
                    raise DlqError(
                        f"{where} stopped answering while {topic} was read ({read_so_far} of {total} "
                        f"messages in {timeout:g} s)"
                    )
                continue
            quiet_since = time.monotonic()
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset < ends[tp]:
                        yield DeadLetter.from_message(message)
                    done[tp] = max(done[tp], message.offset + 1)
    finally:
        consumer.close()


def _assign(
    consumer: Any, topic: str, ms: int
) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Assign every partition of ``topic`` to ``consumer``; their first and end offsets."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise DlqError(f"no topic {topic}: create the pipeline's topics (ebbtide topics create)")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    starts = consumer.beginning_offsets(tps, timeout_ms=ms)
    ends = consumer.end_offsets(tps, timeout_ms=ms)
    return tps, starts, ends
