"""Where the worker's messages go: a subject's partition, the topics its output is sent to, and
the dead-letter queue for a message that cannot be applied.

A bad message never stops the stream: it is dead-lettered with the reason and its origin in
headers (topic, partition, offset), and the stream moves on. That includes a message the pure
engine fails on: the engine is deterministic, so trying it again would fail the same way.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from ebbtide.runtime import metrics
from ebbtide.schemas import InvalidMessage, dead_letter_body
from ebbtide.streams.engine.model import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Out:
    """One message to send."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # None: the key's partition (Kafka's default partitioner)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a message key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def check_routing(what: str, partition: int, key: bytes | None, subject_id: str, partitions: int) -> None:
    """A subject's messages must be keyed by it and on its partition (Kafka's default
    partitioner, murmur2), or its state would split across partitions and its deletions be
    lost: a message proves nothing by the partition it arrived on."""
    if not subject_id.strip():
        raise InvalidMessage(f"{what}: empty subject_id")
    if key is None or key != subject_id.encode():
        raise InvalidMessage(f"{what}: message key is not the subject_id (messages are keyed by subject)")
    expected = partition_for(key, partitions)
    if partition != expected:
        raise InvalidMessage(
            f"{what}: misrouted: on partition {partition}, but its subject's partition is {expected} "
            f"of {partitions}"
        )


_SOURCES = {"lifecycle_event": "events", "deletion_receipt": "receipts", "clock_tick": "clock"}
_FAILED = "processing failed ("  # how engine_step's reasons say the engine raised
SECURITY = "security: "  # how the reason of a message refused as not authentic begins


def reason_label(reason: str) -> str:
    """The bounded ``reason`` label (a key of ``metrics.DLQ_REASONS``) of a dead letter's reason."""
    if reason.startswith(SECURITY):
        return "security"
    if _FAILED in reason:
        return "processing_failed"
    return "invalid"


def engine_step(step: Callable[..., Outcome], what: str, *args: Any) -> Outcome:
    """Run one pure engine step; an exception it raises is this record's, not the pipeline's: it
    becomes an :class:`InvalidMessage` (dead-lettered with the reason) instead of stopping every
    deletion. The engine is deterministic, so running it again would fail the same way. The
    reason names the exception type and where it was raised, never a value."""
    try:
        return step(*args)
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).stem}.{frame.name}"
        metrics.PROCESSING_ERRORS.labels(_SOURCES[what]).inc()
        raise InvalidMessage(f"{what}: {_FAILED}{type(exc).__name__} in {where})") from None


def dead_letter(
    dlq: str,
    source: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    exc: InvalidMessage,
) -> Out:
    """The message for the dead-letter topic ``dlq``: the original key and value (or as much as
    fits), the reason and where it came from in headers. ``source`` labels the metric, with the
    kind of reason."""
    metrics.DLQ_MESSAGES.labels(source, reason_label(exc.reason)).inc()
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        topic,
        partition,
        offset,
        exc.reason,
        extra={"topic": topic, "partition": partition},  # the JSON log's keys
    )
    key, value, dropped = dead_letter_body(key, value)
    headers = (
        ("reason", exc.reason.encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
        *dropped,
    )
    return Out(dlq, key, value, headers)
