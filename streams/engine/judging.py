"""Judging one record: what the policy says of it now, given the subject's facts.

Its rule's deadline (``clocks.stamp``), cut short by a verified erasure where no rule obliges us
to keep it, and what suspends it (legal holds, restrictions); or, for a registry's copy of a
domain transferred out, no deletion at all. Every step that changes a record's fate judges it
here, and so do ``explain`` and the policy diff.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ebbtide.streams.engine.clocks import Stamp, stamp, transferred_out
from ebbtide.streams.engine.facts import Fact
from ebbtide.streams.engine.model import RecordState
from ebbtide.streams.engine.rights import Rights, erasure_for, hold_blockers
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy, Rule


def judge(
    record: RecordState,
    facts: tuple[Fact, ...],
    account: tuple[int, tuple[str, ...]] | None,
    rights: Rights,
    policy: Policy,
) -> tuple[RecordState, dict[str, str]]:
    """The record as the policy sees it now, and the reason for each blocker and the deadline."""
    rule = policy.rule_for(record.category)
    found = stamp(
        rule,
        record.category,
        record.ref,
        record.written_at,
        record.written_by,
        facts,
        account,
        policy.label,
        policy.zone,
    )
    if record.category == "domain_contact" and policy.is_registry(record.store):
        moved = transferred_out(facts, record.ref)
        if moved is not None:
            return _transferred(record, rule, moved)
    found, restricted_by = _erased(found, rule, rights, record.written_at)
    reasons = {"deadline": found.reason}
    blockers = _blockers(record, rights, reasons)
    if restricted_by:
        reasons["restricted"] = (
            f"erasure request {restricted_by}: kept under rule {rule.id if rule else '-'} "
            f"({rule.basis if rule else ''}); processing restricted to that purpose"
        )
    judged = _updated(
        record,
        status="pending",
        rule_id=rule.id if rule else None,
        deadline=found.deadline,
        caused_by=found.caused_by,
        blockers=blockers,
        restricted_by=restricted_by,
    )
    return judged, reasons


def _updated(record: RecordState, **fields: Any) -> RecordState:
    """``record`` with ``fields``, or the record itself when it holds them already: judging again
    mostly finds what it found before, and comparing costs less than a new copy."""
    if all(getattr(record, name) == value for name, value in fields.items()):
        return record
    return replace(record, **fields)


def _transferred(record: RecordState, rule: Rule | None, moved: Fact) -> tuple[RecordState, dict[str, str]]:
    """A registry's copy of a domain transferred out: settled, no deletion is ever sent for it."""
    why = (
        f"transferred out to another registrar at {calendar.iso(moved.time)}: the domain stays "
        f"registered, so no deletion is sent to {record.store}; our own copies go at their "
        "deadline (seed 001 'Data portability')"
    )
    settled = replace(
        record,
        status="transferred",
        rule_id=rule.id if rule else None,
        deadline=None,
        caused_by=(record.written_by, moved.event_id),
        blockers=(),
        restricted_by=None,
    )
    return settled, {"deadline": why}


def _erased(found: Stamp, rule: Rule | None, rights: Rights, written_at: int) -> tuple[Stamp, str | None]:
    """The stamp once a verified erasure request that covers the record is applied: the deadline
    brought forward to the erasure where no rule obliges us to keep it, else the record kept and
    restricted to its rule's purpose (the request's id)."""
    erasure = erasure_for(rights, written_at)
    if erasure is None:
        return found, None
    erased_at, request_id, event_id = erasure
    if rule is not None and rule.on_erasure != "delete":
        return found, request_id
    if found.deadline is None or found.deadline > erased_at:
        found = Stamp(
            rule,
            erased_at,
            (*found.caused_by, event_id),
            f"erasure request {request_id}: no rule obliges us to keep it (GDPR art. 17)",
        )
    return found, None


def _blockers(record: RecordState, rights: Rights, reasons: dict[str, str]) -> tuple[str, ...]:
    """What suspends the record's deletion (legal holds, then restrictions), each with its reason
    added to ``reasons``."""
    blockers = list(hold_blockers(rights, record.record_id, record.category))
    for hold in blockers:
        reasons[hold] = f"legal hold {hold[5:]}: deletion suspended until released (seed 001 'How we share')"
    for restriction in rights.restrictions:
        blockers.append(f"restriction:{restriction}")
        reasons[blockers[-1]] = (
            f"restriction {restriction}: processing limited to storage until resolved "
            "(GDPR art. 18, seed 004 'Begrensning')"
        )
    return tuple(blockers)
