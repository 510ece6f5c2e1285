"""The policy engine: a pure fold of a subject's events into records, deadlines and decisions.

``apply_event`` folds one lifecycle event in, ``fire_due`` turns passed deadlines into
deletion commands (and passed duties into overdue decisions), ``apply_receipt`` records a
store's answer. Each returns a new :class:`SubjectState` and what was decided; none reads the
wall clock or does I/O.

Everything a record's fate depends on (its clock, holds, restrictions, erasure) is derived
again from the subject's facts in event-time order, so late, duplicated and out-of-order
events end in the same state as the same events in order.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field, replace
from typing import Literal

from streams.policy import calendar
from streams.policy.clocks import Stamp, account_clock, deadline_from, stamp, transferred_out
from streams.policy.decisions import (
    AnswerItem,
    CertificateDue,
    CertifiedCopy,
    Decision,
    DecisionKind,
    DeleteRecord,
    ErasureAnswer,
    stable_id,
)
from streams.policy.events import DeletionReported, Event, RecordWritten
from streams.policy.facts import Fact, fact_of
from streams.policy.rights import Duty, Rights, duties_of, erasure_for, hold_blockers, rights_of
from streams.policy.rules import Policy, Rule

# transferred: a registry's copy of a domain transferred out to another registrar. The domain
# stays registered there, so no deletion is ever sent for it (seed 001 "Data portability").
Status = Literal["pending", "ordered", "deleted", "transferred"]
# Judged again when a fact changes: a transferred domain may come back (registered with us again).
JUDGED: tuple[Status, ...] = ("pending", "transferred")
CHASE_BACKOFF_CAP = 8  # an unanswered command is sent again at most every 8 service levels
# The re-sends after 1, 2, 4 and 8 service levels are the escalation steps: each reports the copy
# overdue (DELETION_OVERDUE). Past the cap the command is still sent every 8 service levels, but
# with no new decision: the copy stays overdue (gauge, `ebbtide overdue`) until its store answers.
ESCALATION_STEPS = CHASE_BACKOFF_CAP.bit_length()  # 4: after 1, 2, 4 and 8 service levels
Answer = tuple[str, int, int, str | None, str | None, str | None]


def record_id(store: str, category: str, record_key: str) -> str:
    """A record's identity: keys are unique per store and category (one table each)."""
    return f"{store}/{category}/{record_key}"


@dataclass(frozen=True)
class RecordState:
    store: str
    category: str
    record_key: str
    ref: str | None
    written_by: str
    written_at: int
    status: Status = "pending"
    rule_id: str | None = None
    deadline: int | None = None
    caused_by: tuple[str, ...] = ()
    command_id: str | None = None
    blockers: tuple[str, ...] = ()  # why deletion is suspended: hold:<id>, restriction:<id>
    restricted_by: str | None = None  # erasure request that limited processing to the rule's purpose
    failures: int = 0  # failed deletion attempts so far
    ordered_at: int | None = None  # pipeline time the current command was first sent
    chase_at: int | None = None  # ordered, no receipt yet: send again at this time (see ESCALATION_STEPS)
    reissues: int = 0  # times the current command was sent again for want of a receipt
    # (outcome, rows, executed_at, reason, the store's key id, its receipt signature in base64);
    # the signature is kept until the copy is certified (the certificate embeds it), then dropped.
    answer: Answer | None = None
    certified: bool = False  # listed in a deletion certificate already
    # Set once the copy is pruned (see ``prune``): the ``issued_at`` of the deletion certificate
    # that lists it, or 0 for a copy certified before copies were pruned.
    certificate: int | None = None
    # Announced again after an earlier copy under this key was deleted: the announcements of the
    # earlier copies, so a late or replayed one of them is not taken for this one (see ``covers``).
    earlier: tuple[str, ...] = ()

    @property
    def record_id(self) -> str:
        return record_id(self.store, self.category, self.record_key)

    @property
    def pruned(self) -> bool:
        """Deleted, certified and reduced to what the engine still needs (see ``prune``)."""
        return self.certificate is not None

    def covers(self, event_id: str) -> bool:
        """Whether the announcement ``event_id`` is one this copy already took in: the one that
        announced this copy once it is deleted (its id may be gone from ``seen``, see ``prune``),
        or one of an earlier copy under its key (``earlier``). Any other announcement of a
        deleted copy is news: the store holds the record again (a restored backup, a late
        sync), so it is a new record, deleted in its turn."""
        if self.status == "deleted" and event_id == self.written_by:
            return True
        return event_id in self.earlier

    def overdue(self, now: int | None = None) -> bool:
        """Ordered and not answered within its store's service level: chased at least once or,
        given ``now``, its chase time has passed."""
        if self.status != "ordered":
            return False
        return self.reissues > 0 or (now is not None and self.chase_at is not None and self.chase_at <= now)

    @property
    def waiting(self) -> bool:
        """Waiting for its deadline: pending, with a deadline, nothing suspending it."""
        return self.status == "pending" and self.deadline is not None and not self.blockers


