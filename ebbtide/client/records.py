"""Lifecycle events as the publishers send them: validated, encoded, legal holds signed.

JSON form of an event (one per line in ``ebbtide publish FILE.jsonl``; :mod:`ebbtide.client.typed`
turns a typed event into it)::

    {"event_id": "evt-1", "type": "ServiceOrdered", "subject_id": "cust-42",
     "event_time": "2024-03-01T12:00:00Z", "producer": "billing",
     "payload": {"service_id": "svc-7", "kind": "HOSTING"}}

:func:`to_record` turns it into the Avro record (or refuses it with :class:`InvalidEvent` naming the
field), :func:`encode` into the message value. A legal hold event (``LegalHoldPlaced``,
``LegalHoldReleased``) must be signed with a legal hold signing key (:func:`sign_hold`; ``--hold-key``
or ``EBBTIDE_HOLD_SIGNING_KEY``): the worker refuses one it cannot verify, so without the key such an
event is refused here, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebbtide.runtime.authenticity import HOLD, KEY_ID, SIGNATURE, MessageSigner, hold_event
from ebbtide.runtime.keys import read_or_make_key
from ebbtide.runtime.settings import Settings
from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.streams.worker.translate import check_sizes

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy

NAMESPACE = "io.ebbtide.events"
ENVELOPE_FIELDS = ("event_id", "type", "subject_id", "event_time", "producer")


class InvalidEvent(ValueError):
    """An event the client refuses to publish; the message names the field."""


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


def encoder(settings: Settings) -> Callable[[dict[str, Any]], bytes]:
    """How a publisher with ``settings`` encodes (EBBTIDE_WIRE_FORMAT): :func:`encode`, or, with
    ``confluent``, the Confluent wire format with the registry's id of the newest schema, asked once
    here (needs ``ebbtide[registry]``; raises :class:`ebbtide.schemas.wire.NotRegistered` when the
    registry does not hold it or cannot be reached)."""
    if settings.wire_format != "confluent":
        return encode
    from ebbtide.schemas.registry import lifecycle_encoder  # confluent-kafka: only when asked for

    return lifecycle_encoder(settings)


def encode(record: dict[str, Any]) -> bytes:
    """The Kafka message value of ``record`` (Avro form, sealed and signed as it is sent): Avro
    single-object encoding of the newest lifecycle event schema. Every publisher encodes here."""
    return codec_for(LIFECYCLE_EVENT).encode(record)


def check_size(record: dict[str, Any], value: bytes | None = None) -> bytes:
    """The encoded value of ``record`` (or ``value``, already encoded); raises
    :class:`InvalidEvent` if the event is too large for one Kafka message (:data:`MAX_EVENT_BYTES`):
    the broker would refuse it, the file would be published only in part."""
    if value is None:
        value = encode(record)
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
