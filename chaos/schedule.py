"""What the chaos run does and when: its faults, their places in the run, its options."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.cluster import ChaosError
from chaos.ledger import Oracle
from ebbtide.streams.policy.calendar import to_ms

FLAKY_VENDOR = "review_vendor"  # fails a burst of requests
# A vendor is down from OUTAGE[0] to OUTAGE[1] of the run: the one with the most deletions ordered
# in that stretch (from a replay of the whole scenario before the run), so its commands wait and
# the forged receipts have real, unanswered commands to answer.
OUTAGE = (0.40, 0.62)


@dataclass
class Fault:
    """One fault of the schedule: ``at`` is its place in the run (0..1 of the ticks)."""

    name: str
    at: float


SCHEDULE = (
    Fault("kill -9 worker", 0.08),
    Fault("kill -9 customer_db sink", 0.12),
    Fault("poison pills", 0.16),
    Fault("kill -9 billing_db sink", 0.20),
    Fault("add a second worker", 0.24),
    Fault("kill -9 worker (of two)", 0.28),
    Fault("remove the second worker", 0.32),
    Fault("kill -9 broker", 0.36),
    Fault("vendor down", OUTAGE[0]),
    Fault("kill -9 vendor sinks", 0.45),
    Fault("forged receipts", 0.50),
    Fault("forged commands", 0.54),
    Fault("kill -9 PostgreSQL", 0.58),
    Fault("vendor back", OUTAGE[1]),
    Fault("kill -9 log store sink", 0.66),
    Fault("forged ticks", 0.70),
    Fault("forged legal hold", 0.73),
    Fault("kill -9 backups sink", 0.77),
    Fault(f"{FLAKY_VENDOR} fails 20 requests", 0.81),
    Fault("kill -9 worker", 0.86),
)


@dataclass
class Options:
    customers: int = 150
    seed: int = 11
    until: datetime = datetime(2032, 1, 1, tzinfo=UTC)
    step_days: int = 14
    outage_seconds: float = 10.0  # how long the broker and PostgreSQL stay dead
    max_minutes: float = 15.0  # the whole run is given up (exit 2) after this long
    results: Path = Path("chaos/results")
    name: str | None = None  # the result file's name (default: the run's time stamp)


@dataclass
class Recovery:
    fault: str
    tick: str
    injected_at: float  # seconds since the start of the load
    down_s: float  # seconds the faulted part stayed down (0: started again at once)
    recovered_s: float  # seconds from its return until the pipeline had settled the tick
    # For a kill: whether the killed part had work in flight (commands awaiting its store's
    # receipt) when it was killed; None for other faults.
    busy: bool | None = None


def choose_outage_vendor(
    policy: Any, records: list[dict[str, Any]], ticks: list[datetime], vendors: list[str]
) -> str:
    """The vendor with the most deletions ordered while it is down (OUTAGE), from a replay of the
    whole scenario through the pure engine before the run."""
    plan = Oracle(policy)
    index = 0
    for moment in ticks:
        while index < len(records) and records[index]["event_time"] <= moment:
            plan.event(records[index])
            index += 1
        plan.tick(to_ms(moment))
    start, end = (to_ms(ticks[round(f * len(ticks))]) for f in OUTAGE)
    ordered = Counter(copy[0] for copy, at in plan.ordered.items() if start < at < end and copy[0] in vendors)
    if not ordered:
        raise ChaosError("no vendor has a deletion ordered in the outage window: a bigger --customers")
    return ordered.most_common(1)[0][0]
