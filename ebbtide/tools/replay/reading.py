"""Reading the worker's inputs and its decisions, each partition from its beginning to its end
as of now, in bulk (no consumer group, nothing committed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import KafkaError

from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings, Topics

SOURCES = ("events", "clock", "receipts")  # the worker's inputs, as a decision's ``input`` names them


class ReplayError(Exception):
    """Why the log cannot be replayed: one line for the auditor."""


@dataclass(frozen=True)
class Message:
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Log:
    """What was read: per topic (``events``, ``clock``, ``receipts``, ``decisions``) and
    partition, the messages in offset order; and the partition count of the inputs."""

    partitions: int
    topics: dict[str, dict[int, list[Message]]] = field(default_factory=dict)

    def of(self, topic: str, partition: int) -> list[Message]:
        return self.topics.get(topic, {}).get(partition, [])


def read_log(
    settings: Settings,
    partitions: Callable[[int], list[int]],
    timeout: float,
    started: Callable[[int], None] = lambda total: None,
    advance: Callable[[int], None] = lambda n: None,
) -> Log:
    """The events, clock, receipts and decisions topics of ``settings``' prefix, read to their
    end. ``partitions(count)`` picks which partitions to read, given the events topic's count.
    ``started`` is told how many messages there are to read, ``advance`` how many more were.
    Raises :class:`ReplayError` if a topic is missing, has lost its oldest messages (replay needs
    the whole history), or the broker does not answer for ``timeout`` seconds."""
    topics = Topics(settings.topic_prefix)
    names = {"events": topics.events, "clock": topics.clock, "receipts": topics.receipts}
    names["decisions"] = topics.decisions
    ms = max(1000, round(timeout * 1000))
    where = f"the broker at {settings.kafka_bootstrap}"
    try:
        consumer = kafka.consumer(
            settings,
            enable_auto_commit=False,
            request_timeout_ms=ms + 1000,
            bootstrap_timeout_ms=ms,
            max_poll_records=20_000,
            fetch_max_bytes=64 * 1024**2,
            max_partition_fetch_bytes=16 * 1024**2,
        )
    except KafkaError as exc:
        raise ReplayError(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
    try:
        counts = {short: consumer.partitions_for_topic(name) for short, name in names.items()}
        for short, found in counts.items():
            if not found:
                raise ReplayError(
                    f"no topic {names[short]}: nothing to replay under this EBBTIDE_TOPIC_PREFIX"
                )
        count = len(counts["events"] or ())
        for short, found in counts.items():
            if len(found or ()) != count:
                raise ReplayError(
                    f"topic {names[short]} has {len(found or ())} partitions and {names['events']} {count}: "
                    "replay needs them equal (the worker's own check)"
                )
        chosen = partitions(count)
        by_tp = {TopicPartition(names[s], p): (s, p) for s in names for p in chosen}
        log = Log(count, {s: {p: [] for p in chosen} for s in names})
        _read(consumer, by_tp, log, ms, where, started, advance)
        return log
    except KafkaError as exc:
        raise ReplayError(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
    finally:
        consumer.close()


def _read(
    consumer: object,
    by_tp: dict[TopicPartition, tuple[str, int]],
    log: Log,
    ms: int,
    where: str,
    started: Callable[[int], None],
    advance: Callable[[int], None],
) -> None:
    """Read every assigned partition from its first offset to its end offset as of now."""
    from kafka import KafkaConsumer

    assert isinstance(consumer, KafkaConsumer)
    tps = list(by_tp)
    consumer.assign(tps)
    starts = consumer.beginning_offsets(tps, timeout_ms=ms)
    ends = consumer.end_offsets(tps, timeout_ms=ms)
    for tp in tps:
        if starts[tp] > 0 and by_tp[tp][0] != "decisions":
            raise ReplayError(
                f"{tp.topic} partition {tp.partition} begins at offset {starts[tp]}: its oldest messages "
                "are gone (retention), and replay needs the whole history"
            )
        consumer.seek(tp, starts[tp])
    started(sum(ends[tp] - starts[tp] for tp in tps))
    done = dict(starts)
    quiet_since = time.monotonic()
    while any(done[tp] < ends[tp] for tp in tps):
        batch = consumer.poll(timeout_ms=500)
        if not batch:
            for tp in tps:  # past control records (transactions): known after the explicit seek
                position = consumer.position(tp, timeout_ms=0)
                if position is not None and position > done[tp]:
                    advance(min(position, ends[tp]) - done[tp])
                    done[tp] = position
            if time.monotonic() - quiet_since > ms / 1000 and any(done[tp] < ends[tp] for tp in tps):
                raise ReplayError(f"{where} stopped answering while the topics were read")
            continue
        quiet_since = time.monotonic()
        for tp, messages in batch.items():
            source, partition = by_tp[tp]
            kept = log.topics[source][partition]
            before = done[tp]
            for m in messages:
                if m.offset < ends[tp]:
                    kept.append(Message(m.offset, m.key, m.value))
                done[tp] = max(done[tp], m.offset + 1)
            advance(min(done[tp], ends[tp]) - min(before, ends[tp]))
