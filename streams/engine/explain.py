"""Explain a subject: each record's category, rule, clause, basis, deadline, status and why."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ebbtide.streams.engine.clocks import account_clock
from ebbtide.streams.engine.judging import judge
from ebbtide.streams.engine.model import RecordState, SubjectState
from ebbtide.streams.engine.rights import Rights, rights_of
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.vocabulary import ANSWERED_STATUS


def record_status(record: RecordState, now: int | None) -> str:
    """pending / held / restricted / due / overdue / deleted (or anonymised / expiring, as the
    store answered) / transferred (a registry's copy of a domain transferred out: not ours to
    delete)."""
    if record.status == "transferred":
        return "transferred"
    if record.status == "deleted":
        outcome = record.answer[0] if record.answer else "DELETED"
        return ANSWERED_STATUS.get(outcome, "deleted")
    if record.status == "ordered":
        return "overdue" if record.overdue(now) else "due"
    if any(b.startswith("hold:") for b in record.blockers):
        return "held"
    if record.restricted_by or any(b.startswith("restriction:") for b in record.blockers):
        return "restricted"
    if record.deadline is not None and now is not None and record.deadline <= now:
        return "due"
    return "pending"


def explain(state: SubjectState, policy: Policy, now: int | None) -> dict[str, Any]:
    """Everything an auditor or the data subject needs, as plain JSON-able data."""
    account = account_clock(state.facts)
    rights = rights_of(state.facts)
    records = []
    for rid in sorted(state.records):
        record = state.records[rid]
        rule = policy.rule(record.rule_id)
        records.append(
            {
                "record": rid,
                "store": record.store,
                "category": record.category,
                "rule": record.rule_id,
                "clause": rule.source if rule else None,
                "basis": rule.basis if rule else None,
                "deadline": calendar.iso(record.deadline) if record.deadline is not None else None,
                "status": record_status(record, now),
                "why": _why(record, state, account, rights, policy),
                "blockers": list(record.blockers),
                "set_by": list(record.caused_by),
                "command_id": record.command_id,
                # Pruned (certified) copies: the certificate with their rule and deadline, by its
                # issued_at ("earlier": certified before copies were pruned); None otherwise.
                "certificate": (calendar.iso(record.certificate) if record.certificate else "earlier")
                if record.pruned
                else None,
            }
        )
    duties = [
        {
            "duty": d.duty_id,
            "kind": d.kind,
            "due": calendar.iso(d.due),
            "source": d.source,
            "status": ("closed" if d.closed_as else "done")
            if d.done_at is not None
            else ("overdue" if d.duty_id in state.overdue else "open"),
            "closed_as": d.closed_as,
            "done_at": calendar.iso(d.done_at) if d.done_at is not None else None,
        }
        for d in sorted(state.duties.values(), key=lambda d: d.duty_id)
    ]
    return {
        "subject": state.subject_id,
        "policy": policy.label,
        "clock": calendar.iso(now) if now is not None else None,
        "records": records,
        "duties": duties,
    }


def _why(
    record: RecordState,
    state: SubjectState,
    account: tuple[int, tuple[str, ...]] | None,
    rights: Rights,
    policy: Policy,
) -> list[str]:
    """Why the record is where it is: its deadline and blockers while it waits, its store's
    answer once deleted (and the certificate that proves it, once pruned), else its order."""
    if record.status in ("pending", "transferred"):
        _, reasons = judge(replace(record, status="pending"), state.facts, account, rights, policy)
        why = [reasons["deadline"], *(reasons[b] for b in record.blockers if b in reasons)]
        if record.restricted_by and "restricted" in reasons:
            why.append(reasons["restricted"])
        return why
    if record.status == "deleted" and record.answer is not None:
        outcome, rows, executed_at, reason = record.answer[:4]
        why = [
            f"{record.store} answered {outcome} ({rows} row(s)) at {calendar.iso(executed_at)} "
            f"to command {record.command_id}" + (f": {reason}" if reason else "")
        ]
        if record.pruned:
            proof = (
                f"the subject's deletion certificate issued {calendar.iso(record.certificate)}"
                if record.certificate
                else "one of the subject's deletion certificates"
            )
            why.append(
                f"proven by {proof}, whose entry for this command gives the rule, the deadline and "
                "the store's signed receipt (the worker keeps no more of a certified copy)"
            )
        return why
    why = [
        f"deletion {'confirmed' if record.status == 'deleted' else 'ordered'} (command {record.command_id})"
    ]
    if record.status == "ordered" and record.ordered_at is not None:
        why.append(
            f"ordered {calendar.iso(record.ordered_at)}; the store's answer is due by "
            f"{calendar.iso(record.ordered_at + policy.service_level(record.store))}"
            + (f"; sent again {record.reissues} time(s) for want of an answer" if record.reissues else "")
        )
    return why


def render(report: dict[str, Any]) -> str:
    """A readable text rendering of :func:`explain`'s report."""
    lines = [
        f"subject {report['subject']}  (policy {report['policy']}, pipeline clock {report['clock'] or '-'})"
    ]
    for r in report["records"]:
        if r.get("certificate"):  # pruned: its rule and deadline are in its certificate
            lines.append(
                f"- {r['record']}  [{r['status']}]  category {r['category']}, rule and deadline in its "
                "deletion certificate"
            )
        else:
            lines.append(
                f"- {r['record']}  [{r['status']}]  category {r['category']}, rule {r['rule'] or '-'}, "
                f"deadline {r['deadline'] or 'not set'}"
            )
        if r["clause"]:
            lines.append(f"    clause: {r['clause']}")
            lines.append(f"    basis:  {r['basis']}")
        lines += [f"    why:    {w}" for w in r["why"]]
        lines.append(f"    set by: {', '.join(r['set_by']) or '-'}")
    for d in report["duties"]:
        lines.append(f"- duty {d['duty']}  [{d['status']}]  due {d['due']} ({d['source']})")
        if d.get("closed_as"):
            lines.append(f"    why:    the request was {d['closed_as']}")
    if not report["records"] and not report["duties"]:
        lines.append("(no records)")
    return "\n".join(lines)
