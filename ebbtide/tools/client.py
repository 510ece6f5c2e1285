"""Publishing lifecycle events from a JSONL file (``ebbtide publish FILE.jsonl``), and the names
the tools, the CLI and the tests have always imported from here.

The client itself is :mod:`ebbtide.client` (typed events, the sync and asyncio publishers); the
JSON form and its validation are :mod:`ebbtide.client.records`. Each name below is re-exported
from there unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebbtide.client.outgoing import PublishFailed
from ebbtide.client.publisher import EventPublisher
from ebbtide.client.records import (
    ENVELOPE_FIELDS,
    HOLD_KEY_OPTIONS,
    MAX_EVENT_BYTES,
    NAMESPACE,
    InvalidEvent,
    check_announcement,
    check_size,
    encode,
    event_types,
    load_hold_signer,
    sign_hold,
    to_record,
)
from ebbtide.runtime.authenticity import MessageSigner

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def read_jsonl(
    path: Path, policy: Policy | None = None, hold_signer: MessageSigner | None = None
) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    """Each non-blank line of a JSONL file as (line number, Avro record or error); with a
    ``policy``, announcements it could not enforce are errors too. Legal hold events are signed
    with ``hold_signer``; without it, each is an error (:func:`sign_hold`)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, sign_hold(to_record(json.loads(line), policy), hold_signer)
            except json.JSONDecodeError as exc:
                yield number, LineError(number, f"not JSON ({exc.msg} at column {exc.colno})")
            except InvalidEvent as exc:
                yield number, LineError(number, str(exc))


__all__ = [
    "ENVELOPE_FIELDS",
    "HOLD_KEY_OPTIONS",
    "MAX_EVENT_BYTES",
    "NAMESPACE",
    "EventPublisher",
    "InvalidEvent",
    "LineError",
    "PublishFailed",
    "check_announcement",
    "check_size",
    "encode",
    "event_types",
    "load_hold_signer",
    "read_jsonl",
    "sign_hold",
    "to_record",
]
