"""The two framings a lifecycle event may arrive in, decoded to our own schema.

- Avro single-object encoding (:mod:`ebbtide.schemas.codec`): ``c3 01``, the writer schema's
  8-byte CRC-64-AVRO fingerprint, then the body. Ebbtide's own producers write it by default.
- The Confluent wire format: a zero byte, the writer schema's 4-byte id in a schema registry
  (big-endian), then the body. What Confluent's serializers (and most Kafka tooling) write.

Pure: the registry is reached through a :class:`WriterSchemas` lookup handed in
(:mod:`ebbtide.schemas.registry` is the HTTP one), and the body is read with the writer's schema
resolved to the reader's (the newest version of ours), so any writer the registry holds that
resolves against ours decodes to the record our code knows.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Protocol

import fastavro

from ebbtide.schemas.codec import MAGIC, Codec, InvalidMessage

CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER = 5  # the zero byte and the 4-byte schema id
FRAMINGS = ("single-object", "confluent")


class RegistryUnavailable(RuntimeError):
    """The registry could not be asked (down, timing out, failing): nothing is known about the
    message, which must wait, not be dead-lettered. ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotRegistered(RuntimeError):
    """A producer on the Confluent wire format cannot get the id of the schema it writes with.
    Its message is one line, naming the registry, the subject and what to do."""


class WriterSchemas(Protocol):
    """Writer schemas by registry id."""

    def writer(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id``, known to resolve against the reader's.
        Raises :class:`InvalidMessage` when the registry has no such id or its schema does not
        resolve (the message is bad), :class:`RegistryUnavailable` when it cannot be asked."""
        ...


def confluent_schema_id(data: bytes | None) -> int | None:
    """The schema id of a Confluent-framed message; None for any other framing. A message that
    starts like one but is too short to carry the id raises :class:`InvalidMessage`."""
    if not data or data[:1] != CONFLUENT_MAGIC:
        return None
    if len(data) < CONFLUENT_HEADER:
        raise InvalidMessage(
            f"message too short for a Confluent header ({len(data)} of {CONFLUENT_HEADER} bytes)"
        )
    schema_id: int = struct.unpack(">I", data[1:CONFLUENT_HEADER])[0]
    return schema_id


def encode_confluent(codec: Codec, schema_id: int, datum: dict[str, Any]) -> bytes:
    """``datum`` in the Confluent wire format, written with ``codec``'s current schema, which the
    registry knows as ``schema_id``."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit the Confluent header's 4 bytes")
    framed = codec.encode(datum)  # single-object: the marker, the fingerprint, then the body
    return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + framed[len(MAGIC) + 8 :]


class WireDecoder:
    """Decodes either framing to ``codec``'s current schema; Confluent-framed messages need
    ``registry`` (None: they are refused, naming the setting)."""

    def __init__(self, codec: Codec, registry: WriterSchemas | None = None) -> None:
        self.codec = codec
        self.registry = registry

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """The record; raises :class:`InvalidMessage` (dead-letter it, with the reason) or
        :class:`RegistryUnavailable` (try again later)."""
        name = self.codec.name
        try:
            schema_id = confluent_schema_id(data)
        except InvalidMessage as exc:
            raise InvalidMessage(f"{name}: {exc.reason}") from None
        if schema_id is None:
            if data and len(data) >= 2 and data[:2] != MAGIC:
                raise InvalidMessage(
                    f"{name}: not Avro single-object encoded (c3 01) "
                    "nor Confluent-framed (00 and a schema id)"
                )
            return self.codec.decode(data)  # single-object, or too short for any header
        if self.registry is None:
            raise InvalidMessage(
                f"{name}: Confluent-framed (schema id {schema_id}) but no schema registry is set "
                "(EBBTIDE_SCHEMA_REGISTRY_URL)"
            )
        writer = self.registry.writer(schema_id)
        assert data is not None  # a schema id was read from it
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(data[CONFLUENT_HEADER:]),
                writer,
                self.codec.current.parsed,
                return_record_name=True,
            )
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise InvalidMessage(
                f"{name}: corrupt body for schema id {schema_id} ({type(exc).__name__})"
            ) from None
        if not isinstance(record, dict):
            raise InvalidMessage(f"{name}: body is not a record")
        return record
