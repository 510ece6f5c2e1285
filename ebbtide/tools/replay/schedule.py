"""In which order to feed the worker's inputs to replay a partition: read off its recorded
decisions. Pure: no Kafka.

The worker applies events and receipts as they come, and a tick when it has come and the events
before it (``events_end``) are processed. Applying an event or a receipt never reads the clock,
but a tick judges the subjects as they stand, so where the ticks fall between events and
receipts matters, and arrival order decides it. The log says where:

- every decision names its ``input``, the message the worker was processing when it made it;
  within a topic, the worker processes messages in offset order;
- each move of a partition's clock is a ``CLOCK_APPLIED`` entry naming its tick and how many of
  the partition's events were processed before it.

So, walking a partition's decisions in log order: a decision's input is fed once every earlier
message of its topic is (messages no decision names, dead-lettered or changing nothing, go in
offset order before the next named one); at a ``CLOCK_APPLIED`` entry, the events it counts and
then its tick are fed, so the tick is applied at once, at that point. Except for a tick that
waited for an event and was applied while that event was processed (what it fired names the
event): it is fed just before that event, waits for it again, and is applied by it again. A
decision made under another policy version than the one before it marks a restart of the worker
with that policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ebbtide.streams.worker.clock_entry import KIND as CLOCK_APPLIED
from ebbtide.streams.worker.clock_entry import events_before

Source = Literal["events", "clock", "receipts"]


@dataclass(frozen=True)
class Named:
    """What the schedule reads of a recorded decision."""

    input: str | None
    kind: str
    reason: str
    policy_version: str


@dataclass(frozen=True)
class Feed:
    """Feed the message at ``offset`` of ``source`` (this partition)."""

    source: Source
    offset: int


@dataclass(frozen=True)
class Restart:
    """Start a fresh worker on the same state with the policy ``label``; ``resume``: it judged
    its subjects again on recovering its partitions (the decisions it made then have no input),
    not on its first message."""

    label: str
    resume: bool


Step = Feed | Restart


def parse_input(text: str) -> tuple[Source, int, int] | None:
    """``events/3/1200`` as (source, partition, offset); None if it is not one."""
    parts = text.split("/")
    if len(parts) != 3 or parts[0] not in ("events", "clock", "receipts"):
        return None
    try:
        partition, offset = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    source: Source = parts[0]  # type: ignore[assignment]  # checked just above
    return (source, partition, offset) if partition >= 0 and offset >= 0 else None


class _Cursor:
    """The offsets of one topic's messages of the partition and how many are fed."""

    def __init__(
        self,
        source: Source,
        offsets: Sequence[int],
        before: dict[int, int] | None = None,
        clock: _Cursor | None = None,
    ) -> None:
        """``before`` (events): per event offset, the clock offset to feed up to before it, from
        ``clock`` (the ticks that event applied)."""
        self.source = source
        self.offsets = offsets
        self.next = 0  # index into offsets
        self.before = before or {}
        self.clock = clock

    def through(self, offset: int) -> list[Step]:
        """Feed every message not fed yet up to ``offset`` included."""
        out: list[Step] = []
        while self.next < len(self.offsets) and self.offsets[self.next] <= offset:
            fed = self.offsets[self.next]
            if fed in self.before and self.clock is not None:
                out += self.clock.through(self.before[fed])  # the ticks this event applied
            out.append(Feed(self.source, fed))
            self.next += 1
        return out

    def left(self) -> int:
        return len(self.offsets) - self.next


def schedule(
    partition: int, decisions: Iterable[Named], offsets: Mapping[Source, Sequence[int]]
) -> tuple[list[Step], int]:
    """The steps replaying ``partition`` (its decisions in log order; ``offsets``: the offsets of
    its messages in each input topic, ascending); and how many messages come after the last one
    a decision names (not fed: the worker may not have reached them, and they changed nothing it
    recorded)."""
    named = list(decisions)
    clock = _Cursor("clock", offsets.get("clock", ()))
    cursors = {
        "events": _Cursor("events", offsets.get("events", ()), _applied_by_events(partition, named), clock),
        "clock": clock,
        "receipts": _Cursor("receipts", offsets.get("receipts", ())),
    }
    steps: list[Step] = []
    label: str | None = None
    for decision in named:
        if decision.policy_version != label:
            # the first: the worker's start; after it, a restart (judging again on recovery or not)
            steps.append(Restart(decision.policy_version, resume=label is not None and not decision.input))
            label = decision.policy_version
        found = parse_input(decision.input) if decision.input else None
        if found is None or found[1] != partition:
            continue  # no input (judged on a restart), or not this partition's: nothing to place
        source, _, offset = found
        if decision.kind == CLOCK_APPLIED and source == "clock":
            counted = events_before(decision.reason)
            if counted is not None:
                steps += cursors["events"].through(counted - 1)
        steps += cursors[source].through(offset)
    return steps, sum(c.left() for c in cursors.values())


def _applied_by_events(partition: int, named: list[Named]) -> dict[int, int]:
    """The ticks applied while an event was processed: per event offset, the offset of the last
    tick it applied (every tick of the clock topic up to it is fed before that event).

    A tick that came before the events it waits for is applied while the event that completes
    them is processed, so what it fires names that event as its input; that event's own decisions
    come before the tick's ``CLOCK_APPLIED`` entry. So if the first decision after an entry (and
    any other entries applied at once) names an event the entry counts, that event applied the
    tick. (A tick that fired nothing before the next message leaves no such trace; fed at its
    entry it is applied on arrival, at the same point, and decides nothing either way.)"""
    applied: dict[int, int] = {}
    for at, decision in enumerate(named):
        found = parse_input(decision.input) if decision.input else None
        counted = events_before(decision.reason) if decision.kind == CLOCK_APPLIED else None
        if found is None or found[:2] != ("clock", partition) or counted is None:
            continue
        after = _next_decision(named, at + 1)
        by = parse_input(after.input) if after is not None and after.input else None
        if by is not None and by[:2] == ("events", partition) and by[2] < counted:
            applied[by[2]] = max(applied.get(by[2], -1), found[2])
    return applied


def _next_decision(named: list[Named], start: int) -> Named | None:
    """The first decision from ``start`` on that is not a ``CLOCK_APPLIED`` entry."""
    for at in range(start, len(named)):
        if named[at].kind != CLOCK_APPLIED:
            return named[at]
    return None