@dataclass(frozen=True)
class SubjectState:
    subject_id: str
    seen: frozenset[str] = frozenset()
    facts: tuple[Fact, ...] = ()
    records: dict[str, RecordState] = field(default_factory=dict)
    duties: dict[str, Duty] = field(default_factory=dict)
    overdue: frozenset[str] = frozenset()  # duties already reported overdue
    policy: str = ""  # label of the policy its records were last judged under

    def next_deadline(self) -> int | None:
        """The earliest time a tick has something to do for this subject, if any."""
        times = [r.deadline for r in self.records.values() if r.waiting and r.deadline is not None]
        times += [
            r.chase_at for r in self.records.values() if r.status == "ordered" and r.chase_at is not None
        ]
        times += [d.due for d in self.duties.values() if d.done_at is None and d.duty_id not in self.overdue]
        return min(times, default=None)

    def pending_deadlines(self) -> int:
        return sum(1 for r in self.records.values() if r.waiting)

    def overdue_copies(self, now: int | None = None) -> list[RecordState]:
        """Copies ordered and not answered within their store's service level (chased at least
        once), or, given ``now``, whose chase time has passed."""
        return [r for r in self.records.values() if r.overdue(now)]


@dataclass(frozen=True)
class Outcome:
    state: SubjectState
    decisions: tuple[Decision, ...] = ()
    commands: tuple[DeleteRecord, ...] = ()
    answers: tuple[ErasureAnswer, ...] = ()
    certificates: tuple[CertificateDue, ...] = ()


def new_subject(subject_id: str) -> SubjectState:
    return SubjectState(subject_id=subject_id)


def apply_event(state: SubjectState, event: Event, policy: Policy) -> Outcome:
    """Fold one lifecycle event in; the same event again changes nothing.

    An announcement is known by its id, kept in ``seen`` (or by the copies it announced, once
    they are pruned: ``RecordState.covers``). A fact is known by itself: the same fact again
    changes nothing, while another event that reuses its id (a forger who took the id of a hold
    still to come, say) does not stop it. An event that is no fact and no announcement changes
    nothing, so applying it again changes nothing either."""
    seen, facts, records = state.seen, state.facts, state.records
    fact: Fact | None = None
    if isinstance(event, RecordWritten):
        if event.event_id in seen:
            return Outcome(state)
        copies = [
            record_id(store, event.category, event.record_key)
            for store in policy.copies_of(event.store, event.category, event.ref)
        ]
        if all(rid in records and records[rid].covers(event.event_id) for rid in copies):
            return Outcome(state)  # taken in already; its id went from ``seen`` with the pruning
        records = _written(records, event, policy)
        seen = seen | {event.event_id}
        only: frozenset[str] | None = frozenset(copies)
    else:
        fact = fact_of(event)
        if fact is None or fact in facts:
            return Outcome(state)
        facts_list = list(facts)
        insort(facts_list, fact)
        facts = tuple(facts_list)
        only = _affected(records, fact, policy)
    duties = fact is not None and fact.kind in _DUTY_FACTS
    return restamp(
        replace(state, seen=seen, facts=facts, records=records), state, policy, only, duties, event.event_id
    )


