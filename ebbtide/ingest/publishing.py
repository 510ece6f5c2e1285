"""Sealing, sending and waiting for Kafka, for the ingestion service; and the event ids it remembers.

A request is acknowledged only when Kafka has acknowledged every event in it (the producer of
:func:`ebbtide.runtime.kafka.producer`: acks=all, bounded retries). If it has not, the request is
answered 503 and claims nothing; the events Kafka did acknowledge are remembered, so the client's
retry sends only the others.

Idempotency: the last ``EBBTIDE_INGEST_REMEMBERED_EVENTS`` published events are remembered by
(subject id, event id) with a fingerprint of their content. The same event again is answered with
its first acknowledgement and not sent again; the same id with other content is a conflict (409).
The memory is per process and bounded: an event sent again after a restart, to another replica,
or long after (evicted) is published again, and the worker's own deduplication makes that second
copy change nothing: it applies a repeated event once (an announcement by its event id, per subject;
a fact by its content: streams/engine/stamping.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kafka.errors import KafkaError

from ebbtide.ingest.batch import Accepted, Problem, Refused
from ebbtide.runtime.kafka import (
    await_delivery,
    close_producer,
    end_offsets,
    not_acknowledged,
    offsets_reader,
    producer,
)
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.sinks.keys.store import KeyStoreUnavailable
from ebbtide.tools.client import InvalidEvent, check_size
from ebbtide.tools.sealing import Keys, Unsealable, seal_record

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from ebbtide.streams.policy.rules import Policy

READY_FOR = 2.0  # seconds a readiness answer is reused: a probe every second asks Kafka at most half


@dataclass(frozen=True)
class Ack:
    """Where Kafka put one event; ``repeated``: answered from memory, not sent again."""

    event_id: str
    topic: str
    partition: int
    offset: int
    repeated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "repeated": self.repeated,
        }


class Unavailable(Exception):
    """Kafka (or the key store) did not take every event: answer 503, claim nothing."""


class Remembered:
    """The acknowledgements of the last ``size`` events published, by (subject id, event id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._acks: OrderedDict[tuple[str, str], tuple[str, Ack]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, item: Accepted) -> Ack | None:
        """The first ack of ``item`` if it was published; :class:`Refused` (409) if its id was
        published with other content."""
        with self._lock:
            found = self._acks.get(item.key)
            if found is None:
                return None
            self._acks.move_to_end(item.key)
        fingerprint, ack = found
        if fingerprint != item.fingerprint:
            message = "field event_id: already published with other content (an event id names one event)"
            raise Refused(409, "an event id was reused", [Problem(item.index, "event_id", message)])
        return Ack(ack.event_id, ack.topic, ack.partition, ack.offset, repeated=True)

    def put(self, item: Accepted, ack: Ack) -> None:
        with self._lock:
            self._acks[item.key] = (item.fingerprint, ack)
            self._acks.move_to_end(item.key)
            while len(self._acks) > self.size:
                self._acks.popitem(last=False)


class IngestPublisher:
    """Publishes the accepted events of one request per :meth:`publish` call, keyed by subject, on
    the events topic (calls may run in parallel threads)."""

    def __init__(self, settings: Settings, policy: Policy, keys: Keys, timeout: float) -> None:
        self.settings, self.policy, self.keys, self.timeout = settings, policy, keys, timeout
        self.topic = Topics(settings.topic_prefix).events
        self.remembered = Remembered(settings.ingest_remembered_events)
        self._codec = codec_for(LIFECYCLE_EVENT)
        self._producer: KafkaProducer = producer(settings, timeout)
        self._keys_lock = threading.Lock()  # one key store connection
        self._probe_lock = threading.Lock()
        self._probe: KafkaConsumer | None = None
        self._readiness: tuple[float, bool, str] = (0.0, False, "not checked yet")

    def publish(self, accepted: list[Accepted]) -> list[Ack]:
        """The ack of each event, in order, once Kafka acknowledged every new one. :class:`Refused`
        before anything is sent: 409 (an event id reused for other content), 422 (an event too large
        once sealed, or a value too long to seal); :class:`Unavailable` if Kafka or the key store did
        not take every one (those Kafka took are remembered)."""
        acks: dict[int, Ack] = {}
        new: list[Accepted] = []
        first: dict[tuple[str, str], Accepted] = {}
        for item in accepted:
            earlier = first.setdefault(item.key, item)
            if earlier is not item and earlier.fingerprint != item.fingerprint:
                message = f"field event_id: used by event {earlier.index} of this batch with other content"
                raise Refused(409, "an event id was reused", [Problem(item.index, "event_id", message)])
            ack = self.remembered.get(item)
            if ack is not None:
                acks[item.index] = ack
            elif earlier is item:
                new.append(item)
        values = [self._value(item) for item in new]
        sent = self._send(new, values)
        for item in accepted:
            if item.index not in acks:
                ack = sent[first[item.key].index]
                acks[item.index] = ack if first[item.key] is item else replace(ack, repeated=True)
        return [acks[item.index] for item in accepted]

    def _value(self, item: Accepted) -> bytes:
        """The encoded value of ``item``, its personal values sealed with its subject's key."""
        try:
            with self._keys_lock:
                sealed = seal_record(item.record, self.keys, self.policy)
            return check_size(sealed, self._codec.encode(sealed))
        except (Unsealable, InvalidEvent) as exc:
            problems = [Problem(item.index, None, str(exc))]
            raise Refused(422, "an event cannot be sealed or is too large", problems) from None
        except KeyStoreUnavailable:
            raise Unavailable("the key store is unavailable") from None

    def _send(self, items: list[Accepted], values: list[bytes]) -> dict[int, Ack]:
        futures = []
        try:
            for item, value in zip(items, values, strict=True):
                key = str(item.record["subject_id"]).encode()
                futures.append(self._producer.send(self.topic, key=key, value=value))
        except KafkaError as exc:
            self._settle(items, futures)
            raise Unavailable(f"Kafka did not take the events ({type(exc).__name__})") from None
        failed = self._settle(items, futures)
        if failed is not None:
            count, reason = failed
            raise Unavailable(f"{count} of {len(items)} event(s) {not_acknowledged(reason, self.timeout)}")
        return {item.index: self._ack(item, future) for item, future in zip(items, futures, strict=True)}

    def _settle(self, items: list[Accepted], futures: list[Any]) -> tuple[int, str] | None:
        """Wait for ``futures``; remember each acknowledged event; how many were not and the first
        error's class (None: all were)."""
        undelivered = await_delivery(self._producer, futures, self.timeout) if futures else None
        failed = len(items) - len(futures)  # not sent at all
        for item, future in zip(items, futures, strict=False):
            if future.succeeded():
                self.remembered.put(item, self._ack(item, future))
            else:
                failed += 1
        if not failed and undelivered is None:
            return None
        return max(failed, 1), undelivered.reason if undelivered is not None else "KafkaError"

    @staticmethod
    def _ack(item: Accepted, future: Any) -> Ack:
        meta = future.value
        return Ack(str(item.record["event_id"]), meta.topic, meta.partition, meta.offset)

    def ready(self) -> tuple[bool, str]:
        """Whether Kafka answers for the events topic (its end offsets, within 5 s); asked again at
        most every :data:`READY_FOR` seconds."""
        with self._probe_lock:
            checked, ok, reason = self._readiness
            if time.monotonic() - checked < READY_FOR:
                return ok, reason
            try:
                if self._probe is None:
                    self._probe = offsets_reader(self.settings, timeout=5.0)
                end_offsets(self._probe, self.topic)
                ok, reason = True, f"{self.topic} answers"
            except (KafkaError, LookupError) as exc:
                ok, reason = False, f"Kafka: {type(exc).__name__}"
            self._readiness = (time.monotonic(), ok, reason)
            return ok, reason

    def close(self) -> None:
        close_producer(self._producer)
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
        close = getattr(self.keys, "close", None)
        if close is not None:
            close()
