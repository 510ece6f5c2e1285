"""A request body to the Avro records it carries, or the problems that refuse it.

The body is one event (a JSON object) or a batch (a JSON array of them), each in the JSON form of
``ebbtide publish`` (docs/events.md). Every event is checked by the client's own
:func:`~ebbtide.tools.client.to_record` (schema, sizes, the policy's store map) and
:func:`~ebbtide.tools.client.sign_hold`; nothing here re-implements a rule. A problem names the
batch index and the field, never a value of the request: the client's messages quote some
values (an unknown event type, a store), and those quotes are replaced before they are answered.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ebbtide.runtime.authenticity import HOLD_EVENTS
from ebbtide.tools.client import NAMESPACE, InvalidEvent, sign_hold, to_record

if TYPE_CHECKING:
    from ebbtide.runtime.authenticity import MessageSigner
    from ebbtide.streams.policy.rules import Policy

FIELD = re.compile(r"\bfield (?:'([^']+)'|([A-Za-z0-9_.\[\]]+))")
NAMES_STORE = "RecordWritten names store"
HIDDEN = "(a value of the request)"
MAX_DEPTH = 16  # nested arrays and objects of a body: a batch of events with list fields needs 4


@dataclass(frozen=True)
class Problem:
    """Why one event (``index`` in the batch; 0 for a single event) or the body (None) is refused."""

    index: int | None
    field: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class Refused(Exception):
    """The request is refused whole: HTTP ``status``, a ``title`` and its problems."""

    def __init__(self, status: int, title: str, problems: list[Problem] | None = None) -> None:
        super().__init__(title)
        self.status, self.title, self.problems = status, title, problems or []


@dataclass(frozen=True)
class Accepted:
    """One valid event: its Avro ``record`` (signed if a legal hold), and the ``fingerprint`` of
    its JSON form (with the producer set), which tells a repeated event from another that reuses
    its id."""

    index: int
    record: dict[str, Any]
    fingerprint: str

    @property
    def key(self) -> tuple[str, str]:
        """(subject id, event id): the worker's own scope of an event id (per subject)."""
        return (str(self.record["subject_id"]), str(self.record["event_id"]))


def events_of(body: bytes, max_events: int) -> list[Any]:
    """The events of a body (an object: one; an array: a batch of at most ``max_events``)."""
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError:
        raise Refused(400, "the body is not JSON (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise Refused(
            400, f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:  # the parser's own depth limit: [[[[...]]]]
        raise Refused(400, f"the body nests arrays or objects deeper than {MAX_DEPTH}") from None
    if _deeper_than(parsed, MAX_DEPTH):  # nothing after this walks a deep value recursively
        raise Refused(400, f"the body nests arrays or objects deeper than {MAX_DEPTH}")
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise Refused(422, "the body must be one event (a JSON object) or a batch (a JSON array)")
    if not parsed:
        raise Refused(422, "the batch is empty")
    if len(parsed) > max_events:
        raise Refused(413, f"the batch has {len(parsed)} events, over the {max_events} allowed")
    return parsed


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def accept(
    events: list[Any],
    producer: str,
    policy: Policy,
    hold_signer: MessageSigner | None,
    hold_producers: frozenset[str] = frozenset(),
) -> list[Accepted]:
    """Every event as a record, its ``producer`` set to the authenticated one; :class:`Refused`
    403 naming every legal hold event if ``producer`` is not one of ``hold_producers`` (the
    service signs them: any producer could otherwise place or lift a hold), else 422 naming every
    invalid event if any is."""
    accepted: list[Accepted] = []
    problems: list[Problem] = []
    forbidden = [forbidden_hold(i, e) for i, e in enumerate(events) if producer not in hold_producers]
    if any(forbidden):
        found = [p for p in forbidden if p is not None]
        raise Refused(403, f"{len(found)} legal hold event(s) this producer may not publish", found)
    for index, event in enumerate(events):
        if isinstance(event, dict):
            event = {**event, "producer": producer}
        try:
            record = sign_hold(to_record(event, policy), hold_signer)
        except InvalidEvent as exc:
            problems.append(problem(index, str(exc), event))
            continue
        accepted.append(Accepted(index, record, fingerprint(event)))
    if problems:
        raise Refused(422, f"{len(problems)} invalid event(s); nothing was published", problems)
    return accepted


def forbidden_hold(index: int, event: Any) -> Problem | None:
    """The problem of a legal hold event (its type, one of :data:`HOLD_EVENTS`) from a producer
    not allowed to publish one; None for any other event."""
    kind = event.get("type") if isinstance(event, dict) else None
    if not isinstance(kind, str) or kind not in HOLD_EVENTS:
        return None
    message = (
        f"field type: {kind} is a legal hold event; this producer is not in EBBTIDE_INGEST_HOLD_PRODUCERS"
    )
    return Problem(index, "type", message)


def problem(index: int, message: str, event: Any) -> Problem:
    """The problem of ``message`` about ``event``: the field it names, quoted values hidden."""
    for value in _strings(event):
        for form in {value, value.lower(), value.upper()}:
            message = message.replace(repr(form), HIDDEN)
    found = FIELD.search(message)
    field = (found.group(1) or found.group(2)) if found else None
    if field is None and message.startswith(NAMES_STORE):
        field = "payload.store"
    if field is not None and field.startswith(f"{NAMESPACE}."):  # the schema's name of a payload field
        field = "payload." + field.rsplit(".", 1)[-1]
    return Problem(index, field, message)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value:
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def fingerprint(event: Any) -> str:
    """A digest of an event's JSON form (keys sorted): equal for the same event sent again."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
