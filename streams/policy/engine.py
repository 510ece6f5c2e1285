"""The policy engine: a pure fold of a subject's events into records, deadlines and decisions.

``apply_event`` folds one lifecycle event in, ``fire_due`` turns passed deadlines into
deletion commands, ``apply_receipt`` records a store's answer. Each returns a new
:class:`SubjectState` and what was decided; none reads the wall clock or does I/O.

Clocks are recomputed from the subject's facts in event-time order (ties broken by event
id), so late, duplicated and out-of-order events end in the same state as the same events
in order.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field, replace
from typing import Literal

from streams.policy import calendar
from streams.policy.decisions import Decision, DecisionKind, DeleteRecord, stable_id
from streams.policy.events import (
    AccountClosed,
    DeletionReported,
    Event,
    InvoiceIssued,
    PaymentRecorded,
    RecordWritten,
    ServiceCancelled,
    ServiceOrdered,
)
from streams.policy.rules import Policy, Rule

Status = Literal["pending", "ordered", "deleted"]


@dataclass(frozen=True, order=True)
class Fact:
    """A clock-relevant event, ordered by event time then id."""

    time: int
    event_id: str
    kind: str
    ref: str | None = None


@dataclass(frozen=True)
class RecordState:
    store: str
    category: str
    record_key: str
    ref: str | None
    written_by: str
    status: Status = "pending"
    rule_id: str | None = None
    deadline: int | None = None
    caused_by: tuple[str, ...] = ()
    command_id: str | None = None

    @property
    def record_id(self) -> str:
        return record_id(self.store, self.category, self.record_key)


@dataclass(frozen=True)
class SubjectState:
    subject_id: str
    seen: frozenset[str] = frozenset()
    facts: tuple[Fact, ...] = ()
    records: dict[str, RecordState] = field(default_factory=dict)

    def next_deadline(self) -> int | None:
        """The earliest deadline of a record still waiting for it, if any."""
        pending = [r.deadline for r in self.records.values() if _waiting(r)]
        return min(pending, default=None)  # type: ignore[type-var]

    def pending_deadlines(self) -> int:
        return sum(1 for r in self.records.values() if _waiting(r))


@dataclass(frozen=True)
class Outcome:
    state: SubjectState
    decisions: tuple[Decision, ...] = ()
    commands: tuple[DeleteRecord, ...] = ()


@dataclass(frozen=True)
class Stamp:
    rule: Rule | None
    deadline: int | None
    caused_by: tuple[str, ...]
    reason: str


def record_id(store: str, category: str, record_key: str) -> str:
    """A record's identity: keys are unique per store and category (one table each)."""
    return f"{store}/{category}/{record_key}"


def _waiting(record: RecordState) -> bool:
    return record.status == "pending" and record.deadline is not None


_FACT_KINDS: dict[type[Event], str] = {
    ServiceOrdered: "ServiceOrdered",
    ServiceCancelled: "ServiceCancelled",
    AccountClosed: "AccountClosed",
    InvoiceIssued: "InvoiceIssued",
    PaymentRecorded: "PaymentRecorded",
}


def new_subject(subject_id: str) -> SubjectState:
    return SubjectState(subject_id=subject_id)


def apply_event(state: SubjectState, event: Event, policy: Policy) -> Outcome:
    """Fold one lifecycle event in; a repeated event id changes nothing."""
    if event.event_id in state.seen:
        return Outcome(state)
    seen = state.seen | {event.event_id}
    facts = state.facts
    records = state.records
    if isinstance(event, RecordWritten):
        records = _written(records, event)
    else:
        fact = _fact(event)
        if fact is not None:
            facts_list = list(facts)
            insort(facts_list, fact)
            facts = tuple(facts_list)
    return _restamp(replace(state, seen=seen, facts=facts, records=records), state, policy)


def fire_due(state: SubjectState, now: int, policy: Policy) -> Outcome:
    """Order the deletion of every record whose deadline is at or before ``now``."""
    due = [r for r in state.records.values() if _waiting(r) and r.deadline <= now]  # type: ignore[operator]
    if not due:
        return Outcome(state)
    records = dict(state.records)
    decisions: list[Decision] = []
    commands: list[DeleteRecord] = []
    for record in sorted(due, key=lambda r: r.record_id):
        assert record.rule_id is not None and record.deadline is not None
        command_id = stable_id(
            "delete", state.subject_id, record.record_id, record.written_by,
            record.rule_id, record.deadline, policy.label,
        )
        records[record.record_id] = replace(record, status="ordered", command_id=command_id)
        commands.append(
            DeleteRecord(
                command_id=command_id,
                subject_id=state.subject_id,
                store=record.store,
                category=record.category,
                record_key=record.record_key,
                rule_id=record.rule_id,
                policy_version=policy.label,
                deadline=record.deadline,
                issued_at=now,
            )
        )
        rule = _rule_by_id(policy, record.rule_id)
        decisions.append(
            _decision(
                state.subject_id, record, "DELETION_ORDERED", rule, record.deadline,
                f"deadline {calendar.iso(record.deadline)} passed (clock at {calendar.iso(now)})",
                policy, record.caused_by,
            )
        )
    return Outcome(replace(state, records=records), tuple(decisions), tuple(commands))


