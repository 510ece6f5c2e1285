"""Avro schemas of Ebbtide's topics and their wire codec.

Every message Ebbtide writes is framed with Avro single-object encoding (two marker bytes and
the writer schema's CRC-64-AVRO fingerprint), so a reader always knows which versioned
``.avsc`` file wrote it and can resolve it to its own schema. Lifecycle events may also come
in the Confluent wire format (a schema registry's id for the writer schema): ``wire`` decodes
both, ``registry`` asks the registry.
"""

from ebbtide.schemas.codec import (
    CHECKPOINT,
    CLOCK_TICK,
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    ERASURE_ANSWER,
    LIFECYCLE_EVENT,
    Codec,
    InvalidMessage,
    SchemaFile,
    codec_for,
    dead_letter_body,
)

__all__ = [
    "CHECKPOINT",
    "CLOCK_TICK",
    "DECISION",
    "DELETION_COMMAND",
    "DELETION_RECEIPT",
    "ERASURE_ANSWER",
    "LIFECYCLE_EVENT",
    "Codec",
    "InvalidMessage",
    "SchemaFile",
    "codec_for",
    "dead_letter_body",
]
