"""The ``CLOCK_APPLIED`` entry of the decision log: where a partition's clock moved.

Applying an event or a receipt never reads the clock, but a tick judges the subjects as they
stand when it is applied, and when that is depends on arrival order (a tick waits for the events
before it, and may arrive after later ones). So the worker writes down each move of a partition's
clock, with the tick that moved it and how many of the partition's events it had processed then:
``ebbtide audit replay`` feeds that tick at that point and gets the same decisions.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from ebbtide.streams.engine.decisions import Decision, stable_id
from ebbtide.streams.policy import calendar

KIND: Final[Literal["CLOCK_APPLIED"]] = "CLOCK_APPLIED"
CATEGORY = "clock"
_EVENTS = re.compile(r"after the first (\d+) events of partition \d+ ")


def position(source: str, partition: int, offset: int | None) -> str | None:
    """A message's place, as a decision's ``input`` records it: ``<source>/<partition>/<offset>``
    (``source``: events, clock or receipts); None if its offset is not known."""
    return None if offset is None else f"{source}/{partition}/{offset}"


def clock_applied(partition: int, now: int, events: int, tick: int | None, policy_label: str) -> Decision:
    """The entry for partition ``partition``'s clock moved to ``now`` by the tick at offset
    ``tick`` of the clock topic (None: a tick deferred before its offset was kept), once the
    partition's first ``events`` events were processed."""
    return Decision(
        decision_id=stable_id(KIND, partition, now, events, tick),
        subject_id="",
        record=f"clock/{partition}",
        category=CATEGORY,
        kind=KIND,
        rule_id=None,
        clause=None,
        basis=None,
        deadline=now,
        reason=(
            f"the clock of partition {partition} moved to {calendar.iso(now)}, applied after the first "
            f"{events} events of partition {partition} were processed (tick at offset "
            f"{'unknown' if tick is None else tick} of the clock topic)"
        ),
        policy_version=policy_label,
        caused_by=(),
    )


def events_before(reason: str) -> int | None:
    """How many of its partition's events were processed before a ``CLOCK_APPLIED`` entry, from
    its reason (None if the reason does not say)."""
    found = _EVENTS.search(reason)
    return int(found[1]) if found else None
