"""The publishing client for backend services: validate, encode and send lifecycle events.

JSON form of an event (one per line in ``ebbtide publish FILE.jsonl``)::

    {"event_id": "evt-1", "type": "ServiceOrdered", "subject_id": "cust-42",
     "event_time": "2024-03-01T12:00:00Z", "producer": "billing",
     "payload": {"service_id": "svc-7", "kind": "HOSTING"}}

A legal hold event (``LegalHoldPlaced``, ``LegalHoldReleased``) must be signed with a legal hold
signing key (:func:`sign_hold`; ``--hold-key`` or ``EBBTIDE_HOLD_SIGNING_KEY``): the worker refuses
one it cannot verify, so without the key such an event is refused here, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka.errors import KafkaError

from ebbtide.runtime.authenticity import HOLD, KEY_ID, SIGNATURE, MessageSigner, hold_event
from ebbtide.runtime.kafka import (
    DELIVERY_TIMEOUT,
    await_delivery,
    close_producer,
    not_acknowledged,
    producer,
)
from ebbtide.runtime.keys import read_or_make_key
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.registry import lifecycle_encoder
from ebbtide.streams.worker.translate import check_sizes
from ebbtide.tools.sealing import Keys, Unsealable, key_store, seal_record

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy

NAMESPACE = "io.ebbtide.events"
ENVELOPE_FIELDS = ("event_id", "type", "subject_id", "event_time", "producer")


class InvalidEvent(ValueError):
    """An event the client refuses to publish; the message names the field."""


class PublishFailed(RuntimeError):
    """The broker did not acknowledge some events: they may not have been published.

    ``failed`` of the ``total`` events sent since the last flush were not acknowledged;
    ``first`` is the index (in the order they were sent) of the first of them: every event
    before it was acknowledged. ``reason`` is the first error's class name."""

    def __init__(self, failed: int, total: int, first: int, reason: str, timeout: float) -> None:
        self.failed, self.total, self.first, self.reason, self.timeout = failed, total, first, reason, timeout
        super().__init__(f"{failed} of {total} event(s) {not_acknowledged(reason, timeout)}")


# What one event may weigh encoded (key and Avro value): under the broker's default limit for one
# message (message.max.bytes, 1 MiB with the batch overhead) and the producer's max_request_size.
MAX_EVENT_BYTES = 1_000_000


def event_types() -> list[str]:
    """Names of the payload records the current schema knows."""
    envelope = codec_for(LIFECYCLE_EVENT).current.parsed
    payload = next(f for f in envelope["fields"] if f["name"] == "payload")
    return [branch["name"].rsplit(".", 1)[-1] for branch in payload["type"]]


def to_record(event: dict[str, Any], policy: Policy | None = None) -> dict[str, Any]:
    """Turn the JSON form into an Avro record, refusing bad input with a clear message; with a
    ``policy``, also an announcement it could not enforce (see :func:`check_announcement`)."""
    if not isinstance(event, dict):
        raise InvalidEvent("an event must be a JSON object")
    for name in ENVELOPE_FIELDS:
        if name not in event:
            raise InvalidEvent(f"field {name}: missing")
        if not isinstance(event[name], str) or not event[name].strip():
            raise InvalidEvent(f"field {name}: must be a non-empty string")
    unknown = set(event) - {*ENVELOPE_FIELDS, "payload"}
    if unknown:
        raise InvalidEvent(f"field {sorted(unknown)[0]}: not part of a lifecycle event")
    kind = event["type"]
    if kind not in event_types():
        raise InvalidEvent(f"field type: unknown event type {kind!r} (known: {', '.join(event_types())})")
    try:
        when = datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent("field event_time: not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise InvalidEvent("field event_time: must carry a time zone, e.g. 2024-03-01T12:00:00Z")
    payload = event.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidEvent("field payload: must be a JSON object")
    if "category" in payload and isinstance(payload["category"], str):
        payload = {**payload, "category": payload["category"].upper()}
    payload = _payload_times(kind, payload)
    record = {
        "event_id": event["event_id"],
        "subject_id": event["subject_id"],
        "event_time": when,
        "producer": event["producer"],
        "payload": (f"{NAMESPACE}.{kind}", payload),
    }
    try:
        codec_for(LIFECYCLE_EVENT).validate(record)
        check_sizes(record)  # a text field over the worker's limit would only be dead-lettered
    except InvalidMessage as exc:
        raise InvalidEvent(exc.reason.removeprefix("lifecycle_event: ")) from None
    if policy is not None:
        check_announcement(record, policy)
    check_size(record)
    return record


HOLD_KEY_OPTIONS = "--hold-key PATH or EBBTIDE_HOLD_SIGNING_KEY"


def load_hold_signer(path: Path) -> MessageSigner:
    """The legal hold signer of the private key at ``path``. The key is never made here (a wrong
    path must not mint a key the worker does not trust): a one-line ValueError naming the path if
    it cannot be read or is not an Ed25519 private key."""
    pem = read_or_make_key(path, "legal hold signing key", create=False)  # a ValueError naming it
    try:
        return MessageSigner(pem)
    except ValueError as exc:
        raise ValueError(f"legal hold signing key {path}: {str(exc).splitlines()[0]}") from None


def sign_hold(record: dict[str, Any], signer: MessageSigner | None) -> dict[str, Any]:
    """``record`` (Avro form) as it must be sent: a legal hold event signed with ``signer`` (one
    that already carries a signature is kept as it is); any other event unchanged. Raises
    :class:`InvalidEvent` for a hold event without a signature and no ``signer``."""
    kind = hold_event(record)
    if kind is None or (record.get(SIGNATURE) and record.get(KEY_ID)):
        return record
    if signer is None:
        raise InvalidEvent(
            f"{kind} must be signed with a legal hold signing key ({HOLD_KEY_OPTIONS}); "
            "the worker refuses an unsigned one"
        )
    return signer.sign(HOLD, record)


def check_size(record: dict[str, Any], value: bytes | None = None) -> bytes:
    """The encoded value of ``record`` (or ``value``, already encoded); raises
    :class:`InvalidEvent` if the event is too large for one Kafka message (:data:`MAX_EVENT_BYTES`):
    the broker would refuse it, the file would be published only in part."""
    if value is None:
        value = codec_for(LIFECYCLE_EVENT).encode(record)
    size = len(value) + len(str(record["subject_id"]).encode())
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"event is {_size(size)} encoded, over the {_size(MAX_EVENT_BYTES)} limit of one Kafka message"
        )
    return value


