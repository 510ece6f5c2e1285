"""The pipeline clock: publishes ticks to every partition of the clock topic.

A tick carries the end offset of the same events partition at the moment it is sent, and the
lifecycle agent applies it only after processing those events. So a tick never overtakes the
events published before it, and a replay interleaves ticks and events as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from kafka.errors import KafkaError

from ebbtide.runtime.authenticity import KEY_ID, SIGNATURE, TICK, MessageSigner
from ebbtide.runtime.kafka import (
    DELIVERY_TIMEOUT,
    await_delivery,
    close_producer,
    end_offsets,
    not_acknowledged,
    offsets_reader,
    producer,
)
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import CLOCK_TICK, codec_for


class TickFailed(RuntimeError):
    """The broker did not take a tick within the timeout: the pipeline's time did not move (on
    some partitions at least). Ticking the same time again is harmless."""


class ClockPublisher:
    """Publishes ticks. Every broker wait is bounded by ``timeout`` seconds: making one with the
    broker down raises ``kafka.errors.KafkaError``, and :meth:`tick` raises :class:`TickFailed`."""

    def __init__(self, settings: Settings, source: str, timeout: float = DELIVERY_TIMEOUT) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.source = source
        self.timeout = timeout
        # Every tick is signed with the clock's key (made on first start, clock.pub beside it):
        # the worker refuses a tick it cannot verify, so writing to the clock topic is not enough.
        self._signer = MessageSigner.from_file(settings.clock_signing_key, "clock signing key")
        self._producer = producer(settings, timeout)
        self._codec = codec_for(CLOCK_TICK)
        try:
            self._offsets = offsets_reader(settings, timeout)
        except BaseException:
            close_producer(self._producer)
            raise
        self._closed = False

    def tick(self, now: datetime) -> None:
        """Send one tick for ``now`` to every partition and wait (``timeout`` s at most) until the
        broker has them; raises :class:`TickFailed` naming the partitions it did not take. Events
        sent through other producers are the caller's to flush first: the tick carries the events
        partitions' end offsets as they are now."""
        try:
            ends = end_offsets(self._offsets, self.topics.events)
            futures = []
            for partition, events_end in sorted(ends.items()):
                tick = {"now": now, "events_end": events_end, "source": self.source}
                signed = self._signer.sign(TICK, {**tick, "partition": partition})
                value = self._codec.encode({**tick, SIGNATURE: signed[SIGNATURE], KEY_ID: signed[KEY_ID]})
                futures.append(
                    self._producer.send(self.topics.clock, key=b"tick", value=value, partition=partition)
                )
        except KafkaError as exc:
            raise TickFailed(
                f"tick {now.isoformat()} not sent: the broker did not answer within {self.timeout:g} s "
                f"({type(exc).__name__})"
            ) from None
        undelivered = await_delivery(self._producer, futures, self.timeout)
        if undelivered is not None:
            partitions = sorted(ends)
            failed = [partitions[i] for i, f in enumerate(futures) if not f.succeeded()]
            raise TickFailed(
                f"tick {now.isoformat()}: {undelivered.failed} of {undelivered.total} partition(s) "
                f"({', '.join(map(str, failed))}) {not_acknowledged(undelivered.reason, self.timeout)}"
            )

    def close(self) -> None:
        """Close within a bounded time (what was not acknowledged is given up)."""
        if not self._closed:
            self._closed = True
            close_producer(self._producer)
            self._offsets.close()

    def __enter__(self) -> ClockPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def steps(start: datetime, until: datetime, step_days: int) -> Iterator[datetime]:
    """Tick times from ``start`` to ``until`` inclusive, ``step_days`` apart."""
    from datetime import timedelta

    if step_days < 1:
        raise ValueError("step must be at least one day")
    moment = start
    while moment < until:
        yield moment
        moment += timedelta(days=step_days)
    yield until


def wall_ticks(interval: float, count: int | None) -> Iterator[datetime]:
    """Wall-clock times, one every ``interval`` seconds (production mode)."""
    import time
    from datetime import UTC

    sent = 0
    while count is None or sent < count:
        yield datetime.now(UTC)
        sent += 1
        if count is None or sent < count:
            time.sleep(interval)  # pacing the production clock, not synchronisation
