"""A partition's progress and its due index.

:class:`PartitionProgress` is the lifecycle agent's position in one partition (the pipeline clock,
the events processed, the ticks deferred until the events before them are in), kept in the
changelogged state table under ``p:<partition>``.

:class:`DueIndex` says which subjects may have a deadline in which day. Deadlines are filed in day
buckets. A tick scans only the buckets between the last one it scanned and the tick's own day, so
its cost grows with the deadlines that are due (and the days that passed), never with all
pending deadlines. Entries are hints: the engine decides what is really due, and a subject with
a later deadline is filed again. The index lives in memory only. It holds nothing that the
subject states do not: after a restart it is rebuilt from them (``partitions``), so it never
has to be written in step with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ebbtide.streams.policy.calendar import MS_PER_DAY

BUCKET_MS = MS_PER_DAY


def bucket_of(ms: int) -> int:
    return ms // BUCKET_MS


@dataclass
class DueIndex:
    buckets: dict[int, set[str]] = field(default_factory=dict)
    cursor: int | None = None  # last bucket a tick scanned

    def file(self, subject_id: str, deadline: int) -> None:
        """File ``subject_id`` under ``deadline``'s day, or the next day a tick scans."""
        bucket = bucket_of(deadline)
        if self.cursor is not None:
            bucket = max(bucket, self.cursor)
        self.buckets.setdefault(bucket, set()).add(subject_id)

    def take(self, now: int) -> list[str]:
        """Remove and return, sorted, the subjects filed in every bucket up to ``now``'s day."""
        end = bucket_of(now)
        start = self.cursor if self.cursor is not None else min(self.buckets, default=end)
        self.cursor = end if self.cursor is None else max(self.cursor, end)
        found: set[str] = set()
        for bucket in range(start, end + 1):
            subjects = self.buckets.pop(bucket, None)
            if subjects:
                found |= subjects
        return sorted(found)

    def __len__(self) -> int:
        return sum(len(s) for s in self.buckets.values())


@dataclass
class PartitionProgress:
    """Per-partition position of the lifecycle agent, kept in the changelogged state table."""

    now: int | None = None  # clock time of the last tick applied
    events_done: int = 0  # events of this partition processed (next offset)
    # (now, events_end, the tick's offset: None for entries written before it was kept)
    deferred: list[tuple[int, int, int | None]] = field(default_factory=list)

    def dump(self) -> dict[str, object]:
        return {
            "now": self.now,
            "events_done": self.events_done,
            "deferred": [list(d) for d in self.deferred],
        }

    @classmethod
    def load(cls, raw: dict[str, object] | None) -> PartitionProgress:
        if not raw:
            return cls()
        now, done, deferred = raw.get("now"), raw.get("events_done"), raw.get("deferred")
        return cls(
            now=int(now) if isinstance(now, int) else None,
            events_done=int(done) if isinstance(done, int) else 0,
            deferred=[_deferred(d) for d in deferred] if isinstance(deferred, list) else [],
        )


def _deferred(entry: list[int | None]) -> tuple[int, int, int | None]:
    """A deferred tick as stored: ``[now, events_end, offset]``, or ``[now, events_end]`` as
    written before the tick's offset was kept."""
    offset = entry[2] if len(entry) > 2 else None
    return int(entry[0] or 0), int(entry[1] or 0), None if offset is None else int(offset)
