"""Reading what an export selects from Kafka: one partition at a time, from a start offset to a
stop offset fixed when the export starts (no consumer group, nothing committed).

A period ``[FROM, TO)`` is turned into offsets by the broker's time index
(``offsets_for_times``): per partition, from the first message whose timestamp is at or after
FROM up to, not including, the first one at or after TO. A partition's selection is therefore
one run of consecutive offsets, which keeps a decision chain verifiable; where the timestamps
grow with the offsets (the producers' create time, as Ebbtide's clients write it) it is exactly
the messages whose timestamp falls in the period.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from ebbtide.tools.export.decoding import decode


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in epoch milliseconds."""

    start: int
    end: int


@dataclass(frozen=True)
class Fetched:
    """One message as the broker holds it (the value's bytes untouched)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: str | None
    raw: bytes | None


@dataclass(frozen=True)
class Message:
    """A fetched message with its decoded value, and whether the selection asked for it (False
    for another subject's decision exported only to keep the chain verifiable)."""

    fetched: Fetched
    value: Any
    decode_error: str | None
    selected: bool

    @classmethod
    def of(cls, fetched: Fetched, selected: bool = True) -> Message:
        value, error = decode(fetched.raw)
        return cls(fetched, value, error, selected)


@dataclass(frozen=True)
class Span:
    """Offsets ``[start, stop)`` of one partition."""

    tp: TopicPartition
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


def partitions_of(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, in order; [] if the topic does not exist."""
    found = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(found)]


def spans(consumer: KafkaConsumer, tps: list[TopicPartition], period: Period | None) -> list[Span]:
    """What to read of each partition: all of it as of now, or the period's offsets (module doc)."""
    if not tps:
        return []
    begins = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    if period is None:
        return [Span(tp, begins[tp], ends[tp]) for tp in tps]
    firsts = consumer.offsets_for_times({tp: period.start for tp in tps})
    afters = consumer.offsets_for_times({tp: period.end for tp in tps})

    def at(found: Any, tp: TopicPartition) -> int:
        return ends[tp] if found is None else int(found.offset)

    return [Span(tp, at(firsts[tp], tp), at(afters[tp], tp)) for tp in tps]


def _key(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


class ReadStalled(RuntimeError):
    """The broker stopped giving messages before the end of a span: one line for the user."""


# Seconds a read may go without getting further before it gives up (a broker that went away).
STALL_TIMEOUT = 30.0


def read(
    consumer: KafkaConsumer,
    span: Span,
    progress: Callable[[int], None] = lambda n: None,
    stall_timeout: float = STALL_TIMEOUT,
) -> Iterator[Fetched]:
    """The messages of one span, in offset order; ``progress`` is told how far each poll got.
    :class:`ReadStalled` if no message comes for ``stall_timeout`` seconds before the span's end."""
    if span.size == 0:
        return
    consumer.assign([span.tp])
    consumer.seek(span.tp, span.start)
    position, moved = span.start, time.monotonic()
    while position < span.stop:
        for m in consumer.poll(timeout_ms=1000).get(span.tp, []):
            if m.offset < span.stop:
                yield Fetched(m.topic, m.partition, m.offset, m.timestamp, _key(m.key), m.value)
        now = min(consumer.position(span.tp), span.stop)  # past control records too
        if now > position:
            progress(now - position)
            position, moved = now, time.monotonic()
        elif time.monotonic() - moved > stall_timeout:
            where = f"{span.tp.topic} partition {span.tp.partition}"
            raise ReadStalled(
                f"no message from the broker for {stall_timeout:g} s at offset {position} of {where}"
            )
