"""The due index: a tick's cost follows what is due, not what is pending."""

from __future__ import annotations

from typing import Any

from ebbtide.streams.policy.calendar import MS_PER_DAY
from ebbtide.streams.worker.progress import DueIndex, PartitionProgress

DAY = MS_PER_DAY
BASE = 20_000 * DAY


class CountingBuckets(dict[int, Any]):
    """Bucket storage that counts lookups, to measure what a tick touches."""

    lookups = 0

    def pop(self, key: int, *default: Any) -> Any:
        self.lookups += 1
        return super().pop(key, *default)


def test_a_tick_returns_only_subjects_filed_up_to_its_day() -> None:
    index = DueIndex()
    index.file("a", BASE + 1 * DAY)
    index.file("b", BASE + 5 * DAY)
    assert index.take(BASE + 2 * DAY) == ["a"]
    assert index.take(BASE + 10 * DAY) == ["b"]
    assert index.take(BASE + 11 * DAY) == []


def test_tick_cost_does_not_grow_with_pending_deadlines() -> None:
    buckets = CountingBuckets()
    index = DueIndex(buckets=buckets)
    for n in range(5000):
        index.file(f"far-{n}", BASE + (1000 + n % 300) * DAY)
    index.take(BASE)  # the first tick positions the cursor
    buckets.lookups = 0
    index.take(BASE + 7 * DAY)
    assert buckets.lookups == 8  # one per day scanned (today's again, then 7 more)
    assert len(index) == 5000


def test_a_deadline_filed_in_the_past_fires_at_the_next_tick() -> None:
    index = DueIndex()
    index.take(BASE + 100 * DAY)
    index.file("late", BASE + 3 * DAY)
    assert index.take(BASE + 100 * DAY + 1) == ["late"]


def test_the_first_tick_finds_deadlines_older_than_itself() -> None:
    index = DueIndex()
    index.file("old", BASE - 400 * DAY)
    assert index.take(BASE) == ["old"]


def test_progress_survives_a_round_trip_through_json_form() -> None:
    progress = PartitionProgress(now=BASE, events_done=42, deferred=[(BASE + DAY, 50, 7)])
    assert PartitionProgress.load(progress.dump()) == progress


def test_ticks_deferred_before_their_offset_was_kept_still_load() -> None:
    old = {"now": BASE, "events_done": 42, "deferred": [[BASE + DAY, 50]]}
    assert PartitionProgress.load(old).deferred == [(BASE + DAY, 50, None)]
