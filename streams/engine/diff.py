"""Compare two policies: which rules changed, and how the deadlines of existing records move."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict

from ebbtide.streams.engine.clocks import account_clock
from ebbtide.streams.engine.judging import judge
from ebbtide.streams.engine.model import SubjectState
from ebbtide.streams.engine.rights import rights_of
from ebbtide.streams.policy.rules import Policy


def rule_changes(old: Policy, new: Policy) -> list[str]:
    """One line per added, removed or changed rule (and changed duty setting or time zone)."""
    lines = []
    if old.time_zone != new.time_zone:
        lines.append(f"time zone {old.time_zone!r} -> {new.time_zone!r}")
    before, after = {r.id: asdict(r) for r in old.rules}, {r.id: asdict(r) for r in new.rules}
    for rule_id in sorted(before.keys() | after.keys()):
        if rule_id not in after:
            lines.append(f"removed rule {rule_id}")
        elif rule_id not in before:
            lines.append(f"added rule {rule_id} (categories {', '.join(after[rule_id]['categories'])})")
        else:
            for field in sorted(after[rule_id]):
                if before[rule_id][field] != after[rule_id][field]:
                    lines.append(
                        f"rule {rule_id}: {field} {before[rule_id][field]!r} -> {after[rule_id][field]!r}"
                    )
    old_duties, new_duties = asdict(old.duties), asdict(new.duties)
    for field in sorted(new_duties):
        if old_duties[field] != new_duties[field]:
            lines.append(f"duties: {field} {old_duties[field]!r} -> {new_duties[field]!r}")
    return lines


def deadline_moves(states: Iterable[SubjectState], new: Policy) -> Counter[str]:
    """For every pending record: does its deadline move earlier, later, stop, start or stay under ``new``?"""
    moves: Counter[str] = Counter()
    for state in states:
        account, rights = account_clock(state.facts), rights_of(state.facts)
        for record in state.records.values():
            if record.status != "pending":
                continue
            judged, _ = judge(record, state.facts, account, rights, new)
            old_deadline, new_deadline = record.deadline, judged.deadline
            if old_deadline == new_deadline:
                moves["unchanged"] += 1
            elif old_deadline is None:
                moves["clock starts"] += 1
            elif new_deadline is None:
                moves["clock stops"] += 1
            else:
                moves["earlier" if new_deadline < old_deadline else "later"] += 1
    return moves
