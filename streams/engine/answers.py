"""The answer to an erasure request (GDPR art. 12, 17): what is deleted, what is kept, why and
until when, as the engine gives it once the request is verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ebbtide.streams.engine.clocks import account_clock, deadline_from
from ebbtide.streams.engine.decisions import Decision, duty_decision
from ebbtide.streams.engine.judging import judge
from ebbtide.streams.engine.rights import Duty, Rights
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy

if TYPE_CHECKING:  # the state model names answers in its outcome: it imports this module
    from ebbtide.streams.engine.model import SubjectState


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


def erasure_answer(state: SubjectState, duty: Duty, rights: Rights, policy: Policy) -> ErasureAnswer:
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
    items += shared_logs(state, policy, duty.done_at)
    return ErasureAnswer(request_id, state.subject_id, duty.done_at, duty.due, policy.label, tuple(items))


def shared_logs(state: SubjectState, policy: Policy, answered_at: int) -> list[AnswerItem]:
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


def answers_given(
    state: SubjectState, before: dict[str, Duty], rights: Rights, policy: Policy, trigger: str
) -> tuple[tuple[ErasureAnswer, ...], list[Decision]]:
    """The answers to the erasure requests carried out since ``before`` (the duties as they were),
    each with its ERASURE_ANSWERED decision. A request refused or withdrawn is answered with
    nothing: nothing was carried out."""
    duties = state.duties
    answers = tuple(
        erasure_answer(state, d, rights, policy)
        for d in duties.values()
        if d.kind == "erasure_response"
        and d.done_at is not None
        and d.closed_as is None  # refused or withdrawn: nothing was carried out
        and (d.duty_id not in before or before[d.duty_id].done_at is None)
    )
    decisions = [
        duty_decision(
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
    return answers, decisions
