"""What ``ebbtide log`` knows of each topic it reads: its name under the prefix, how its messages
decode, which field is a message's subject, its kind and its time, and the kinds there are.

The time of a message (what ``--since``/``--until`` compare, and what a line starts with) is the
message's own time where its schema has one, else the broker's timestamp: a decision and a dead
letter have no time of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ebbtide.runtime.metrics import DLQ_REASONS
from ebbtide.runtime.settings import Topics
from ebbtide.schemas import DECISION, DELETION_COMMAND, DELETION_RECEIPT, ERASURE_ANSWER, codec_for
from ebbtide.streams import certificates

BROKER_TIME = "broker"  # the time field of a topic whose messages have no time of their own
NAMES = ("decisions", "commands", "receipts", "answers", "certificates", "dlq")


class UnknownKind(ValueError):
    """A ``--kind`` the topic does not have; the message lists the ones it has."""


def enum_symbols(schema: str, field: str) -> tuple[str, ...]:
    """The symbols of an Avro enum field of the newest version of ``schema``."""
    parsed = codec_for(schema).current.parsed
    for item in parsed["fields"]:
        if item["name"] == field:
            return tuple(item["type"]["symbols"])
    raise KeyError(f"{schema} has no field {field}")


def _avro(schema: str) -> Callable[[bytes | None], dict[str, Any]]:
    return codec_for(schema).decode


def _certificate(value: bytes | None) -> dict[str, Any]:
    """A certificate document (strict JSON: no duplicate keys), checked to be one."""
    if not value:
        raise ValueError("empty message")
    document = certificates.loads(value)
    certificates.parse_document(document)  # ValueError naming what is malformed
    return dict(document)


@dataclass(frozen=True)
class LogTopic:
    """One kind of topic ``ebbtide log`` reads."""

    name: str  # decisions, commands, receipts, answers, certificates, dlq
    decode: Callable[[bytes | None], dict[str, Any]] | None  # None: dead letters, never decoded
    time_field: str  # a field of the decoded value, or BROKER_TIME
    kind_field: str | None  # what --kind matches (None: the topic has no kinds)
    kinds: tuple[str, ...]  # the valid --kind values
    kind_means: str  # what a kind is here, for the usage error
    by_subject: bool  # keyed by subject id, each subject on the partition its key gives

    def check_kind(self, kind: str | None) -> None:
        """Raise :class:`UnknownKind` unless ``kind`` is None or one of this topic's kinds."""
        if kind is None:
            return
        if not self.kinds:
            raise UnknownKind(
                f"log {self.name} has no --kind (it applies to decisions, commands, receipts, dlq)"
            )
        if kind not in self.kinds:
            raise UnknownKind(f"{kind!r} is not a {self.kind_means} (valid: {', '.join(self.kinds)})")


def log_topic(name: str, categories: tuple[str, ...] = ()) -> LogTopic:
    """The topic ``name`` (one of :data:`NAMES`); ``categories``: the store map's categories,
    the kinds of ``commands``."""
    if name == "decisions":
        kinds = enum_symbols(DECISION, "kind")
        return LogTopic(name, _avro(DECISION), BROKER_TIME, "kind", kinds, "decision kind", True)
    if name == "commands":
        return LogTopic(
            name, _avro(DELETION_COMMAND), "issued_at", "category", categories, "data category", True
        )
    if name == "receipts":
        kinds = enum_symbols(DELETION_RECEIPT, "outcome")
        return LogTopic(
            name, _avro(DELETION_RECEIPT), "executed_at", "outcome", kinds, "receipt outcome", True
        )
    if name == "answers":
        return LogTopic(name, _avro(ERASURE_ANSWER), "answered_at", None, (), "", True)
    if name == "certificates":
        return LogTopic(name, _certificate, "issued_at", None, (), "", True)
    if name == "dlq":
        return LogTopic(name, None, BROKER_TIME, "reason", tuple(DLQ_REASONS), "dead-letter reason", False)
    raise KeyError(name)


def topic_names(name: str, topics: Topics, stores: tuple[str, ...]) -> list[str]:
    """The Kafka topics of ``name``: one per store for ``commands``, else one."""
    if name == "commands":
        return [topics.commands(store) for store in stores]
    return [getattr(topics, name)]