def apply_receipt(state: SubjectState, report: DeletionReported, policy: Policy) -> Outcome:
    """Record a store's answer; a receipt for an unknown or settled command changes nothing."""
    record = state.records.get(record_id(report.store, report.category, report.record_key))
    if record is None or record.command_id != report.command_id or record.status != "ordered":
        return Outcome(state)
    rule = _rule_by_id(policy, record.rule_id)
    if report.outcome == "FAILED":
        decision = _decision(
            state.subject_id, record, "DELETION_FAILED", rule, record.deadline,
            f"store reported failure: {report.reason or 'no reason given'}",
            policy, (report.command_id,),
        )
        return Outcome(state, (decision,))
    records = dict(state.records)
    records[record.record_id] = replace(record, status="deleted")
    what = "deleted" if report.outcome == "DELETED" else "already gone from the store"
    decision = _decision(
        state.subject_id, record, "DELETION_CONFIRMED", rule, record.deadline,
        f"store confirmed: {what}", policy, (report.command_id,),
    )
    return Outcome(replace(state, records=records), (decision,))


def _written(records: dict[str, RecordState], event: RecordWritten) -> dict[str, RecordState]:
    key = record_id(event.store, event.category, event.record_key)
    current = records.get(key)
    if current is not None and current.status != "deleted":
        return records  # already known; a later write does not restart its life
    out = dict(records)
    out[key] = RecordState(
        store=event.store,
        category=event.category,
        record_key=event.record_key,
        ref=event.ref,
        written_by=event.event_id,
    )
    return out


def _fact(event: Event) -> Fact | None:
    kind = _FACT_KINDS.get(type(event))
    if kind is None:
        return None
    ref = getattr(event, "service_id", None) or getattr(event, "invoice_id", None)
    ref = ref or getattr(event, "payment_id", None)
    return Fact(event.time, event.event_id, kind, ref)


def _restamp(state: SubjectState, before: SubjectState, policy: Policy) -> Outcome:
    decisions: list[Decision] = []
    records = dict(state.records)
    account = _account_clock(state.facts)
    for rid in sorted(records):
        record = records[rid]
        if record.status != "pending":
            continue
        stamp = _stamp(record, state.facts, account, policy)
        old = before.records.get(rid)
        is_new = old is None or old.written_by != record.written_by
        rule_id = stamp.rule.id if stamp.rule else None
        if not is_new and (record.rule_id, record.deadline) == (rule_id, stamp.deadline):
            continue
        kind: DecisionKind
        if is_new:
            kind = "STAMPED"
        elif stamp.deadline is None:
            kind = "CLOCK_STOPPED"
        else:
            kind = "DEADLINE_MOVED"
        record = replace(record, rule_id=rule_id, deadline=stamp.deadline, caused_by=stamp.caused_by)
        records[rid] = record
        decisions.append(
            _decision(
                state.subject_id, record, kind, stamp.rule, stamp.deadline,
                stamp.reason, policy, stamp.caused_by,
            )
        )
    return Outcome(replace(state, records=records), tuple(decisions))


def _stamp(
    record: RecordState,
    facts: tuple[Fact, ...],
    account: tuple[int, tuple[str, ...]] | None,
    policy: Policy,
) -> Stamp:
    rule = policy.rule_for(record.category)
    if rule is None:
        return Stamp(None, None, (record.written_by,),
                     f"no rule of policy {policy.label} covers category {record.category}: kept")
    if rule.clock == "account":
        if account is None:
            return Stamp(rule, None, (record.written_by,),
                         "clock not started: the account is open or a service is active")
        start, causes = account
        deadline = calendar.add_years(start, rule.keep_years)
        return Stamp(rule, deadline, (record.written_by, *causes),
                     f"{rule.reason}; clock started {calendar.iso(start)}")
    # bookkeeping: the financial year of the invoice or payment the record belongs to
    issued = [f for f in facts if f.ref == record.ref and f.kind in ("InvoiceIssued", "PaymentRecorded")]
    if record.ref is None or not issued:
        return Stamp(rule, None, (record.written_by,),
                     "clock not started: no invoice or payment event names this record's ref yet")
    last = issued[-1]
    year_end = calendar.end_of_financial_year(last.time)
    deadline = calendar.add_years(year_end, rule.keep_years)
    return Stamp(rule, deadline, (record.written_by, last.event_id),
                 f"{rule.reason}; financial year ended {calendar.iso(year_end)}")


def _account_clock(facts: tuple[Fact, ...]) -> tuple[int, tuple[str, ...]] | None:
    """When the account clock started, and by which events; None while it is not running."""
    active: set[str | None] = set()
    closed: Fact | None = None
    last_cancel: Fact | None = None
    for fact in facts:
        if fact.kind == "ServiceOrdered":
            active.add(fact.ref)
            closed = None  # a new order stops the clock (reactivation)
        elif fact.kind == "ServiceCancelled":
            active.discard(fact.ref)
            last_cancel = fact
        elif fact.kind == "AccountClosed":
            closed = fact
    if closed is None or active:
        return None
    if last_cancel is not None and last_cancel.time > closed.time:
        return last_cancel.time, (closed.event_id, last_cancel.event_id)
    return closed.time, (closed.event_id,)


def _rule_by_id(policy: Policy, rule_id: str | None) -> Rule | None:
    return next((r for r in policy.rules if r.id == rule_id), None)


def _decision(
    subject_id: str,
    record: RecordState,
    kind: DecisionKind,
    rule: Rule | None,
    deadline: int | None,
    reason: str,
    policy: Policy,
    caused_by: tuple[str, ...],
) -> Decision:
    rule_id = rule.id if rule else None
    return Decision(
        decision_id=stable_id(subject_id, record.record_id, kind, rule_id, deadline, caused_by, policy.label),
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
