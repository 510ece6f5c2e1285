"""Typed events (:mod:`ebbtide.client.events`) to and from the forms the pipeline uses.

:func:`as_json` gives the JSON form :func:`ebbtide.client.records.to_record` validates (what
``ebbtide publish`` reads from a file); :func:`from_record` reads a decoded event back into its
class (``codec_for(LIFECYCLE_EVENT).decode(value)`` gives the record).
"""

from __future__ import annotations

from typing import Any, cast

import msgspec

from ebbtide.client.events import EVENT_TYPES, Event, LifecycleEvent

ENVELOPE = ("event_id", "subject_id", "event_time", "producer")
SIGNATURE_FIELDS = ("signature", "signer_key_id")
CLASSES: dict[str, type[LifecycleEvent]] = {cls.__name__: cls for cls in EVENT_TYPES}


def as_json(event: LifecycleEvent) -> dict[str, Any]:
    """The JSON form of ``event``: its envelope, ``type`` and ``payload`` (times as ISO-8601, so a
    time without a zone is refused by ``to_record`` as in a file)."""
    fields = msgspec.to_builtins(event)
    kind = fields.pop("type")
    envelope = {name: fields.pop(name) for name in ENVELOPE}
    return {**envelope, "type": kind, "payload": fields}


def from_record(record: dict[str, Any]) -> Event:
    """The typed event of a decoded Avro record (its payload as ``(record name, fields)``, as the
    codec decodes it). The signature of a legal hold event is left out; a sealed value stays the
    token it was sent as. Raises ``msgspec.ValidationError`` naming the field for a record that
    does not fit its class, and KeyError for an event type this client does not know."""
    branch, payload = record["payload"]
    kind = str(branch).rsplit(".", 1)[-1]
    fields = {name: record[name] for name in ENVELOPE}
    return cast(Event, msgspec.convert({**fields, **payload, "type": kind}, Event))


__all__ = ["CLASSES", "as_json", "from_record"]
