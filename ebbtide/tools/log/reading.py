"""Reading the log's topics without a consumer group: every partition (or only a subject's) from
its beginning, to its end as of now or, following, until stopped."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings
from ebbtide.streams.worker.routing import partition_for


class LogUnavailable(RuntimeError):
    """The topics cannot be read; the message is one line for the user (it names no value)."""


def read(
    settings: Settings,
    topics: Sequence[str],
    timeout: float,
    *,
    key: bytes | None = None,
    since_ms: int | None = None,
    follow: bool = False,
) -> Iterator[Any]:
    """kafka-python ``ConsumerRecord``s of ``topics``, each partition in offset order; with
    ``key``, only the partition that key gives in each topic (the topic is keyed by subject);
    with ``since_ms``, from the first message whose broker timestamp is at or after it (Kafka's
    time index: every message before it has an earlier timestamp).
    To the end as of the start unless ``follow``; then until the caller stops. Raises
    :class:`LogUnavailable` for a topic that does not exist or a broker that does not answer
    within ``timeout`` seconds."""
    ms = max(1000, round(timeout * 1000))
    where = f"the broker at {settings.kafka_bootstrap}"
    try:
        consumer = kafka.consumer(
            settings, enable_auto_commit=False, request_timeout_ms=ms, bootstrap_timeout_ms=ms
        )
    except KafkaError as exc:
        raise LogUnavailable(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
    try:
        try:
            tps = _partitions(consumer, topics, key)
            consumer.assign(tps)
            starts = consumer.beginning_offsets(tps, timeout_ms=ms)
            ends = consumer.end_offsets(tps, timeout_ms=ms)
            if since_ms is not None:
                found = consumer.offsets_for_times({tp: since_ms for tp in tps}, timeout_ms=ms)
                starts = {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}
            for tp in tps:  # an explicit seek: the position is then known without a round trip
                consumer.seek(tp, starts[tp])
        except KafkaError as exc:
            raise LogUnavailable(
                f"{where} did not answer within {timeout:g} s ({type(exc).__name__})"
            ) from None
        yield from _poll(consumer, starts, ends, timeout, follow)
    finally:
        consumer.close()


def _partitions(consumer: Any, topics: Sequence[str], key: bytes | None) -> list[TopicPartition]:
    tps = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LogUnavailable(f"no topic {topic}: create the pipeline's topics (ebbtide topics create)")
        chosen = [partition_for(key, len(partitions))] if key is not None else sorted(partitions)
        tps += [TopicPartition(topic, p) for p in chosen]
    return tps


def _poll(
    consumer: Any,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    timeout: float,
    follow: bool,
) -> Iterator[Any]:
    """The messages from ``starts`` up to ``ends`` (all of them, if ``follow``); a broker that
    stops answering before the ends are reached is a :class:`LogUnavailable`."""
    tps = list(starts)
    done = dict(starts)  # the next offset to read, as far as known
    quiet_since = time.monotonic()
    while follow or any(done[tp] < ends[tp] for tp in tps):
        try:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                for tp in tps:  # past control records and deleted messages
                    position = consumer.position(tp, timeout_ms=0)
                    if position is not None:
                        done[tp] = max(done[tp], position)
        except KafkaError as exc:
            raise LogUnavailable(f"reading the log failed ({type(exc).__name__})") from None
        if not batch:
            if (
                not follow
                and time.monotonic() - quiet_since > timeout
                and any(done[tp] < ends[tp] for tp in tps)
            ):
                raise LogUnavailable(
                    f"the broker stopped answering within {timeout:g} s before the end of the log"
                )
            continue
        quiet_since = time.monotonic()
        for tp, messages in batch.items():
            for message in messages:
                if follow or message.offset < ends[tp]:
                    yield message
                done[tp] = max(done[tp], message.offset + 1)
