"""The content of a deletion certificate: each store's signed answer for every copy of a round.

The engine decides when a certificate is due and what it says; the worker signs and publishes it
(``streams/worker/``), and the certificate document renders and checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ebbtide.streams.policy.rules import Policy

if TYPE_CHECKING:  # the state model names certificates in its outcome: it imports this module
    from ebbtide.streams.engine.model import SubjectState


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


def certificate_due(state: SubjectState, policy: Policy) -> CertificateDue | None:
    """A certificate for the copies answered since the last one, once no store owes an answer
    (a copy whose deletion failed and is ordered again owes one too)."""
    if any(r.status == "ordered" or (r.status == "pending" and r.failures) for r in state.records.values()):
        return None
    copies = []
    for rid in sorted(state.records):
        r = state.records[rid]
        if r.status != "deleted" or r.certified or r.answer is None or r.command_id is None:
            continue
        outcome, rows, executed_at, reason, receipt_key_id, receipt_signature = r.answer
        copies.append(
            CertifiedCopy(
                r.store,
                r.category,
                rid,
                r.command_id,
                r.rule_id or "erasure",
                r.deadline if r.deadline is not None else 0,
                r.ordered_at if r.ordered_at is not None else 0,
                outcome,
                rows,
                executed_at,
                reason,
                receipt_key_id,
                receipt_signature,
            )
        )
    if not copies:
        return None
    issued_at = max(
        max(c.ordered_at for c in copies),
        max((c.executed_at for c in copies if c.outcome != "EXPIRES"), default=0),
    )
    return CertificateDue(state.subject_id, issued_at, policy.label, tuple(copies))
