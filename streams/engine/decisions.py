"""What the engine decides: explainable decisions and imperative deletion commands, and the
builders every engine step makes its decisions with."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ebbtide.streams.engine.rights import Duty
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy, Rule

if TYPE_CHECKING:  # the state model holds decisions: it imports this module
    from ebbtide.streams.engine.model import RecordState

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
    "CLOCK_APPLIED",
    "KEY_SHREDDED",
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


def record_decision(
    subject_id: str,
    record: RecordState,
    kind: DecisionKind,
    rule: Rule | None,
    deadline: int | None,
    reason: str,
    policy: Policy,
    caused_by: tuple[str, ...],
    trigger: str = "",
) -> Decision:
    """``trigger`` (the event, tick or receipt that led here) keeps ids unique when the same
    change happens twice, e.g. a hold placed, released, placed and released again."""
    rule_id = rule.id if rule else None
    return Decision(
        decision_id=stable_id(
            subject_id,
            record.record_id,
            kind,
            rule_id,
            deadline,
            caused_by,
            record.blockers,
            policy.label,
            trigger,
            reason,
        ),
        subject_id=subject_id,
        record=record.record_id,
        category=record.category,
        kind=kind,
        rule_id=rule_id,
        clause=rule.source if rule else None,
        basis=rule.basis if rule else None,
        deadline=deadline,
        reason=reason,
        policy_version=policy.label,
        caused_by=caused_by,
    )


def duty_decision(
    subject_id: str, duty: Duty, kind: DecisionKind, reason: str, policy: Policy, trigger: str = ""
) -> Decision:
    """A decision about a duty (``record`` is ``duty/<duty id>``), caused by the events that
    opened it and, if done, did it."""
    caused_by = (duty.opened_by,) + ((duty.done_by,) if duty.done_by else ())
    return Decision(
        decision_id=stable_id(subject_id, duty.duty_id, kind, duty.due, caused_by, policy.label, trigger),
        subject_id=subject_id,
        record=f"duty/{duty.duty_id}",
        category="duty",
        kind=kind,
        rule_id=None,
        clause=duty.source,
        basis=None,
        deadline=duty.due,
        reason=reason,
        policy_version=policy.label,
        caused_by=caused_by,
    )


def record_changes(
    subject_id: str,
    old: RecordState | None,
    new: RecordState,
    reasons: dict[str, str],
    policy: Policy,
    trigger: str,
) -> list[Decision]:
    """What changed for a record judged again (``old``: as it was, None if it is new): its
    stamp, deadline, holds, restrictions, or its transfer out."""
    rule = policy.rule(new.rule_id)
    out: list[Decision] = []

    def add(kind: DecisionKind, reason: str) -> None:
        out.append(
            record_decision(subject_id, new, kind, rule, new.deadline, reason, policy, new.caused_by, trigger)
        )

    if new.status == "transferred":
        if old is None or old.status != "transferred":
            add("STAMPED" if old is None else "CLOCK_STOPPED", reasons["deadline"])
        return out
    if old is None:
        blocked = "; ".join(reasons[b] for b in new.blockers)
        add("STAMPED", reasons["deadline"] + (f"; {blocked}" if blocked else ""))
        if new.restricted_by:
            add("RESTRICTED", reasons["restricted"])
        return out
    if (old.rule_id, old.deadline) != (new.rule_id, new.deadline):
        add("CLOCK_STOPPED" if new.deadline is None else "DEADLINE_MOVED", reasons["deadline"])
    for blocker in new.blockers:
        if blocker not in old.blockers:
            add("RESTRICTED" if blocker.startswith("restriction:") else "HELD", reasons[blocker])
    for blocker in old.blockers:
        if blocker not in new.blockers:
            add(
                "UNRESTRICTED" if blocker.startswith("restriction:") else "RELEASED",
                f"{blocker} no longer applies",
            )
    if new.restricted_by and new.restricted_by != old.restricted_by:
        add("RESTRICTED", reasons["restricted"])
    return out


def duty_changes(
    subject_id: str, before: dict[str, Duty], after: dict[str, Duty], policy: Policy, trigger: str
) -> list[Decision]:
    """Duties opened (an erasure request also held until verified) and duties done or closed."""
    out = []
    for duty_id in sorted(after):
        duty, old = after[duty_id], before.get(duty_id)
        if old is None:
            out.append(
                duty_decision(
                    subject_id,
                    duty,
                    "DUTY_OPENED",
                    f"{duty.kind} due by {calendar.iso(duty.due)} ({duty.source})",
                    policy,
                    trigger,
                )
            )
            if duty.kind == "erasure_response" and duty.done_at is None:
                out.append(
                    duty_decision(
                        subject_id,
                        duty,
                        "ERASURE_HELD",
                        "identity not verified yet: the request is held, not executed (seed 004 'Sletting')",
                        policy,
                        trigger,
                    )
                )
        if duty.done_at is not None and (old is None or old.done_at is None):
            out.append(
                duty_decision(
                    subject_id,
                    duty,
                    "DUTY_DONE",
                    f"{duty.kind} done at {calendar.iso(duty.done_at)}"
                    if duty.closed_as is None
                    else f"{duty.kind} closed at {calendar.iso(duty.done_at)}: "
                    f"the request was {duty.closed_as}",
                    policy,
                    trigger,
                )
            )
    return out