def fire_due(state: SubjectState, now: int, policy: Policy) -> Outcome:
    """Order the deletion of every unblocked record whose deadline is at or before ``now``,
    send again every command its store has not answered within its service level (reporting it
    overdue at each escalation step, once per step: ESCALATION_STEPS), and report every duty
    whose deadline passed undone."""
    due = sorted(
        (r for r in state.records.values() if r.waiting and r.deadline <= now),  # type: ignore[operator]
        key=lambda r: r.record_id,
    )
    chase = sorted(
        (
            r
            for r in state.records.values()
            if r.status == "ordered" and r.chase_at is not None and r.chase_at <= now
        ),
        key=lambda r: r.record_id,
    )
    late = sorted(d for d in state.duties if _late(state, d, now))
    if not due and not late and not chase:
        return Outcome(state)
    records = dict(state.records)
    decisions: list[Decision] = []
    commands: list[DeleteRecord] = []
    tick = f"tick@{now}"
    for record in due:
        assert record.deadline is not None
        rule_id = record.rule_id or "erasure"  # a category no rule covers, erased on request
        command_id = stable_id(
            "delete",
            state.subject_id,
            record.record_id,
            record.written_by,
            rule_id,
            record.deadline,
            policy.label,
        )
        records[record.record_id] = replace(
            record,
            status="ordered",
            command_id=command_id,
            ordered_at=now,
            chase_at=now + policy.service_level(record.store),
            reissues=0,
        )
        commands.append(_command(state.subject_id, record, command_id, policy, now))
        decisions.append(
            _decision(
                state.subject_id,
                record,
                "DELETION_ORDERED",
                policy.rule(record.rule_id),
                record.deadline,
                f"deadline {calendar.iso(record.deadline)} passed (clock at {calendar.iso(now)})",
                policy,
                record.caused_by,
                tick,
            )
        )
    for record in chase:
        assert record.command_id is not None and record.deadline is not None
        level = policy.service_level(record.store)
        # Sent again at 1, 2, 4 and then every 8 service levels: a store that is down for long
        # is not flooded, and still hears from us regularly.
        spacing = level * chase_spacing(record.reissues + 1)
        records[record.record_id] = replace(record, chase_at=now + spacing, reissues=record.reissues + 1)
        commands.append(_command(state.subject_id, record, record.command_id, policy, now))
        step = record.reissues + 1
        if step > ESCALATION_STEPS:
            continue  # past the last escalation step: sent again, reported overdue already
        reason = (
            f"no receipt from {record.store} within its service level of {_span(level)} "
            f"(ordered {calendar.iso(record.ordered_at or now)}); the same command is sent again "
            f"(re-issue {step})"
        )
        if step == ESCALATION_STEPS:
            reason += (
                f"; from now on it is sent again every {_span(spacing)} until {record.store} answers, "
                "with no further overdue decision"
            )
        decisions.append(
            _decision(
                state.subject_id,
                record,
                "DELETION_OVERDUE",
                policy.rule(record.rule_id),
                record.deadline,
                reason,
                policy,
                (record.command_id,),
                tick,
            )
        )
    for duty_id in late:
        duty = state.duties[duty_id]
        decisions.append(
            _duty_decision(
                state.subject_id,
                duty,
                "DUTY_OVERDUE",
                f"{duty.kind} was due {calendar.iso(duty.due)} and "
                + (
                    "is not done"
                    if duty.done_at is None
                    else f"was done late, at {calendar.iso(duty.done_at)}"
                ),
                policy,
                tick,
            )
        )
    outcome_state = replace(state, records=records, overdue=state.overdue | set(late))
    return Outcome(outcome_state, tuple(decisions), tuple(commands))


def chase_spacing(reissues: int) -> int:
    """Service levels from re-issue ``reissues`` of a command to the next one: 2, 4, then 8
    (CHASE_BACKOFF_CAP) ever after; the first re-issue comes one service level after the order."""
    return min(1 << reissues, CHASE_BACKOFF_CAP)


