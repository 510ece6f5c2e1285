"""The due index: which subjects may have a deadline in which day.

Deadlines are filed in day buckets. A tick scans only the buckets between the last one it
scanned and the tick's own day, so its cost grows with the deadlines that are due (and the
days that passed), never with all pending deadlines. Entries are hints: the engine decides
what is really due, and a subject with a later deadline is filed again.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field

from streams.policy.calendar import MS_PER_DAY

BUCKET_MS = MS_PER_DAY


@dataclass
class PartitionProgress:
    """Per-partition position of the lifecycle agent, kept in a changelogged table."""

    cursor: int | None = None  # last bucket scanned by a tick
    low: int | None = None  # lowest bucket filed before the first tick
    now: int | None = None  # the clock time of the last tick applied
    events_done: int = 0  # events of this partition processed (next offset)
    deferred: list[tuple[int, int]] = field(default_factory=list)  # (now, events_end)
    pending: int = 0  # records waiting for a deadline

    def dump(self) -> dict[str, object]:
        return {
            "cursor": self.cursor, "low": self.low, "now": self.now,
            "events_done": self.events_done, "deferred": [list(d) for d in self.deferred],
            "pending": self.pending,
        }

    @classmethod
    def load(cls, raw: dict[str, object] | None) -> PartitionProgress:
        if not raw:
            return cls()
        deferred = raw.get("deferred") or []
        assert isinstance(deferred, list)
        return cls(
            cursor=raw.get("cursor"),  # type: ignore[arg-type]
            low=raw.get("low"),  # type: ignore[arg-type]
            now=raw.get("now"),  # type: ignore[arg-type]
            events_done=int(raw.get("events_done") or 0),  # type: ignore[call-overload]
            deferred=[(int(n), int(e)) for n, e in deferred],
            pending=int(raw.get("pending") or 0),  # type: ignore[call-overload]
        )


def bucket_of(ms: int) -> int:
    return ms // BUCKET_MS


def _key(partition: int, bucket: int) -> str:
    return f"{partition}:{bucket}"


def schedule(
    index: MutableMapping[str, list[str]],
    progress: PartitionProgress,
    partition: int,
    subject_id: str,
    deadline: int,
) -> None:
    """File ``subject_id`` under the bucket of ``deadline`` (or the next one a tick scans)."""
    bucket = bucket_of(deadline)
    if progress.cursor is not None:
        bucket = max(bucket, progress.cursor)
    else:
        progress.low = bucket if progress.low is None else min(progress.low, bucket)
    key = _key(partition, bucket)
    subjects = index.get(key) or []
    if subject_id not in subjects:
        index[key] = [*subjects, subject_id]


def take_due(
    index: MutableMapping[str, list[str]],
    progress: PartitionProgress,
    partition: int,
    now: int,
) -> list[str]:
    """Remove and return the subjects filed in every bucket up to ``now``'s day, in order."""
    end = bucket_of(now)
    start = progress.cursor if progress.cursor is not None else progress.low
    progress.cursor = end if progress.cursor is None else max(progress.cursor, end)
    if start is None:
        return []
    found: dict[str, None] = {}
    for bucket in range(start, end + 1):
        key = _key(partition, bucket)
        if key in index:
            for subject_id in index.pop(key):
                found[subject_id] = None
    return list(found)
