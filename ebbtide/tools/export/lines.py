"""One exported message as a JSONL line, and as a CSV row of flat columns.

JSONL (the format ``ebbtide audit verify --export`` reads): one JSON object per line,
``{"topic", "partition", "offset", "timestamp" (epoch ms), "key" (str or null), "raw" (base64 of
the value's bytes exactly as on the broker, null for a tombstone), "value" (the decoded record,
:mod:`.decoding`), "selected" (bool)}``, plus ``"decode_error"`` on a line whose value could not
be decoded.

CSV: the same messages, one row each, in the same order: the columns of :data:`COMMON` and then
the file's own (:data:`COLUMNS`); checkpoints have no CSV. A nested value (a list, a record) is
one cell of compact JSON. A text cell that a spreadsheet would run as a formula (starting with
``= + - @``, a tab or a carriage return) is prefixed with ``'`` (the JSONL keeps the exact value).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from ebbtide.tools.export.decoding import ms_text
from ebbtide.tools.export.reading import Message

Column = tuple[str, Callable[[Any], Any]]


def json_line(message: Message) -> str:
    """The message's JSONL line (with its newline)."""
    f = message.fetched
    line: dict[str, Any] = {
        "topic": f.topic,
        "partition": f.partition,
        "offset": f.offset,
        "timestamp": f.timestamp,
        "key": f.key,
        "raw": None if f.raw is None else base64.b64encode(f.raw).decode("ascii"),
        "value": message.value,
        "selected": message.selected,
    }
    if message.decode_error is not None:
        line["decode_error"] = message.decode_error
    return json.dumps(line, ensure_ascii=False, sort_keys=False, separators=(",", ":")) + "\n"


def field(path: str) -> Callable[[Any], Any]:
    """The value at a dotted ``path`` of a decoded record (None where it is missing)."""
    parts = path.split(".")

    def get(value: Any) -> Any:
        for part in parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get


def _payload_type(value: Any) -> Any:
    payload = value.get("payload") if isinstance(value, Mapping) else None
    if isinstance(payload, Mapping) and len(payload) == 1:
        return next(iter(payload)).rsplit(".", 1)[-1]
    return None


def _payload_fields(value: Any) -> Any:
    payload = value.get("payload") if isinstance(value, Mapping) else None
    if isinstance(payload, Mapping) and len(payload) == 1:
        return next(iter(payload.values()))
    return None


def _fields(names: str) -> list[Column]:
    """Columns of the top-level fields named (separated by spaces), each under its own name."""
    return [(name, field(name)) for name in names.split()]


COMMON: tuple[str, ...] = ("topic", "partition", "offset", "timestamp", "key", "selected", "decode_error")

# The columns after COMMON, per file; documented in docs/auditing.md ("Export for a regulator").
COLUMNS: dict[str, list[Column]] = {
    "events": [
        *_fields("event_id subject_id event_time producer"),
        ("type", _payload_type),
        ("payload", _payload_fields),
    ],
    "decisions": _fields(
        "decision_id subject_id record category kind rule_id clause basis deadline reason "
        "policy_version caused_by input seq prev_hash"
    ),
    "commands": _fields(
        "command_id subject_id store category record_key rule_id policy_version deadline issued_at "
        "signer_key_id signature"
    ),
    "receipts": _fields(
        "command_id subject_id store category record_key outcome rows reason executed_at "
        "signer_key_id signature"
    ),
    "certificates": [
        ("subject_id", field("certificate.subject_id")),
        ("issued_at", field("certificate.issued_at")),
        ("issuer", field("certificate.issuer")),
        ("policy_version", field("certificate.policy_version")),
        ("format", field("certificate.format")),
        ("entries", field("certificate.entries")),
        ("key_id", field("signature.key_id")),
        ("signature", field("signature.value")),
    ],
    "answers": _fields("request_id subject_id answered_at due_by policy_version items"),
}

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """A CSV cell: empty for null, JSON for nested values, times and text as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "'" + text if text.startswith(_FORMULA_START) else text


def header(name: str) -> list[str]:
    """The CSV header of one file."""
    return [*COMMON, *(column for column, _ in COLUMNS[name])]


def csv_row(name: str, message: Message) -> list[str]:
    """The CSV row of one message of file ``name`` (columns as :func:`header`)."""
    f = message.fetched
    common = (
        f.topic,
        f.partition,
        f.offset,
        ms_text(f.timestamp),
        f.key,
        message.selected,
        message.decode_error,
    )
    own = (get(message.value) for _, get in COLUMNS[name])
    return [cell(v) for v in (*common, *own)]
