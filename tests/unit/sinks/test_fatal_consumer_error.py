"""A sink whose consumer had a fatal error stops (to be started again by its supervisor) rather
than polling a dead consumer for ever: librdkafka reports e.g. a static member fenced after its
group coordinator died as an error event of code _FATAL whose ``fatal()`` is false (the failover
e2e test met it)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, KafkaException

from ebbtide.sinks.base.loop import _skip


@dataclass
class Event:
    err: KafkaError | None

    def error(self) -> KafkaError | None:
        return self.err


def test_a_fatal_error_event_ends_the_sink() -> None:
    fenced = KafkaError(
        KafkaError._FATAL, "Static consumer fenced by other consumer with same group.instance.id"
    )
    assert not fenced.fatal()  # what librdkafka hands the application
    with pytest.raises(KafkaException):
        _skip(Event(fenced))  # type: ignore[arg-type]
    with pytest.raises(KafkaException):
        _skip(Event(KafkaError(KafkaError._TRANSPORT, "x", fatal=True)))  # type: ignore[arg-type]


def test_informational_events_are_skipped_and_messages_kept() -> None:
    assert _skip(Event(KafkaError(KafkaError._PARTITION_EOF, "end")))  # type: ignore[arg-type]
    assert _skip(Event(KafkaError(KafkaError._TRANSPORT, "broker down")))  # type: ignore[arg-type]
    assert not _skip(Event(None))  # type: ignore[arg-type]
