"""One message as ``ebbtide log`` shows it: where it is, its broker timestamp and key, its decoded
value (or why it could not be decoded), and its subject, kind and time as its topic defines them
(:mod:`.topics`). Also the JSON-safe form of a decoded value."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ebbtide.streams.worker.routing import reason_label
from ebbtide.tools.dlq import DeadLetter
from ebbtide.tools.log.topics import BROKER_TIME, LogTopic


@dataclass(frozen=True)
class Entry:
    """A message read from one of the log's topics."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # broker timestamp, ms since the epoch
    key: bytes | None
    value: dict[str, Any] | None  # decoded; for a dead letter its summary (never its contents)
    error: str | None = None  # why the value could not be decoded (names no value)

    def field(self, name: str) -> Any:
        return None if self.value is None else self.value.get(name)

    @property
    def subject(self) -> str | None:
        """The decoded value's subject id; else the key, as text, if it is UTF-8 (a dead letter's
        key is the key of the message it holds)."""
        if self.value is not None and isinstance(self.value.get("subject_id"), str):
            return str(self.value["subject_id"])
        if self.value is not None and isinstance(self.value.get("certificate"), dict):
            subject = self.value["certificate"].get("subject_id")
            return subject if isinstance(subject, str) else None
        return _utf8(self.key)


def _utf8(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode(spec: LogTopic, message: Any) -> Entry:
    """The entry of a kafka-python ``ConsumerRecord`` of a topic of kind ``spec``: decoded with
    the project's codec; a message that does not decode keeps its place and says why."""
    stamp = message.timestamp if isinstance(message.timestamp, int) and message.timestamp >= 0 else None
    place = (message.topic, message.partition, message.offset, stamp, message.key)
    if spec.decode is None:  # a dead letter: its headers, never the bytes it carries
        letter = DeadLetter.from_message(message)
        summary = letter.summary(message.topic)
        summary["reason_kind"] = reason_label(letter.reason)
        return Entry(*place, summary)
    try:
        return Entry(*place, spec.decode(message.value))
    except ValueError as exc:  # InvalidMessage names fields and schemas, never values
        reason = getattr(exc, "reason", None) or f"not a {spec.name[:-1]} ({type(exc).__name__})"
        return Entry(*place, None, str(reason))


def kind_of(spec: LogTopic, entry: Entry) -> str | None:
    """The entry's kind as ``--kind`` matches it (None: the topic has no kinds, or not decoded)."""
    if spec.kind_field is None or entry.value is None:
        return None
    found = entry.value.get("reason_kind" if spec.name == "dlq" else spec.kind_field)
    return str(found) if found is not None else None


def time_of(spec: LogTopic, entry: Entry) -> datetime | None:
    """The entry's time (:mod:`.topics`): its own time field, else the broker's timestamp (also for
    a message that cannot be decoded)."""
    if spec.time_field != BROKER_TIME and entry.value is not None:
        own = entry.value.get(spec.time_field)
        if own is None and isinstance(entry.value.get("certificate"), dict):
            own = entry.value["certificate"].get(spec.time_field)
        if isinstance(own, datetime):
            return own
        if isinstance(own, str):
            try:
                return datetime.fromisoformat(own.replace("Z", "+00:00"))
            except ValueError:
                return None
    return None if entry.timestamp is None else datetime.fromtimestamp(entry.timestamp / 1000, UTC)


def iso(moment: datetime | None) -> str | None:
    """``2025-04-18T04:00:00Z`` (milliseconds when there are any)."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def json_safe(value: Any) -> Any:
    """``value`` with every datetime as ISO-8601 UTC text and every bytes value (a signature) as
    base64 text, so that ``json.dumps`` takes it."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def as_json(spec: LogTopic, entry: Entry) -> dict[str, Any]:
    """The object ``--json`` prints for an entry (one per line)."""
    key = _utf8(entry.key)
    out: dict[str, Any] = {
        "topic": entry.topic,
        "partition": entry.partition,
        "offset": entry.offset,
        "timestamp": iso(
            None if entry.timestamp is None else datetime.fromtimestamp(entry.timestamp / 1000, UTC)
        ),
        "time": iso(time_of(spec, entry)),
        "time_field": spec.time_field if entry.value is not None else BROKER_TIME,
        "key": None if spec.decode is None else key,
    }
    if spec.decode is not None and key is None and entry.key is not None:
        out["key_base64"] = base64.b64encode(entry.key).decode("ascii")
    if entry.error is not None:
        out["error"] = entry.error
    out["value"] = json_safe(entry.value)
    return out