def _size(count: int) -> str:
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000} MB"
    return f"{count / 1_000_000:.1f} MB" if count >= 1_100_000 else f"{count:,} bytes"


def check_announcement(record: dict[str, Any], policy: Policy) -> None:
    """Refuse a ``RecordWritten`` the policy could not enforce, as the worker would dead-letter
    it: a store the store map does not list as holding the category, or no ref where the
    category's rule follows one (its record could never be deleted)."""
    branch, payload = record["payload"]
    if not branch.endswith(".RecordWritten"):
        return
    problem = policy.announcement_problem(
        payload["store"], str(payload["category"]).lower(), payload.get("ref")
    )
    if problem is not None:
        raise InvalidEvent(problem)


def _timestamp_fields(kind: str) -> set[str]:
    """Payload fields of ``kind`` that are Avro timestamps."""
    envelope = codec_for(LIFECYCLE_EVENT).current.parsed
    payload = next(f for f in envelope["fields"] if f["name"] == "payload")
    branch = next(b for b in payload["type"] if b["name"].rsplit(".", 1)[-1] == kind)
    return {
        f["name"]
        for f in branch["fields"]
        if isinstance(f["type"], dict) and f["type"].get("logicalType") == "timestamp-millis"
    }


def _payload_times(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """ISO-8601 strings in timestamp fields become aware datetimes, like ``event_time``."""
    out = dict(payload)
    for name in _timestamp_fields(kind) & set(payload):
        value = payload[name]
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidEvent(f"field payload.{name}: not an ISO-8601 time") from None
            if moment.tzinfo is None:
                raise InvalidEvent(f"field payload.{name}: must carry a time zone")
            out[name] = moment
    return out


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def read_jsonl(
    path: Path, policy: Policy | None = None, hold_signer: MessageSigner | None = None
) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    """Each non-blank line of a JSONL file as (line number, Avro record or error); with a
    ``policy``, announcements it could not enforce are errors too. Legal hold events are signed
    with ``hold_signer``; without it, each is an error (:func:`sign_hold`)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, sign_hold(to_record(json.loads(line), policy), hold_signer)
            except json.JSONDecodeError as exc:
                yield number, LineError(number, f"not JSON ({exc.msg} at column {exc.colno})")
            except InvalidEvent as exc:
                yield number, LineError(number, str(exc))


class EventPublisher:
    """Publishes lifecycle events keyed by subject, so a subject's events share a partition.

    :meth:`publish` refuses what the worker would dead-letter: events that do not fit the
    schema, and announcements the ``policy`` (default: the settings' policy) cannot enforce.

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
        self.keys = keys if keys is not None else key_store(settings)
        if hold_signer is None and settings.hold_signing_key is not None:
            hold_signer = load_hold_signer(settings.hold_signing_key)
        self.hold_signer = hold_signer
        if policy is None:
            from ebbtide import bootstrap

            policy = bootstrap.policy(settings)  # the one a worker with these settings runs
        self.policy = policy
        self.timeout = timeout
        self._encode = lifecycle_encoder(settings)  # EBBTIDE_WIRE_FORMAT: single-object or confluent
        self._producer = producer(settings, timeout)
        self._topic = Topics(settings.topic_prefix).events
        self._pending: list[Any] = []
        self._failed: BaseException | None = None  # the first send the broker did not take
        self._closed = False

    def publish(self, event: dict[str, Any]) -> None:
        """Validate one event (JSON form) and send it; raises :class:`InvalidEvent`."""
        self.publish_record(to_record(event, self.policy))

    def publish_record(self, record: dict[str, Any]) -> None:
        """Send one Avro record (a legal hold event signed, :func:`sign_hold`); raises
        :class:`InvalidEvent` if it is too large for one message or an unsigned hold event with no
        signer, :class:`PublishFailed` if the producer cannot take it (e.g. no metadata for the
        topic within the timeout), after waiting for what was sent before it. Personal values are
        sealed with the subject's key first (:mod:`ebbtide.tools.sealing`): none reaches Kafka in
        clear."""
        try:
            record = seal_record(record, self.keys, self.policy)
        except Unsealable as exc:
            raise InvalidEvent(str(exc)) from None
        record = sign_hold(record, self.hold_signer)
        value = check_size(record, self._encode(record))
        if self._failed is not None:  # the broker refused or dropped one: stop sending, settle
            failure = self._settle()
            if failure is not None:
                raise failure
        try:
            future = self._producer.send(self._topic, key=record["subject_id"].encode(), value=value)
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
            close = getattr(self.keys, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # an error is on its way out: do not hide it behind a flush
            self.abort()
