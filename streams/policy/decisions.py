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
    "DELETION_OVERDUE",
    "ERASURE_HELD",
    "ERASURE_ANSWERED",
    "DUTY_OPENED",
    "DUTY_DONE",
    "DUTY_OVERDUE",
]


# What a store may answer to a deletion command (a receipt's outcome), and which answers count as
# done: FAILED means the copy is ordered again.
ANSWERED = ("DELETED", "NOT_FOUND", "ANONYMISED", "EXPIRES")
OUTCOMES = (*ANSWERED, "FAILED")
# Outcomes that touched something: at least one row (EXPIRES: at least one backup holding it).
# DELETED may count 0 rows: a log store drops an empty day's partition, which held no lines.
TOUCHING = ("ANONYMISED", "EXPIRES")


def answer_problem(outcome: str, rows: int) -> str | None:
    """Why a store's answer contradicts itself (and so cannot be certified), if it does."""
    if outcome not in OUTCOMES:
        return f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}"
    if rows < 0:
        return "rows: must be a whole number, 0 or more"
    if outcome in TOUCHING and rows == 0:
        return f"outcome {outcome} with 0 rows"
    if outcome == "NOT_FOUND" and rows != 0:
        return f"outcome NOT_FOUND with {rows} rows"
    return None


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


@dataclass(frozen=True)
class CertifiedCopy:
    """One store's answer for one copy of a record, as a deletion certificate lists it."""

    store: str
    category: str
    record: str
    command_id: str
    rule_id: str
    deadline: int
    ordered_at: int
    outcome: str  # DELETED, NOT_FOUND, ANONYMISED or EXPIRES
    rows: int
    executed_at: int  # for EXPIRES: when the last backup holding it expires
    # The rest of the store's signed receipt, so the certificate proves the store's word: the
    # receipt's reason, the store's key id and its signature (base64). None for an answer kept
    # before receipts were embedded.
    reason: str | None = None
    receipt_key_id: str | None = None
    receipt_signature: str | None = None


@dataclass(frozen=True)
class CertificateDue:
    """Every store has answered for these copies: the shell signs and publishes the certificate
    (seed 003 §13 "skriftlig bekrefte ... at sletting er foretatt")."""

    subject_id: str
    issued_at: int  # the latest order or execution time among the copies (replays give the same)
    policy_version: str
    copies: tuple[CertifiedCopy, ...]