def _command(subject_id: str, record: RecordState, command_id: str, policy: Policy, now: int) -> DeleteRecord:
    """The command to the copy's store; sent again as it was, but for ``issued_at``."""
    assert record.deadline is not None
    return DeleteRecord(
        command_id,
        subject_id,
        record.store,
        record.category,
        record.record_key,
        record.rule_id or "erasure",  # a category no rule covers, erased on request
        policy.label,
        record.deadline,
        now,
    )


def apply_receipt(state: SubjectState, report: DeletionReported, policy: Policy) -> Outcome:
    """Record a store's answer; a receipt for an unknown or settled command changes nothing.

    A failed deletion is never dropped: the record goes back to waiting with its passed
    deadline, so the next tick orders it again (same command id) until a store confirms it."""
    record = state.records.get(record_id(report.store, report.category, report.record_key))
    if record is None or record.command_id != report.command_id or record.status != "ordered":
        return Outcome(state)
    rule = policy.rule(record.rule_id)
    records = dict(state.records)
    if report.outcome == "FAILED":
        retry = replace(
            record,
            status="pending",
            command_id=None,
            failures=record.failures + 1,
            ordered_at=None,
            chase_at=None,
            reissues=0,
        )
        records[record.record_id] = retry
        decision = _decision(
            state.subject_id,
            retry,
            "DELETION_FAILED",
            rule,
            record.deadline,
            f"store reported failure: {report.reason or 'no reason given'}; ordered again at the next tick "
            f"(attempt {retry.failures})",
            policy,
            (report.command_id,),
            f"{report.command_id}#{retry.failures}",
        )
        return Outcome(replace(state, records=records), (decision,))
    answered = replace(
        record,
        status="deleted",
        chase_at=None,
        answer=(
            report.outcome,
            report.rows,
            report.executed_at,
            report.reason,
            report.signer_key_id if report.signature else None,
            report.signature if report.signer_key_id else None,
        ),
    )
    records[record.record_id] = answered
    what = {
        "DELETED": "deleted",
        "NOT_FOUND": "already gone from the store",
        "ANONYMISED": "anonymised: the row stays with its personal fields blanked",
        "EXPIRES": f"held only in backups, gone when the last expires at {calendar.iso(report.executed_at)}",
    }.get(report.outcome, report.outcome)
    if record.reissues:
        what += f" (after {record.reissues} re-issue{'s' if record.reissues > 1 else ''}: it was overdue)"
    decision = _decision(
        state.subject_id,
        record,
        "DELETION_CONFIRMED",
        rule,
        record.deadline,
        f"{record.store} confirmed: {what}",
        policy,
        (report.command_id,),
        report.command_id,
    )
    state = replace(state, records=records)
    certificate = _certificate_due(state, policy)
    if certificate is not None:
        # Everything the certificate needs of its copies (each store's answer and signed receipt)
        # is in it now, and it goes out with this outcome before the state is written.
        return Outcome(prune(state, certificate), (decision,), certificates=(certificate,))
    return Outcome(state, (decision,))


