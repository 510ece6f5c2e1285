"""Firing: what a tick of the pipeline clock sets off for one subject.

Every unblocked record whose deadline has passed is ordered deleted (a command to its store);
every command its store has not answered within its service level is sent again, and reported
overdue at each escalation step; every duty whose deadline passed undone is reported overdue.
"""

from __future__ import annotations

from dataclasses import replace

from ebbtide.streams.engine.decisions import Decision, DeleteRecord, duty_decision, record_decision, stable_id
from ebbtide.streams.engine.model import Outcome, RecordState, SubjectState
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy

CHASE_BACKOFF_CAP = 8  # an unanswered command is sent again at most every 8 service levels
# The re-sends after 1, 2, 4 and 8 service levels are the escalation steps: each reports the copy
# overdue (DELETION_OVERDUE). Past the cap the command is still sent every 8 service levels, but
# with no new decision: the copy stays overdue (gauge, `ebbtide overdue`) until its store answers.
ESCALATION_STEPS = CHASE_BACKOFF_CAP.bit_length()  # 4: after 1, 2, 4 and 8 service levels


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
        records[record.record_id], command, decision = _order(state.subject_id, record, now, policy, tick)
        commands.append(command)
        decisions.append(decision)
    for record in chase:
        records[record.record_id], command, overdue = _chase(state.subject_id, record, now, policy, tick)
        commands.append(command)
        if overdue is not None:
            decisions.append(overdue)
    for duty_id in late:
        decisions.append(_duty_overdue(state, duty_id, policy, tick))
    outcome_state = replace(state, records=records, overdue=state.overdue | set(late))
    return Outcome(outcome_state, tuple(decisions), tuple(commands))


def order_id(subject_id: str, record: RecordState, policy: Policy) -> str:
    """The id of the command that orders ``record`` deleted at its current deadline: the same
    whichever worker issues it and however often (a tick replayed after a crash issues it again)."""
    rule_id = record.rule_id or "erasure"  # a category no rule covers, erased on request
    return stable_id(
        "delete", subject_id, record.record_id, record.written_by, rule_id, record.deadline, policy.label
    )


def _order(
    subject_id: str, record: RecordState, now: int, policy: Policy, tick: str
) -> tuple[RecordState, DeleteRecord, Decision]:
    """A record whose deadline passed, ordered deleted: its new state, its command, the decision."""
    assert record.deadline is not None
    command_id = order_id(subject_id, record, policy)
    ordered = replace(
        record,
        status="ordered",
        command_id=command_id,
        ordered_at=now,
        chase_at=now + policy.service_level(record.store),
        reissues=0,
    )
    decision = record_decision(
        subject_id,
        record,
        "DELETION_ORDERED",
        policy.rule(record.rule_id),
        record.deadline,
        f"deadline {calendar.iso(record.deadline)} passed (clock at {calendar.iso(now)})",
        policy,
        record.caused_by,
        tick,
    )
    return ordered, command(subject_id, record, command_id, policy, now), decision


def _chase(
    subject_id: str, record: RecordState, now: int, policy: Policy, tick: str
) -> tuple[RecordState, DeleteRecord, Decision | None]:
    """A command its store has not answered in time, sent again: the record's new state, the
    command, and the overdue decision if this re-send is an escalation step."""
    assert record.command_id is not None and record.deadline is not None
    level = policy.service_level(record.store)
    # Sent again at 1, 2, 4 and then every 8 service levels: a store that is down for long
    # is not flooded, and still hears from us regularly.
    spacing = level * chase_spacing(record.reissues + 1)
    chased = replace(record, chase_at=now + spacing, reissues=record.reissues + 1)
    again = command(subject_id, record, record.command_id, policy, now)
    step = record.reissues + 1
    if step > ESCALATION_STEPS:
        return chased, again, None  # past the last escalation step: sent again, reported overdue already
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
    decision = record_decision(
        subject_id,
        record,
        "DELETION_OVERDUE",
        policy.rule(record.rule_id),
        record.deadline,
        reason,
        policy,
        (record.command_id,),
        tick,
    )
    return chased, again, decision


def _duty_overdue(state: SubjectState, duty_id: str, policy: Policy, tick: str) -> Decision:
    duty = state.duties[duty_id]
    return duty_decision(
        state.subject_id,
        duty,
        "DUTY_OVERDUE",
        f"{duty.kind} was due {calendar.iso(duty.due)} and "
        + ("is not done" if duty.done_at is None else f"was done late, at {calendar.iso(duty.done_at)}"),
        policy,
        tick,
    )


def chase_spacing(reissues: int) -> int:
    """Service levels from re-issue ``reissues`` of a command to the next one: 2, 4, then 8
    (CHASE_BACKOFF_CAP) ever after; the first re-issue comes one service level after the order."""
    return min(1 << reissues, CHASE_BACKOFF_CAP)


def command(subject_id: str, record: RecordState, command_id: str, policy: Policy, now: int) -> DeleteRecord:
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


def _late(state: SubjectState, duty_id: str, now: int) -> bool:
    duty = state.duties[duty_id]
    late = duty.done_at is None or duty.done_at > duty.due  # undone, or done after its deadline
    return late and duty.due <= now and duty_id not in state.overdue


def _span(ms: int) -> str:
    hours = ms // 3_600_000
    return f"{hours // 24} d" if hours % 24 == 0 else f"{hours} h"
