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
then its tick are fed, so the tick is applied at once, at that point. A decision made under
another policy version than the one before it marks a restart of the worker with that policy.
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

    def __init__(self, source: Source, offsets: Sequence[int]) -> None:
        self.source = source
        self.offsets = offsets
        self.next = 0  # index into offsets

    def through(self, offset: int) -> list[Step]:
        """Feed every message not fed yet up to ``offset`` included."""
        out: list[Step] = []
        while self.next < len(self.offsets) and self.offsets[self.next] <= offset:
            out.append(Feed(self.source, self.offsets[self.next]))
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
    cursors = {source: _Cursor(source, offsets.get(source, ())) for source in ("events", "clock", "receipts")}
    steps: list[Step] = []
    label: str | None = None
    for decision in decisions:
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
