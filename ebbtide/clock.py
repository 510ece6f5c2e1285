"""The pipeline clock: publishes ticks to every partition of the clock topic.

A tick carries the end offset of the same events partition at the moment it is sent, and the
lifecycle agent applies it only after processing those events. So a tick never overtakes the
events published before it, and a replay interleaves ticks and events as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from ebbtide.kafka_io import end_offsets, offsets_reader, producer
from ebbtide.settings import Settings, Topics
from schemas import CLOCK_TICK, codec_for


class ClockPublisher:
    def __init__(self, settings: Settings, source: str) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.source = source
        self._producer = producer(settings)
        self._codec = codec_for(CLOCK_TICK)
        self._offsets = offsets_reader(settings)

    def tick(self, now: datetime) -> None:
        """Send one tick for ``now`` to every partition and wait until the broker has them."""
        self._producer.flush()  # events sent through other producers are the caller's to flush
        ends = end_offsets(self._offsets, self.topics.events)
        futures = []
        for partition, events_end in sorted(ends.items()):
            value = self._codec.encode({"now": now, "events_end": events_end, "source": self.source})
            futures.append(
                self._producer.send(self.topics.clock, key=b"tick", value=value, partition=partition)
            )
        self._producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not take the tick

    def close(self) -> None:
        self._producer.close()
        self._offsets.close()


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
