"""Encode and decode Ebbtide messages: fastavro with Avro single-object framing."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC = b"\xc3\x01"
_FILE_NAME = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")

LIFECYCLE_EVENT = "lifecycle_event"
CLOCK_TICK = "clock_tick"
DELETION_COMMAND = "deletion_command"
DELETION_RECEIPT = "deletion_receipt"
DECISION = "decision"
ERASURE_ANSWER = "erasure_answer"
CHECKPOINT = "checkpoint"


class InvalidMessage(ValueError):
    """A message that cannot be decoded or does not fit its schema. ``reason`` is safe to log:
    it names fields and schemas, never values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SchemaFile:
    """One versioned ``.avsc`` file."""

    name: str
    version: int
    path: Path
    parsed: Any
    fingerprint: bytes

    @classmethod
    def load(cls, path: Path) -> SchemaFile:
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: schema files are named <name>.v<N>.avsc")
        raw = json.loads(path.read_text())
        # Parsed once with fastavro's write hint, so readers and writers reuse it as is
        # (without the hint, fastavro parses the schema again on every call).
        parsed = fastavro.parse_schema(raw)
        canonical = to_parsing_canonical_form(fastavro.parse_schema(raw, _write_hint=False))
        digest = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        return cls(match["name"], int(match["version"]), path, parsed, digest)


@cache
def schema_files(directory: Path = SCHEMA_DIR) -> tuple[SchemaFile, ...]:
    """Every versioned schema in ``directory``, ordered by name and version."""
    files = [SchemaFile.load(p) for p in sorted(directory.glob("*.avsc"))]
    return tuple(sorted(files, key=lambda f: (f.name, f.version)))


def versions_of(name: str, directory: Path = SCHEMA_DIR) -> list[SchemaFile]:
    """All versions of one schema, oldest first."""
    found = [f for f in schema_files(directory) if f.name == name]
    if not found:
        raise KeyError(f"no schema named {name!r} in {directory}")
    return found


class Codec:
    """Writes with the newest version of a schema; reads any version it knows."""

    def __init__(self, name: str, directory: Path = SCHEMA_DIR) -> None:
        versions = versions_of(name, directory)
        self.name = name
        self.current = versions[-1]
        self._writers = {f.fingerprint: f for f in versions}
        self._header = MAGIC + self.current.fingerprint

    def validate(self, datum: dict[str, Any]) -> None:
        """Raise :class:`InvalidMessage` naming every field that does not fit the schema."""
        try:
            validate(datum, self.current.parsed, raise_errors=True)
        except ValidationError as exc:
            raise InvalidMessage(f"{self.name}: {'; '.join(_field_errors(exc))}") from None

    def encode(self, datum: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        try:
            fastavro.schemaless_writer(out, self.current.parsed, datum)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.validate(datum)  # names the field when it can
            raise InvalidMessage(f"{self.name}: cannot encode: {type(exc).__name__}") from None
        return out.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode one framed message, resolving older writer versions to the current one."""
        if data is None or len(data) < 10:
            raise InvalidMessage(f"{self.name}: message too short for an Avro single-object header")
        if data[:2] != MAGIC:
            raise InvalidMessage(f"{self.name}: not Avro single-object encoded (bad marker bytes)")
        writer = self._writers.get(data[2:10])
        if writer is None:
            raise InvalidMessage(f"{self.name}: unknown writer schema fingerprint {data[2:10].hex()}")
        try:
            reader = None if writer is self.current else self.current.parsed  # resolve older writers only
            record = fastavro.schemaless_reader(
                io.BytesIO(data[10:]), writer.parsed, reader, return_record_name=True
            )
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise InvalidMessage(f"{self.name}: corrupt body ({type(exc).__name__})") from None
        if not isinstance(record, dict):
            raise InvalidMessage(f"{self.name}: body is not a record")
        return record


def _field_errors(exc: ValidationError) -> list[str]:
    # Name the field and what it expected; never echo the value (it may be personal data).
    messages = []
    for err in exc.errors:
        field = getattr(err, "field", None) or "?"
        expected = getattr(err, "schema", None)
        got = "missing" if getattr(err, "datum", None) is None else "wrong type"
        messages.append(f"field {field}: {got}, expected {_describe(expected)}")
    return messages


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return str(schema.get("logicalType") or schema.get("name") or schema.get("type"))
    if isinstance(schema, list):
        return " or ".join(_describe(s) for s in schema)
    return str(schema)


# A dead letter carries the message it refuses; past this size (key + value) it carries only the
# headers, with the value's size, or it would itself be too large for the broker (1 MB by default)
# and the worker or sink writing it would fail on it again and again.
DEAD_LETTER_MAX_BYTES = 900_000


def dead_letter_body(
    key: bytes | None, value: bytes | None
) -> tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]:
    """Key, value and extra headers of the dead letter of a message: the message itself, or,
    over :data:`DEAD_LETTER_MAX_BYTES`, its key alone and a ``value_dropped`` header with the
    size of the value it could not carry."""
    key, value = key or b"", value or b""
    if len(key) + len(value) <= DEAD_LETTER_MAX_BYTES:
        return key, value, ()
    return key[:1024], b"", (("value_dropped", str(len(value)).encode()),)


@cache
def codec_for(name: str) -> Codec:
    """The shared codec of one schema."""
    return Codec(name)
