"""The JSON schema of a request body, generated from the current lifecycle event Avro schema.

One variant per event type (``type`` names it, ``payload`` has its fields: Avro strings as
strings of at most the worker's limit, enums as their symbols, ``timestamp-millis`` as RFC 3339
times or epoch milliseconds, a field with a default or a null branch as optional; other payload
fields are ignored, as the client ignores them). What a JSON schema cannot say is left to the
checks of :func:`~ebbtide.tools.client.to_record` (answered 422): which store the store map lets
hold which category and ref, and that a legal hold event needs the service's signing key (422)
and a producer of ``EBBTIDE_INGEST_HOLD_PRODUCERS`` (403, before any other check).
"""

from __future__ import annotations

from typing import Any

from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.streams.worker.translate import MAX_ITEMS, MAX_TEXT
from ebbtide.tools.client import NAMESPACE

TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, with its offset (Z for UTC)"}


def _json_type(avro: Any, named: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one Avro type (the subset the lifecycle event schema uses)."""
    if isinstance(avro, str):
        if avro in named:
            return named[avro]
        primitives: dict[str, dict[str, Any]] = {
            "string": {"type": "string", "maxLength": MAX_TEXT},
            "boolean": {"type": "boolean"},
        }
        return primitives[avro]
    if isinstance(avro, list):  # ["null", X]: the field is optional, or null
        branches = [_json_type(branch, named) for branch in avro if branch != "null"]
        return {"anyOf": [*branches, {"type": "null"}]}
    if avro.get("logicalType") == "timestamp-millis":  # in a payload, also milliseconds since 1970
        return {"anyOf": [TIME, {"type": "integer", "description": "milliseconds since 1970 (UTC)"}]}
    if avro["type"] == "enum":
        symbols = list(avro["symbols"])
        if avro["name"].endswith(".Category"):  # the client takes a category in any case
            symbols += [s.lower() for s in symbols]
        named[avro["name"]] = {"type": "string", "enum": symbols}
        return named[avro["name"]]
    if avro["type"] == "array":
        return {"type": "array", "items": _json_type(avro["items"], named), "maxItems": MAX_ITEMS}
    raise ValueError(f"no JSON schema for the Avro type {avro.get('type')}")


def _payload(branch: dict[str, Any], named: dict[str, dict[str, Any]]) -> dict[str, Any]:
    properties = {f["name"]: _json_type(f["type"], named) for f in branch["fields"]}
    required = [
        f["name"]
        for f in branch["fields"]
        if "default" not in f and not (isinstance(f["type"], list) and "null" in f["type"])
    ]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "description": "fields the event type does not have are ignored (not sent)",
    }
    if required:
        schema["required"] = required
    return schema


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each event type's JSON form, by type name."""
    envelope = codec_for(LIFECYCLE_EVENT).current.parsed
    branches = next(f for f in envelope["fields"] if f["name"] == "payload")["type"]
    named: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, Any]] = {}
    for branch in branches:
        kind = branch["name"].removeprefix(f"{NAMESPACE}.")
        payload = _payload(branch, named)
        out[kind] = {
            "type": "object",
            "required": [
                "event_id",
                "type",
                "subject_id",
                "event_time",
                *(["payload"] if "required" in payload else []),
            ],
            "properties": {
                "event_id": TEXT,
                "type": {"type": "string", "const": kind},
                "subject_id": TEXT,
                "event_time": TIME,
                "producer": {"description": "ignored: the authenticated producer is recorded"},
                "payload": payload,
            },
            "additionalProperties": False,
        }
    return out


def body_schema(max_events: int) -> dict[str, Any]:
    """The request body's JSON schema: one event, or an array of 1 to ``max_events`` of them."""
    one = {"oneOf": list(event_schemas().values())}
    return {"oneOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": max_events}]}
