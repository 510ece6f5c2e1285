"""Deletions overdue: commands a store has not answered within its service level.

Pure: built from subject states, the policy (for service levels) and the pipeline clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ebbtide.streams.engine.model import SubjectState
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy


def overdue_report(
    states: Iterable[SubjectState], policy: Policy, now: int | None, store: str | None = None
) -> list[dict[str, Any]]:
    """One row per unanswered copy that was chased (or, given ``now``, is past its service level),
    oldest order first."""
    rows = []
    for state in states:
        for record in state.overdue_copies(now):
            if store is not None and record.store != store:
                continue
            level = policy.service_level(record.store)
            ordered = record.ordered_at
            rows.append(
                {
                    "store": record.store,
                    "subject": state.subject_id,
                    "record": record.record_id,
                    "category": record.category,
                    "command_id": record.command_id,
                    "ordered_at": calendar.iso(ordered) if ordered is not None else None,
                    "due_by": calendar.iso(ordered + level) if ordered is not None else None,
                    "service_level_hours": level // 3_600_000,
                    "reissues": record.reissues,
                    "overdue_hours": (now - ordered - level) // 3_600_000
                    if now is not None and ordered is not None
                    else None,
                }
            )
    rows.sort(key=lambda r: (r["ordered_at"] or "", r["store"], r["record"]))
    return rows


def render(rows: list[dict[str, Any]], now: int | None) -> str:
    clock = calendar.iso(now) if now is not None else "unknown"
    if not rows:
        return f"no overdue deletions (pipeline clock {clock})"
    stores: dict[str, int] = {}
    for row in rows:
        stores[row["store"]] = stores.get(row["store"], 0) + 1
    lines = [
        f"{len(rows)} overdue deletion(s) at pipeline clock {clock}: "
        + ", ".join(f"{s} {n}" for s, n in sorted(stores.items())),
        "",
        f"{'store':<16} {'record':<40} {'ordered':<20} {'due by':<20} {'re-sent':>7}  command",
    ]
    for row in rows:
        lines.append(
            f"{row['store']:<16} {row['record']:<40} {row['ordered_at'] or '-':<20} "
            f"{row['due_by'] or '-':<20} {row['reissues']:>7}  {row['command_id']}"
        )
    return "\n".join(lines)
