"""The publishing client for backend services: validate, encode and send lifecycle events.

JSON form of an event (one per line in ``ebbtide publish FILE.jsonl``)::

    {"event_id": "evt-1", "type": "ServiceOrdered", "subject_id": "cust-42",
     "event_time": "2024-03-01T12:00:00Z", "producer": "billing",
     "payload": {"service_id": "svc-7", "kind": "HOSTING"}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kafka.errors import KafkaError

from ebbtide.settings import Settings, Topics
from schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for

if TYPE_CHECKING:
    from streams.policy.rules import Policy

NAMESPACE = "io.ebbtide.events"
ENVELOPE_FIELDS = ("event_id", "type", "subject_id", "event_time", "producer")


class InvalidEvent(ValueError):
    """An event the client refuses to publish; the message names the field."""


class PublishFailed(RuntimeError):
    """The broker did not acknowledge some events: they may not have been published."""


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
    except InvalidMessage as exc:
        raise InvalidEvent(exc.reason.removeprefix("lifecycle_event: ")) from None
    if policy is not None:
        check_announcement(record, policy)
    return record


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


def settings_policy(settings: Settings) -> Policy:
    """The policy a worker with these settings runs: the shipped rules and the settings' store map."""
    from streams.policy.rules import rules_policy

    return rules_policy().with_stores(settings.stores())


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


def read_jsonl(path: Path, policy: Policy | None = None) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    """Each non-blank line of a JSONL file as (line number, Avro record or error); with a
    ``policy``, announcements it could not enforce are errors too."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, to_record(json.loads(line), policy)
            except json.JSONDecodeError as exc:
                yield number, LineError(number, f"not JSON ({exc.msg} at column {exc.colno})")
            except InvalidEvent as exc:
                yield number, LineError(number, str(exc))


class EventPublisher:
    """Publishes lifecycle events keyed by subject, so a subject's events share a partition.

    :meth:`publish` refuses what the worker would dead-letter: events that do not fit the
    schema, and announcements the ``policy`` (default: the settings' policy) cannot enforce."""

    def __init__(self, settings: Settings, policy: Policy | None = None) -> None:
        from ebbtide.kafka_io import producer

        self.policy = policy if policy is not None else settings_policy(settings)
        self._producer = producer(settings)
        self._topic = Topics(settings.topic_prefix).events
        self._codec = codec_for(LIFECYCLE_EVENT)
        self._pending: list[Any] = []

    def publish(self, event: dict[str, Any]) -> None:
        """Validate one event (JSON form) and send it; raises :class:`InvalidEvent`."""
        self.publish_record(to_record(event, self.policy))

    def publish_record(self, record: dict[str, Any]) -> None:
        future = self._producer.send(
            self._topic, key=record["subject_id"].encode(), value=self._codec.encode(record)
        )
        self._pending.append(future)

    def publish_all(self, records: Iterable[dict[str, Any]]) -> int:
        count = 0
        for record in records:
            self.publish_record(record)
            count += 1
        return count

    def flush(self) -> None:
        """Wait until the broker has acknowledged every event sent; raise :class:`PublishFailed`
        naming how many were not (kafka-python's flush alone only logs failed batches)."""
        wait = 30.0
        try:
            self._producer.flush()
        except KafkaError:  # e.g. a batch the broker refused: the futures say which events
            wait = 0.0
        pending, self._pending = self._pending, []
        failed = [exc for exc in (_failure(f, wait) for f in pending) if exc is not None]
        if failed:
            raise PublishFailed(
                f"{len(failed)} of {len(pending)} event(s) not acknowledged by the broker: "
                f"{type(failed[0]).__name__}: {failed[0]}"
            )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _failure(future: Any, wait: float) -> Exception | None:
    """Why a kafka-python send future failed (or is still not done after ``wait`` s), if it did."""
    try:
        future.get(timeout=wait)
    except KafkaError as exc:
        return cast(Exception, exc)
    return None
