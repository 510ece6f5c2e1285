"""What the export writes for one message: its bytes decoded to JSON-safe values.

A message of any Ebbtide topic is decoded by its content, not by where it was found: Avro
single-object messages by the schema whose fingerprint they carry (any version of any schema in
``schemas/``), JSON documents (certificates, checkpoints) as JSON. Anything else is kept only as
its bytes (``raw``), with the reason in ``decode_error``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from ebbtide.schemas import codec


@cache
def _codec_for(fingerprint: bytes) -> codec.Codec | None:
    for schema in codec.schema_files():
        if schema.fingerprint == fingerprint:
            return codec.Codec(schema.name)
    return None


def iso_ms(moment: datetime) -> str:
    """An aware time as ISO-8601 UTC with milliseconds and ``Z``."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def ms_text(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC (:func:`iso_ms`)."""
    return iso_ms(datetime.fromtimestamp(ms / 1000, UTC))


def json_safe(value: Any) -> Any:
    """``value`` with only JSON types: times as ISO-8601 UTC strings, bytes as base64, an Avro
    union's record (``(name, fields)`` as fastavro returns it) as ``{name: fields}`` like Avro's
    own JSON encoding."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return {value[0]: json_safe(value[1])}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return iso_ms(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def decode(raw: bytes | None) -> tuple[Any, str | None]:
    """(the JSON-safe value, None) or (None, why it could not be decoded). A tombstone (no
    value) decodes to None without error."""
    if raw is None:
        return None, None
    if raw[:2] == codec.MAGIC and len(raw) >= 10:
        found = _codec_for(raw[2:10])
        if found is None:
            return None, f"Avro message with an unknown schema fingerprint {raw[2:10].hex()}"
        try:
            return json_safe(found.decode(raw)), None
        except codec.InvalidMessage as exc:
            return None, exc.reason
    try:
        return json_safe(json.loads(raw)), None
    except (UnicodeDecodeError, ValueError):
        return None, "neither Avro single-object encoded nor JSON"