def prune(state: SubjectState, certificate: CertificateDue) -> SubjectState:
    """The state once ``certificate`` is issued: each copy it lists (and any copy certified
    before copies were pruned) is reduced to its tombstone, the least that keeps the engine
    correct and idempotent:
    - store, category and record key: the copy is known, so announcing it again is recognised;
    - its command id: a late or repeated receipt for it is its own (and changes nothing);
    - the announcement that announced it, and those of earlier copies under its key: a late or
      replayed one is recognised (``RecordState.covers``) though its id leaves ``seen``, so it
      neither starts a new deletion nor is stamped again (another announcement of the key is a
      new record: the store holds it again);
    - when it was ordered: for ``explain``;
    - the store's outcome, rows and time, and the certificate's ``issued_at``: for ``explain``.
    Its rule, deadline, ref, causes and the store's signed receipt are in the certificate.

    Ids of announcements whose every copy is pruned are dropped from ``seen``, as their
    tombstones recognise them, unless a copy was anonymised (an anonymised row stays in its
    table: it stays known by ``seen`` as before)."""
    listed = {copy.record for copy in certificate.copies}
    records = dict(state.records)
    announcements: dict[str, tuple[str, str]] = {}  # event id: (category, record key)
    for rid, record in state.records.items():
        if rid in listed or (record.certified and record.certificate is None):
            records[rid] = _tombstone(record, certificate.issued_at if rid in listed else 0)
            if record.written_by in state.seen:
                announcements[record.written_by] = (record.category, record.record_key)
    siblings: dict[tuple[str, str], list[RecordState]] = {}  # the copies of one record, in every store
    for record in records.values():
        siblings.setdefault((record.category, record.record_key), []).append(record)
    forget = {
        event_id
        for event_id, (category, key) in announcements.items()
        if all(
            copy.pruned and copy.covers(event_id) and not _anonymised(copy)
            for copy in siblings[(category, key)]
        )
    }
    return replace(state, records=records, seen=state.seen - forget if forget else state.seen)


def _anonymised(record: RecordState) -> bool:
    return record.answer is not None and record.answer[0] == "ANONYMISED"


def _tombstone(record: RecordState, certificate: int) -> RecordState:
    """A deleted copy as ``prune`` keeps it."""
    answer = record.answer
    return RecordState(
        record.store,
        record.category,
        record.record_key,
        None,
        record.written_by,
        0,
        "deleted",
        command_id=record.command_id,
        ordered_at=record.ordered_at,
        answer=(answer[0], answer[1], answer[2], None, None, None) if answer is not None else None,
        certified=True,
        certificate=certificate,
        earlier=record.earlier,
    )


def _certificate_due(state: SubjectState, policy: Policy) -> CertificateDue | None:
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


def _span(ms: int) -> str:
    hours = ms // 3_600_000
    return f"{hours // 24} d" if hours % 24 == 0 else f"{hours} h"


_RIGHTS_FACTS = frozenset(
    {
        "LegalHoldPlaced",
        "LegalHoldReleased",
        "RestrictionRequested",
        "RestrictionLifted",
        "ErasureRequested",
        "ErasureVerified",
        "ErasureRefused",
        "ErasureWithdrawn",
    }
)
_DUTY_FACTS = frozenset(
    {
        "ErasureRequested",
        "ErasureVerified",
        "ErasureRefused",
        "ErasureWithdrawn",
        "BreachDetected",
        "BreachNotified",
        "HostingAgreementTerminated",
        "ExportOffered",
    }
)


def _affected(records: dict[str, RecordState], fact: Fact, policy: Policy) -> frozenset[str] | None:
    """The records whose judgement a new fact can change (None: all of them)."""
    if fact.kind in _RIGHTS_FACTS:
        return None
    out = set()
    for rid, record in records.items():
        rule = policy.rule_for(record.category)
        if rule is None or record.status not in JUDGED:
            continue
        moves_clock = fact.kind in rule.starts or fact.kind in rule.stops
        in_scope = rule.clock == "account" or rule.scope == "subject" or record.ref == fact.ref
        if moves_clock and in_scope:
            out.add(rid)
    return frozenset(out)


