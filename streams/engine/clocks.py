"""Deadlines: when each rule's clock starts, from a subject's facts, and what it then says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from ebbtide.streams.engine.facts import Fact
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Rule


@dataclass(frozen=True)
class Stamp:
    """What a rule says about one record now: its deadline (None while the clock is stopped)."""

    rule: Rule | None
    deadline: int | None
    caused_by: tuple[str, ...]
    reason: str


def account_clock(facts: tuple[Fact, ...]) -> tuple[int, tuple[str, ...]] | None:
    """When the account clock started and by which events; None while it is not running."""
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


def _in_scope(rule: Rule, fact: Fact, ref: str | None) -> bool:
    return rule.scope == "subject" or fact.ref == ref


def event_clock(rule: Rule, facts: tuple[Fact, ...], ref: str | None) -> tuple[int, tuple[str, ...]] | None:
    """Start of an event clock: the run of start events after the last stop event."""
    run: list[Fact] = []
    for fact in facts:
        if not _in_scope(rule, fact, ref):
            continue
        if fact.kind in rule.stops:
            run = []
        elif fact.kind in rule.starts:
            run.append(fact)
    if not run:
        return None
    if rule.anchor == "until":  # an end date: the earliest one wins (expiry or revocation)
        first = min(run, key=lambda f: (f.until if f.until is not None else f.time, f.event_id))
        return (first.until if first.until is not None else first.time), (first.event_id,)
    last = run[-1]  # a start date: the latest one counts (never earlier than a re-issue)
    return last.time, (last.event_id,)


def transferred_out(facts: tuple[Fact, ...], domain: str | None) -> Fact | None:
    """The release that moved ``domain`` to another registrar, if that is where it is now
    (its last registration or release, in event time, is a transfer out)."""
    last: Fact | None = None
    for fact in facts:
        if fact.ref == domain and fact.kind in ("DomainRegistered", "DomainReleased"):
            last = fact
    if last is not None and last.kind == "DomainReleased" and "TRANSFERRED_OUT" in last.detail:
        return last
    return None


def deadline_from(rule: Rule, start: int, tz: tzinfo) -> int:
    """The deadline of a clock started at ``start``, counted in the local calendar of ``tz``."""
    if rule.anchor == "end_of_financial_year":
        anchor = calendar.end_of_financial_year(start, tz)
    elif rule.anchor == "end_of_day":
        anchor = calendar.end_of_day(start, tz)
    else:
        anchor = start
    moved = calendar.add_years(anchor, rule.keep.years, tz)
    moved = calendar.add_months(moved, rule.keep.months, tz)
    return calendar.add_days(moved, rule.keep.days + rule.grace_days, tz)


def stamp(
    rule: Rule | None,
    category: str,
    ref: str | None,
    written_at: int,
    written_by: str,
    facts: tuple[Fact, ...],
    account: tuple[int, tuple[str, ...]] | None,
    policy_label: str,
    tz: tzinfo,
) -> Stamp:
    """The deadline ``rule`` gives a record, with the events that set it and why."""
    if rule is None:
        return Stamp(
            None, None, (written_by,), f"no rule of policy {policy_label} covers category {category}: kept"
        )
    if rule.clock == "written":
        start: tuple[int, tuple[str, ...]] | None = (written_at, ())
    elif rule.clock == "account":
        start = account
    elif rule.scope == "ref" and ref is None:
        return Stamp(
            rule, None, (written_by,), "clock not started: the record names no ref for its rule's events"
        )
    else:
        start = event_clock(rule, facts, ref)
    if start is None:
        waiting = (
            "the account is open or a service is active"
            if rule.clock == "account"
            else (f"waiting for {' or '.join(rule.starts)}")
        )
        return Stamp(rule, None, (written_by,), f"clock not started: {waiting}")
    at, causes = start
    deadline = deadline_from(rule, at, tz)
    return Stamp(
        rule,
        deadline,
        (written_by, *causes),
        f"{rule.reason}; clock started {calendar.iso(at)}, keep {rule.keep.describe()}"
        + (f" + {rule.grace_days} days grace" if rule.grace_days else ""),
    )
