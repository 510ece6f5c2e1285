"""A partition's progress and its due index.

:class:`PartitionProgress` is the lifecycle agent's position in one partition (the pipeline clock,
the events processed, the ticks deferred until the events before them are in), kept in the
changelogged state table under ``p:<partition>``.

:class:`DueIndex` and :class:`StoredDueIndex` say which subjects may have a deadline in which
day (both have ``file``, ``take`` and ``cursor``). Deadlines are filed in day buckets. A tick scans
only the buckets between the last one it scanned and the tick's own day, so its cost grows with
the deadlines that are due (and the days that passed), never with all pending deadlines. Entries
are hints: the engine decides what is really due, and a subject with a later deadline is filed
again.

:class:`DueIndex` lives in memory (the memory store): after a restart it is rebuilt from the
subject states (``partitions``). :class:`StoredDueIndex` (the rocksdb store) keeps its entries in
the partition database's derived column family (``derived``), key :func:`due_key` (the bucket,
8 bytes big-endian, then the subject id), empty value; a tick's take is a range scan merged with
the puts and deletes held since the last persist, which go to disk in the same write batch as
the states they come with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ebbtide.streams.policy.calendar import MS_PER_DAY
from ebbtide.streams.worker.derived import DerivedPartition

BUCKET_MS = MS_PER_DAY
DUE = b"d"  # the first byte of every due entry's key in the derived column family
_SIGN = 1 << 63  # buckets are stored offset by this: unsigned, so in order also before 1970


def bucket_of(ms: int) -> int:
    return ms // BUCKET_MS


class Due(Protocol):
    """What the processor uses of a due index (:class:`DueIndex` or :class:`StoredDueIndex`)."""

    cursor: int | None

    def file(self, subject_id: str, deadline: int) -> None: ...

    def take(self, now: int) -> list[str]: ...

    def __len__(self) -> int: ...


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


def due_key(bucket: int, subject_id: str) -> bytes:
    """The key of a due entry: :data:`DUE`, the bucket (8 bytes, big-endian), the subject id."""
    return DUE + (bucket + _SIGN).to_bytes(8, "big") + subject_id.encode()


class StoredDueIndex:
    """The due index of :class:`DueIndex`, its entries on disk (see the module docstring)."""

    def __init__(self, derived: Callable[[], DerivedPartition], cursor: int | None = None) -> None:
        """``derived``: the partition database's derived data; ``cursor`` as it was persisted."""
        self.derived = derived
        self.cursor = cursor  # last bucket a tick scanned
        self.held: dict[bytes, bool] = {}  # entry key -> put (True) or delete (False), not persisted yet

    def file(self, subject_id: str, deadline: int) -> None:
        """File ``subject_id`` under ``deadline``'s day, or the next day a tick scans."""
        bucket = bucket_of(deadline)
        if self.cursor is not None:
            bucket = max(bucket, self.cursor)
        self.held[due_key(bucket, subject_id)] = True

    def take(self, now: int) -> list[str]:
        """Remove (a held delete) and return, sorted, the subjects filed in every bucket up to
        ``now``'s day."""
        start = DUE if self.cursor is None else due_key(self.cursor, "")
        stop = due_key(bucket_of(now) + 1, "")
        self.cursor = bucket_of(now) if self.cursor is None else max(self.cursor, bucket_of(now))
        found = {key for key in self.derived().scan(start, stop) if self.held.get(key, True)}
        found.update(key for key, put in self.held.items() if put and start <= key < stop)
        for key in found:
            self.held[key] = False
        return sorted({key[9:].decode() for key in found})

    def take_held(self) -> dict[bytes, bytes | None]:
        """The held puts and deletes as derived writes, no longer held (they are being persisted)."""
        held, self.held = self.held, {}
        return {key: b"" if put else None for key, put in held.items()}

    def spill(self) -> None:
        """Write the held entries now, alone (a full rebuild's: hints, harmless ahead of the states)."""
        self.derived().write(self.take_held())

    def __len__(self) -> int:
        derived = self.derived()
        on_disk = sum(1 for key in derived.scan(DUE, b"e") if self.held.get(key, True))
        return on_disk + sum(1 for k, put in self.held.items() if put and derived.get(k) is None)


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
