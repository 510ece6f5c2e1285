"""The synchronous publisher (kafka-python): typed events, or their JSON form, onto the events topic."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kafka.errors import KafkaError

from ebbtide.client.events import LifecycleEvent
from ebbtide.client.outgoing import Outgoing, PublishFailed
from ebbtide.client.sealing import Keys
from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.runtime.kafka import DELIVERY_TIMEOUT, await_delivery, close_producer, producer
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy


class EventPublisher:
    """Publishes lifecycle events keyed by subject, so a subject's events share a partition.

    :meth:`publish` takes a typed event (:mod:`ebbtide.client.events`) or its JSON form and
    refuses what the worker would dead-letter: events that do not fit the schema, and
    announcements the ``policy`` (default: the settings' policy) cannot enforce.

    Delivery is bounded: an event the broker has not acknowledged ``timeout`` seconds after it
    was sent counts as failed, and :meth:`flush` (also :meth:`close` and leaving a ``with`` block)
    raises :class:`PublishFailed` naming how many. Once one has failed, the next
    :meth:`publish_record` sends nothing more and raises it (a broker that died mid-file is not
    sent the rest of it). A broker that is down when the publisher is made raises
    ``kafka.errors.KafkaError`` after ``timeout`` seconds.

    Legal hold events are signed with ``hold_signer`` (default: the key of the settings'
    ``hold_signing_key``, if set; a ValueError if it cannot be read); without one, publishing a
    hold event that carries no signature raises :class:`InvalidEvent` and sends nothing.

    Personal values are sealed with their subject's data key from ``keys`` (default: the key
    store of the settings, ``EBBTIDE_KEYS_DSN`` or ``EBBTIDE_PG_DSN``) before they are sent."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy | None = None,
        timeout: float = DELIVERY_TIMEOUT,
        hold_signer: MessageSigner | None = None,
        keys: Keys | None = None,
    ) -> None:
        self.outgoing = Outgoing(settings, policy, hold_signer, keys)
        self.timeout = timeout
        self._producer = producer(settings, timeout)
        self._pending: list[Any] = []
        self._failed: BaseException | None = None  # the first send the broker did not take
        self._closed = False

    @property
    def policy(self) -> Policy:
        return self.outgoing.policy

    @property
    def keys(self) -> Keys:
        return self.outgoing.keys

    @property
    def hold_signer(self) -> MessageSigner | None:
        return self.outgoing.hold_signer

    def publish(self, event: LifecycleEvent | dict[str, Any]) -> None:
        """Validate one event (typed, or its JSON form) and send it; raises :class:`InvalidEvent`."""
        self.publish_record(self.outgoing.record(event))

    def publish_record(self, record: dict[str, Any]) -> None:
        """Send one Avro record (:meth:`Outgoing.message`: sealed, a legal hold signed); raises
        :class:`InvalidEvent` if it is too large for one message or an unsigned hold event with no
        signer, :class:`PublishFailed` if the producer cannot take it (e.g. no metadata for the
        topic within the timeout), after waiting for what was sent before it."""
        key, value = self.outgoing.message(record)
        if self._failed is not None:  # the broker refused or dropped one: stop sending, settle
            failure = self._settle()
            if failure is not None:
                raise failure
        try:
            future = self._producer.send(self.outgoing.topic, key=key, value=value)
        except KafkaError as exc:  # nothing after this one is sent: settle what was before it
            failure = self._settle(exc)
            assert failure is not None
            raise failure from None
        future.add_errback(self._on_failure)
        self._pending.append(future)

    def _on_failure(self, error: BaseException) -> None:  # the producer's I/O thread
        if self._failed is None:
            self._failed = error

    def publish_all(self, records: Iterable[dict[str, Any]]) -> int:
        """Send each of ``records`` (:meth:`publish_record`); how many."""
        count = 0
        for record in records:
            self.publish_record(record)
            count += 1
        return count

    def flush(self) -> None:
        """Wait (``timeout`` s at most) until the broker has acknowledged every event sent; raise
        :class:`PublishFailed` naming how many were not."""
        failure = self._settle()
        if failure is not None:
            raise failure

    def _settle(self, refused: BaseException | None = None) -> PublishFailed | None:
        """Wait for the pending sends; what failed among them and ``refused``, the send after them
        that the producer did not take."""
        pending, self._pending = self._pending, []
        self._failed = None
        if not pending and refused is None:
            return None
        undelivered = await_delivery(self._producer, pending, self.timeout)
        extra = 0 if refused is None else 1
        if undelivered is not None:
            failed, first, reason = undelivered.failed + extra, undelivered.first, undelivered.reason
        elif refused is not None:
            failed, first, reason = 1, len(pending), type(refused).__name__
        else:
            return None
        return PublishFailed(failed, len(pending) + extra, first, reason, self.timeout)

    def close(self) -> None:
        """Flush (raising :class:`PublishFailed`), then close the producer within a bounded time."""
        try:
            self.flush()
        finally:
            self.abort()

    def abort(self) -> None:
        """Close without waiting for what was not acknowledged yet (it may or may not arrive)."""
        if not self._closed:
            self._closed = True
            self._pending = []
            close_producer(self._producer)
            self.outgoing.close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # an error is on its way out: do not hide it behind a flush
            self.abort()