def restamp(
    state: SubjectState,
    before: SubjectState,
    policy: Policy,
    only: frozenset[str] | None = None,
    duties_changed: bool = True,
    trigger: str = "",
) -> Outcome:
    """Derive the deadline and blockers of every pending record (or only those in ``only``) and,
    if ``duties_changed``, every duty, from the facts; decide on what changed since ``before``."""
    records = dict(state.records)
    decisions: list[Decision] = []
    if only is not None and not only and not duties_changed:
        return Outcome(state)
    account = account_clock(state.facts)
    rights = rights_of(state.facts)
    for rid in sorted(records if only is None else only):
        record = records.get(rid)
        if record is None or record.status not in JUDGED:
            continue
        old = before.records.get(rid)
        if old is not None and old.written_by != record.written_by:
            old = None
        new, reasons = judge(record, state.facts, account, rights, policy)
        records[rid] = new
        decisions += _record_decisions(state.subject_id, old, new, reasons, policy, trigger)
    if not duties_changed:
        return Outcome(replace(state, records=records, policy=policy.label), tuple(decisions))
    duties = duties_of(state.facts, policy.duties, policy.zone)
    decisions += _duty_decisions(state.subject_id, before.duties, duties, policy, trigger)
    state = replace(state, records=records, duties=duties, policy=policy.label)
    answers = tuple(
        _answer(state, d, rights, policy)
        for d in duties.values()
        if d.kind == "erasure_response"
        and d.done_at is not None
        and d.closed_as is None  # refused or withdrawn: nothing was carried out
        and (d.duty_id not in before.duties or before.duties[d.duty_id].done_at is None)
    )
    decisions += [
        _duty_decision(
            state.subject_id,
            duties[f"erasure/{a.request_id}"],
            "ERASURE_ANSWERED",
            f"answered: {sum(i.action == 'DELETE' for i in a.items)} to delete, "
            f"{sum(i.action == 'KEEP' for i in a.items)} kept",
            policy,
            trigger,
        )
        for a in answers
    ]
    return Outcome(state, tuple(decisions), (), answers)


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
    restricted_by = None
    erasure = erasure_for(rights, record.written_at)
    if erasure is not None:
        erased_at, request_id, event_id = erasure
        if rule is None or rule.on_erasure == "delete":
            if found.deadline is None or found.deadline > erased_at:
                found = Stamp(
                    rule,
                    erased_at,
                    (*found.caused_by, event_id),
                    f"erasure request {request_id}: no rule obliges us to keep it (GDPR art. 17)",
                )
        else:
            restricted_by = request_id
    reasons = {"deadline": found.reason}
    blockers = list(hold_blockers(rights, record.record_id, record.category))
    for hold in blockers:
        reasons[hold] = f"legal hold {hold[5:]}: deletion suspended until released (seed 001 'How we share')"
    for restriction in rights.restrictions:
        blockers.append(f"restriction:{restriction}")
        reasons[blockers[-1]] = (
            f"restriction {restriction}: processing limited to storage until resolved "
            "(GDPR art. 18, seed 004 'Begrensning')"
        )
    if restricted_by:
        reasons["restricted"] = (
            f"erasure request {restricted_by}: kept under rule {rule.id if rule else '-'} "
            f"({rule.basis if rule else ''}); processing restricted to that purpose"
        )
    judged = replace(
        record,
        status="pending",
        rule_id=rule.id if rule else None,
        deadline=found.deadline,
        caused_by=found.caused_by,
        blockers=tuple(blockers),
        restricted_by=restricted_by,
    )
    return judged, reasons


