"""The worker's state table: staged writes, subject keys and limits, and decoded subjects.

The lifecycle agent stages every table write of a batch, sends the batch's output and waits for
the broker to acknowledge it, and only then applies the writes (``batch``). All writes of a
partition go to one changelog partition, so after a crash a prefix of them survives: a subject
is never durably "deletion ordered" unless its command is already on the broker.

Keys: ``s:<partition>:<subject>`` for a subject's state, ``p:<partition>`` for the partition's
progress (clock, events processed, deferred ticks), ``u:<partition>:<content id>`` for each
certificate the engine issued that could not be signed yet and ``c:<partition>`` for the head of
the partition's decision chain (``chaining``). All events of a subject share a
partition, and every key names its partition, so each partition's state lives, in order, in
that partition of the changelog, and a restarted worker recovers exactly what it owned.

The table holds bytes (``values``): a write is staged as it is, and encoded once, at the flush;
what is read from the table is decoded (a subject's state lazily, by :class:`Subjects`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from ebbtide.streams.engine.model import SubjectState
from ebbtide.streams.worker import state_format, values
from ebbtide.streams.worker.state_format import Entry, Summary

_DELETED = object()
DECODED_CACHE = 20_000  # subjects kept decoded in memory beside the table

# A subject's state is one changelog message (its bytes, ``state_format``): past what the broker
# takes (1 MB by default) it could not be written and the worker would fail on the same batch
# again and again. A new record may take a subject's state to MAX_STATE_BYTES, with room kept for
# what each live copy still grows by (its order, its answer and signature: RESERVE_PER_COPY); any
# other event (a fact: an account closed, an erasure, ...) may take it to HARD_STATE_BYTES, so a
# subject that has reached the limit can still be closed and deleted. A state is measured before
# its body is compressed (``state_format.size_bound``): what it is stored as is never larger.
MAX_STATE_BYTES = 700_000
HARD_STATE_BYTES = 900_000
RESERVE_PER_COPY = 400
# Entries (seen ids, facts, records) a subject may have before its size is measured: with every
# id and key at its 512-character limit, fewer entries cannot come near the limits.
_MEASURE_FROM = 100


class PartitionNotHeld(RuntimeError):
    """A read of a partition of the state this worker does not hold (the on-disk store): its
    state is elsewhere, so "no state" would be a lie; the caller skips the partition (a lookup)
    or fails loudly (a batch: the worker restarts and replays it)."""


def subject_key(partition: int, subject_id: str) -> str:
    return f"s:{partition}:{subject_id}"


def partition_of_key(key: str) -> int:
    """The partition a state key belongs to: ``s:<p>:<subject>``, ``p:<p>``, ``u:<p>:<id>`` or ``c:<p>``."""
    return int(key.split(":", 2)[1])


def partition_items(table: Mapping[str, Any], partition: int) -> Iterator[tuple[str, Any]]:
    """The keys and stored values of one partition, one at a time: the table's own
    ``partition_items`` if it has one (a store keeping each partition apart), else every entry
    of the table looked at in turn and those of other partitions passed over."""
    own: Callable[[int], Iterator[tuple[str, Any]]] | None = getattr(table, "partition_items", None)
    if own is not None:
        yield from own(partition)
        return
    for key, value in table.items():
        if partition_of_key(key) == partition:
            yield key, value


def state_size(state: SubjectState, grows: bool) -> int | None:
    """The size ``state`` counts as (encoded before compression, plus the reserve of its live
    copies) if that is over its limit (MAX_STATE_BYTES where the event adds a record, ``grows``;
    else HARD_STATE_BYTES), else None. Measured only for subjects with many entries."""
    if len(state.seen) + len(state.facts) + len(state.records) < _MEASURE_FROM:
        return None
    live = sum(1 for r in state.records.values() if r.status in ("pending", "ordered") or not r.certified)
    size = state_format.size_bound(state) + RESERVE_PER_COPY * live
    return size if size > (MAX_STATE_BYTES if grows else HARD_STATE_BYTES) else None


class StagedTable(MutableMapping[str, Any]):
    """Read-your-writes now, applied to the real table later (:meth:`flush`), in order, encoded
    (``values``). A key read from the table gives its decoded value; a subject's state (``s:``)
    gives the bytes stored, which :class:`Subjects` decodes."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        # One read per key where the table offers it (``store.PartitionedTable.read``).
        self._read: Callable[[str], Any] = getattr(table, "read", None) or table.get
        self._staged: dict[str, Any] = {}
        # Told of each value a flush writes: (key, the bytes stored, the value staged).
        self.on_flush: list[Callable[[str, bytes, Any], None]] = []

    def __getitem__(self, key: str) -> Any:
        if key in self._staged:
            value = self._staged[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        raw = self._read(key)
        if raw is None:
            raise KeyError(key)
        return values.decode(key, raw)

    def staged(self, key: str) -> Any:
        """The value staged for ``key`` and not flushed yet (None if there is none)."""
        value = self._staged.get(key)
        return None if value is _DELETED else value

    def stored(self, key: str) -> Any:
        """The decoded value of ``key`` in the table, staged writes left out (None if missing)."""
        raw = self._read(key)
        return None if raw is None else values.decode(key, raw)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        self._staged.pop(key, None)  # re-insert: keep the order of last writes
        self._staged[key] = value

    def __delitem__(self, key: str) -> None:
        self._staged.pop(key, None)
        self._staged[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        staged = {k for k, v in self._staged.items() if v is not _DELETED}
        yield from staged
        yield from (k for k in self.table if k not in self._staged)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> int:
        """Apply the staged writes to the table, in the order they were last made, each encoded."""
        count = len(self._staged)
        for key, value in self._staged.items():
            if value is _DELETED:
                self.table.pop(key, None)
            else:
                raw = self.table[key] = values.encode(key, value)
                for hook in self.on_flush:
                    hook(key, raw, value)
        self._staged.clear()
        return count

    def discard(self) -> None:
        self._staged.clear()


class Subjects:
    """Subject states in the staged table, with the most recent ones kept decoded beside it.

    A decoded state is valid while the table still holds the bytes it came from, so a write
    staged or flushed by anyone else is never hidden by the cache. ``on_decoded`` sees each
    state decoded from the table (not those from the cache) and gives the one to use: the
    processor judges a state stamped under another policy again there."""

    def __init__(
        self,
        state: StagedTable,
        on_decoded: Callable[[int, SubjectState], SubjectState] = lambda partition, state: state,
    ) -> None:
        self.state = state
        self.on_decoded = on_decoded
        self._decoded: dict[str, tuple[bytes, SubjectState]] = {}
        state.on_flush.append(self._flushed)

    def load(self, partition: int, subject_id: str) -> SubjectState | None:
        """The subject's state, if it has one."""
        key = subject_key(partition, subject_id)
        value = self.state.get(key)
        if value is None:
            return None
        if isinstance(value, Entry):  # staged in this batch
            return value.state
        cached = self._decoded.get(key)
        if cached is not None and (cached[0] is value or cached[0] == value):
            return cached[1]
        state = state_format.decode(value)
        self._remember(key, value, state)
        return self.on_decoded(partition, state)

    def save(self, partition: int, state: SubjectState) -> tuple[Summary | None, Summary]:
        """Stage ``state``; return the summaries of what was stored before (None for a new
        subject; read without decoding it) and of ``state``."""
        key = subject_key(partition, state.subject_id)
        old = self.state.get(key)
        before = (
            None if old is None else old.summary if isinstance(old, Entry) else state_format.read_summary(old)
        )
        summary = state_format.summarise(state)
        self.state[key] = Entry(state, summary)
        return before, summary

    def forget(self, partition: int) -> None:
        """Drop the partition's decoded states (it moved, or came back after a rebalance)."""
        prefix = f"s:{partition}:"
        for key in [k for k in self._decoded if k.startswith(prefix)]:
            del self._decoded[key]

    def _flushed(self, key: str, raw: bytes, value: Any) -> None:
        if isinstance(value, Entry):  # what was staged is what the bytes say: no need to decode them
            self._remember(key, raw, value.state)

    def _remember(self, key: str, raw: bytes, state: SubjectState) -> None:
        self._decoded.pop(key, None)
        self._decoded[key] = (raw, state)
        if len(self._decoded) > DECODED_CACHE:
            del self._decoded[next(iter(self._decoded))]  # the oldest entry (first in, first out)
