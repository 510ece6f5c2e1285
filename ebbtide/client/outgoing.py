"""What both publishers share: an event made ready to send, and how a failed delivery is reported.

:class:`Outgoing` turns an event (typed, :mod:`ebbtide.client.events`, or its JSON form) into the
Kafka message the worker reads: validated against the schema and the policy, personal values
sealed with the subject's key, a legal hold signed, encoded (:func:`ebbtide.client.records.encoder`)
and its size checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ebbtide.client.events import LifecycleEvent
from ebbtide.client.records import InvalidEvent, check_size, encoder, load_hold_signer, sign_hold, to_record
from ebbtide.client.sealing import Keys, Unsealable, key_store, seal_record
from ebbtide.client.typed import as_json
from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.runtime.kafka import not_acknowledged
from ebbtide.runtime.settings import Settings, Topics

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy


class PublishFailed(RuntimeError):
    """The broker did not acknowledge some events: they may not have been published.

    ``failed`` of the ``total`` events sent since the last flush were not acknowledged;
    ``first`` is the index (in the order they were sent) of the first of them: every event
    before it was acknowledged. ``reason`` is the first error's class name."""

    def __init__(self, failed: int, total: int, first: int, reason: str, timeout: float) -> None:
        self.failed, self.total, self.first, self.reason, self.timeout = failed, total, first, reason, timeout
        super().__init__(f"{failed} of {total} event(s) {not_acknowledged(reason, timeout)}")


class Outgoing:
    """Events made ready for the events topic of ``settings``.

    ``policy`` (default: the one a worker with these settings runs) refuses announcements it could
    not enforce; ``hold_signer`` (default: the key of EBBTIDE_HOLD_SIGNING_KEY, if set) signs legal
    hold events; ``keys`` (default: the key store of EBBTIDE_KEYS_DSN or EBBTIDE_PG_DSN) seals
    personal values."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy | None = None,
        hold_signer: MessageSigner | None = None,
        keys: Keys | None = None,
    ) -> None:
        if hold_signer is None and settings.hold_signing_key is not None:
            hold_signer = load_hold_signer(settings.hold_signing_key)
        self.hold_signer = hold_signer
        if policy is None:
            from ebbtide import bootstrap

            policy = bootstrap.policy(settings)  # the one a worker with these settings runs
        self.policy = policy
        self.keys = keys if keys is not None else key_store(settings)
        self.topic = Topics(settings.topic_prefix).events
        self.encode = encoder(settings)  # EBBTIDE_WIRE_FORMAT: single-object or confluent

    def record(self, event: LifecycleEvent | dict[str, Any]) -> dict[str, Any]:
        """The Avro record of a typed event or of its JSON form; raises :class:`InvalidEvent`."""
        return to_record(as_json(event) if isinstance(event, LifecycleEvent) else event, self.policy)

    def message(self, record: dict[str, Any]) -> tuple[bytes, bytes]:
        """Key and value of ``record`` as sent: personal values sealed with the subject's key (none
        reaches Kafka in clear), a legal hold signed (:func:`sign_hold`), encoded. Raises
        :class:`InvalidEvent` if it is too large for one message or an unsigned hold event with no
        signer."""
        try:
            record = seal_record(record, self.keys, self.policy)
        except Unsealable as exc:
            raise InvalidEvent(str(exc)) from None
        record = sign_hold(record, self.hold_signer)
        return str(record["subject_id"]).encode(), check_size(record, self.encode(record))

    def close(self) -> None:
        """Close the key store's connection, if it has one."""
        close = getattr(self.keys, "close", None)
        if close is not None:
            close()