def _record_decisions(
    subject_id: str,
    old: RecordState | None,
    new: RecordState,
    reasons: dict[str, str],
    policy: Policy,
    trigger: str,
) -> list[Decision]:
    rule = policy.rule(new.rule_id)
    out: list[Decision] = []

    def add(kind: DecisionKind, reason: str) -> None:
        out.append(
            _decision(subject_id, new, kind, rule, new.deadline, reason, policy, new.caused_by, trigger)
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


def _duty_decisions(
    subject_id: str, before: dict[str, Duty], after: dict[str, Duty], policy: Policy, trigger: str
) -> list[Decision]:
    out = []
    for duty_id in sorted(after):
        duty, old = after[duty_id], before.get(duty_id)
        if old is None:
            out.append(
                _duty_decision(
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
                    _duty_decision(
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
                _duty_decision(
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


def _answer(state: SubjectState, duty: Duty, rights: Rights, policy: Policy) -> ErasureAnswer:
    """What the person is told: what is deleted, what is kept, why and until when."""
    request_id = duty.duty_id.split("/", 1)[1]
    assert duty.done_at is not None
    account = account_clock(state.facts)
    items = []
    for rid in sorted(state.records):
        record = state.records[rid]
        if record.status != "pending" or record.written_at > duty.done_at:
            continue
        rule = policy.rule(record.rule_id)
        until = calendar.iso(record.deadline) if record.deadline is not None else None
        basis = rule.basis if rule else None
        if record.blockers:  # a legal hold, a restriction or a gate keeps it, whatever its rule says
            _, reasons = judge(record, state.facts, account, rights, policy)
            why = "; ".join(reasons[b] for b in record.blockers)
            items.append(AnswerItem(rid, record.category, "KEEP", record.rule_id, basis, why, until))
        elif record.restricted_by == request_id or record.deadline is None or record.deadline > duty.done_at:
            why = rule.reason if rule else "no rule covers it"
            if record.deadline is None:
                why += " (its clock has not started: kept while that lasts)"
            items.append(AnswerItem(rid, record.category, "KEEP", record.rule_id, basis, why, until))
        else:
            items.append(
                AnswerItem(
                    rid,
                    record.category,
                    "DELETE",
                    record.rule_id,
                    None,
                    "no rule obliges us to keep it",
                    None,
                )
            )
    items += _shared_logs(state, policy, duty.done_at)
    return ErasureAnswer(request_id, state.subject_id, duty.done_at, duty.due, policy.label, tuple(items))


def _shared_logs(state: SubjectState, policy: Policy, answered_at: int) -> list[AnswerItem]:
    """What the answer says of the log stores' lines that may name the person, where no record of
    theirs was announced there: a day of logs holds every customer's lines, so it is not dropped
    for one person; it goes, for everyone, when the log period ends (seed 000)."""
    if policy.stores is None:
        return []
    held = {r.category for r in state.records.values()}
    out = []
    for store in policy.stores.stores:
        if store.kind != "logstore":
            continue
        for holding in store.holds:
            rule = policy.rule_for(holding.category)
            if rule is None or holding.category in held:
                continue
            until = deadline_from(rule, answered_at, policy.zone)  # of the lines written until now
            why = (
                f"{rule.reason}; lines of the retained days that may name you (e.g. your IP address) are "
                "kept, used for security only, and go with their day"
            )
            out.append(
                AnswerItem(
                    f"{store.id}/{holding.category}/*",
                    holding.category,
                    "KEEP",
                    rule.id,
                    rule.basis,
                    why,
                    calendar.iso(until),
                )
            )
    return out


def _late(state: SubjectState, duty_id: str, now: int) -> bool:
    duty = state.duties[duty_id]
    late = duty.done_at is None or duty.done_at > duty.due  # undone, or done after its deadline
    return late and duty.due <= now and duty_id not in state.overdue


def _written(records: dict[str, RecordState], event: RecordWritten, policy: Policy) -> dict[str, RecordState]:
    """One copy of the record in every store that holds its category (per the store map)."""
    out = records
    for store in policy.copies_of(event.store, event.category, event.ref):
        key = record_id(store, event.category, event.record_key)
        current = out.get(key)
        if current is not None and current.covers(event.event_id):
            continue  # this very announcement, taken in already
        if current is not None and current.status != "deleted":
            # Already known: its life starts at the earliest announcement, whatever the arrival order.
            if current.status not in JUDGED or (current.written_at, current.written_by) <= (
                event.time,
                event.event_id,
            ):
                continue
            replacement = replace(current, ref=event.ref, written_by=event.event_id, written_at=event.time)
        else:
            # New, or written again after its copy was deleted (a later announcement than that
            # copy's order: covered ones were skipped above): a new record, from this announcement.
            earlier = (*current.earlier, current.written_by) if current else ()
            replacement = RecordState(
                store,
                event.category,
                event.record_key,
                event.ref,
                event.event_id,
                event.time,
                earlier=earlier,
            )
        if out is records:
            out = dict(records)
        out[key] = replacement
    return out


def _decision(
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


def _duty_decision(
    subject_id: str, duty: Duty, kind: DecisionKind, reason: str, policy: Policy, trigger: str = ""
) -> Decision:
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
