"""The due index: a tick's cost follows what is due, not what is pending."""

from __future__ import annotations

from collections import UserDict
from typing import Any

from streams.policy.calendar import MS_PER_DAY
from streams.policy.due import PartitionProgress, bucket_of, schedule, take_due

DAY = MS_PER_DAY
BASE = 20_000 * DAY


class CountingIndex(UserDict[str, Any]):
    """A dict that counts lookups, to measure what a tick touches."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def test_a_tick_returns_only_subjects_filed_up_to_its_day() -> None:
    index, progress = CountingIndex(), PartitionProgress()
    schedule(index, progress, 0, "a", BASE + 1 * DAY)
    schedule(index, progress, 0, "b", BASE + 5 * DAY)
    assert take_due(index, progress, 0, BASE + 2 * DAY) == ["a"]
    assert take_due(index, progress, 0, BASE + 10 * DAY) == ["b"]
    assert take_due(index, progress, 0, BASE + 11 * DAY) == []


def test_tick_cost_does_not_grow_with_pending_deadlines() -> None:
    index, progress = CountingIndex(), PartitionProgress()
    for n in range(5000):
        schedule(index, progress, 0, f"far-{n}", BASE + (1000 + n % 300) * DAY)
    take_due(index, progress, 0, BASE)  # first tick positions the cursor
    index.lookups = 0
    take_due(index, progress, 0, BASE + 7 * DAY)
    assert index.lookups == 8  # one per day scanned (today's bucket again, then 7 more)
    assert len(index) == 300


def test_a_deadline_filed_in_the_past_fires_at_the_next_tick() -> None:
    index, progress = CountingIndex(), PartitionProgress()
    take_due(index, progress, 0, BASE + 100 * DAY)
    schedule(index, progress, 0, "late", BASE + 3 * DAY)
    assert take_due(index, progress, 0, BASE + 100 * DAY + 1) == ["late"]


def test_partitions_do_not_share_buckets() -> None:
    index, progress0, progress1 = CountingIndex(), PartitionProgress(), PartitionProgress()
    schedule(index, progress0, 0, "p0", BASE)
    schedule(index, progress1, 1, "p1", BASE)
    assert take_due(index, progress1, 1, BASE + DAY) == ["p1"]
    assert take_due(index, progress0, 0, BASE + DAY) == ["p0"]


def test_progress_survives_a_round_trip_through_json_form() -> None:
    progress = PartitionProgress(
        cursor=bucket_of(BASE), low=3, now=BASE, events_done=42, deferred=[(BASE + DAY, 50)], pending=7
    )
    assert PartitionProgress.load(progress.dump()) == progress
