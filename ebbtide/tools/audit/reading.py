"""Reading what ``ebbtide audit verify`` checks: a topic from Kafka (every partition, from an
offset or a time to its end as of now, with the project's consumer), or an export's JSONL file.

An export file holds one JSON object per line: ``{"topic", "partition", "offset", "timestamp"
(epoch ms), "key", "raw" (base64 of the value bytes), "value" (the decoded record)}``; only
``raw`` is verified.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kafka import TopicPartition

from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings
from ebbtide.tools.audit.chain import Message
from ebbtide.tools.export.reading import STALL_TIMEOUT

Start = int | datetime | None  # an offset in each partition, a time (Kafka timestamps), or the beginning


class Unreadable(RuntimeError):
    """What was to be verified cannot be read (no such topic, no such file, not an export); one line."""


@dataclass
class TopicRead:
    """A topic's partitions to read, from ``start`` to their end as of now: ``total`` messages."""

    settings: Settings
    topic: str
    start: Start = None

    def __post_init__(self) -> None:
        self._consumer = kafka.consumer(self.settings, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            self._consumer.close()
            raise Unreadable(
                f"no topic {self.topic} (check EBBTIDE_TOPIC_PREFIX and EBBTIDE_KAFKA_BOOTSTRAP)"
            )
        self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        begins = self._consumer.beginning_offsets(self._tps)
        self._ends = self._consumer.end_offsets(self._tps)
        self._starts = {tp: self._first(tp, begins[tp]) for tp in self._tps}
        self.total = sum(self._ends[tp] - self._starts[tp] for tp in self._tps)

    def _first(self, tp: TopicPartition, begin: int) -> int:
        if isinstance(self.start, int):
            return min(max(self.start, begin), int(self._ends[tp]))
        if isinstance(self.start, datetime):
            found = self._consumer.offsets_for_times({tp: int(self.start.timestamp() * 1000)})[tp]
            return int(self._ends[tp]) if found is None else max(int(found.offset), begin)
        return int(begin)

    def _reached(self) -> int:
        return sum(min(self._consumer.position(tp), self._ends[tp]) for tp in self._tps)

    def __iter__(self) -> Iterator[Message]:
        """Every message in range, in offset order within each partition."""
        consumer = self._consumer
        try:
            consumer.assign(self._tps)
            for tp in self._tps:
                consumer.seek(tp, self._starts[tp])
            reached, moved = self._reached(), time.monotonic()
            while any(consumer.position(tp) < self._ends[tp] for tp in self._tps):
                for tp, messages in consumer.poll(timeout_ms=1000).items():
                    for m in messages:
                        if m.offset < self._ends[tp]:
                            yield Message(m.partition, m.offset, m.value, m.timestamp)
                now = self._reached()
                if now > reached:
                    reached, moved = now, time.monotonic()
                elif time.monotonic() - moved > STALL_TIMEOUT:  # the broker went away mid-read
                    raise Unreadable(
                        f"no message from the broker for {STALL_TIMEOUT:g} s while reading {self.topic}"
                    )
        finally:
            consumer.close()


def read_export(path: Path, start: Start = None) -> list[Message]:
    """The messages of an export file, ordered by partition and offset (from ``start``, if given)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise Unreadable(f"cannot read {path}: {exc.strerror}") from None
    messages: list[Message] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            raw = row["raw"]
            value = None if raw is None else base64.b64decode(raw, validate=True)
            m = Message(int(row["partition"]), int(row["offset"]), value, int(row.get("timestamp") or 0))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unreadable(f"{path}, line {number}: not an export line (partition, offset, raw)") from None
        if _in_range(m, start):
            messages.append(m)
    return sorted(messages, key=lambda m: (m.partition, m.offset))


def _in_range(m: Message, start: Start) -> bool:
    if isinstance(start, int):
        return m.offset >= start
    if isinstance(start, datetime):
        return m.timestamp >= int(start.timestamp() * 1000)
    return True
