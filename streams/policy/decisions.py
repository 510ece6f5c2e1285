"""What the engine decides: explainable decisions and imperative deletion commands."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

DecisionKind = Literal[
    "STAMPED",
    "DEADLINE_MOVED",
    "CLOCK_STOPPED",
    "HELD",
    "RELEASED",
    "RESTRICTED",
    "UNRESTRICTED",
    "DELETION_ORDERED",
    "DELETION_CONFIRMED",
    "DELETION_FAILED",
    "ERASURE_HELD",
    "ERASURE_ANSWERED",
    "DUTY_OPENED",
    "DUTY_DONE",
    "DUTY_OVERDUE",
]


def stable_id(*parts: str | int | tuple[str, ...] | None) -> str:
    """A deterministic id from the parts that make a thing what it is.

    The parts are strings, ints, None and tuples of strings, whose repr is stable across runs
    and Python versions, so the same parts always give the same id."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Decision:
    """One step of the engine, with everything an auditor needs to check it."""

    decision_id: str
    subject_id: str
    record: str
    category: str
    kind: DecisionKind
    rule_id: str | None
    clause: str | None
    basis: str | None
    deadline: int | None
    reason: str
    policy_version: str
    caused_by: tuple[str, ...]


@dataclass(frozen=True)
class DeleteRecord:
    """Command to one store: delete this record. Keys only, no personal data."""

    command_id: str
    subject_id: str
    store: str
    category: str
    record_key: str
    rule_id: str
    policy_version: str
    deadline: int
    issued_at: int


@dataclass(frozen=True)
class AnswerItem:
    record: str
    category: str
    action: Literal["DELETE", "KEEP"]
    rule_id: str | None
    basis: str | None
    reason: str
    until: str | None  # ISO date the kept record will be deleted, None while its clock is stopped


@dataclass(frozen=True)
class ErasureAnswer:
    """The answer to an erasure request (GDPR art. 12, 17): what is deleted, what is kept, why."""

    request_id: str
    subject_id: str
    answered_at: int
    due_by: int
    policy_version: str
    items: tuple[AnswerItem, ...]
