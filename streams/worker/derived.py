"""Derived data kept beside the states in each partition database, in step with them.

Each partition's database (``store``) has a second column family, :data:`COLUMN_FAMILY`, holding
what the worker derives from the states (the due index's entries and a digest of the counts:
``streams.worker.digest``). It is not changelogged: it is always written in the same atomic
write batch as the states and the changelog offset it describes, by every path that writes
states (a batch's acknowledged writes, Faust's recovery, the bulk read), so after a crash it
says what the states on disk say.

This module knows nothing of what a state holds: a :class:`Deriver` from the worker layer says
what to write (``streams.worker.digest.DigestDeriver``); here the store's records and the
derived writes meet in one write batch (:func:`write_records`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import rocksdict

COLUMN_FAMILY = "derived"

# Derived writes: key -> value, None to delete the key.
Writes = Mapping[bytes, bytes | None]
# Changelog records as a deriver sees them: (table key, the value stored before, the new value).
Replayed = Sequence[tuple[str, bytes | None, bytes | None]]


class DerivedPartition:
    """One partition database as the derived data sees it: its offset, whether it holds
    anything, and its derived column family (read, scanned, written)."""

    def __init__(self, db: rocksdict.Rdict, offset_key: bytes) -> None:
        self.db = db
        self.offset_key = offset_key

    def offset(self) -> int | None:
        """The changelog offset the database's states reach (None: none written)."""
        raw = self.db.get(self.offset_key)
        return None if raw is None else int(raw)

    def is_empty(self) -> bool:
        """No state and no offset: a database never written."""
        it = self.db.iter()
        it.seek_to_first()
        return not it.valid()

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get_column_family(COLUMN_FAMILY).get(key)
        return value

    def scan(self, start: bytes, stop: bytes) -> Iterator[bytes]:
        """The derived keys in ``[start, stop)``, in order."""
        bounded = rocksdict.ReadOptions()
        bounded.set_iterate_upper_bound(stop)  # RocksDB stops there (tombstones beyond are not read)
        family = self.db.get_column_family(COLUMN_FAMILY)
        yield from family.keys(from_key=start, read_opt=bounded)  # raw mode: bytes

    def write(self, writes: Writes) -> None:
        """Write derived data alone (hints that may run ahead of the states: due entries)."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        add(batch, self.db, writes)
        self.db.write(batch)


def add(batch: rocksdict.WriteBatch, db: rocksdict.Rdict, writes: Writes) -> None:
    """Add derived ``writes`` to ``batch`` (a write batch of ``db``), in the derived column family."""
    if not writes:
        return
    family = db.get_column_family_handle(COLUMN_FAMILY)
    for key, value in writes.items():
        if value is None:
            batch.delete(key, family)
        else:
            batch.put(key, value, family)


class Deriver(Protocol):
    """What the store asks of the worker layer about the derived data."""

    def dirty(self) -> Iterable[int]:
        """Partitions whose derived writes wait for the next persist."""
        ...

    def wants(self, key: str) -> bool:
        """Whether a changelog record of ``key`` changes the derived data (its old value is then
        read before it is overwritten)."""
        ...

    def persisting(self, partition: int, offset: int | None) -> Writes:
        """The partition's held derived writes (its digest at ``offset`` among them), taken: they
        go to disk with the states' held writes and ``offset`` (the offset the database holds
        after this write)."""
        ...

    def replayed(self, derived: DerivedPartition, records: Replayed, offset: int) -> Writes:
        """The derived writes for changelog ``records`` (key, the value on disk before, the new
        value; None: none) written to ``derived``'s database with ``offset``."""
        ...


def write_records(
    db: rocksdict.Rdict,
    records: Iterable[tuple[bytes, bytes | None]],
    offset: int,
    offset_key: bytes,
    deriver: Deriver | None,
    decode_key: Callable[[bytes], str],
) -> int:
    """One atomic write of changelog ``records`` (key, value; None deletes the key), the
    ``offset`` they reach and, with a ``deriver``, what it derives from them (each record's
    key, the value the database held before it and its own value). Returns the records."""
    batch = rocksdict.WriteBatch(raw_mode=True)
    replayed: list[tuple[str, bytes | None, bytes | None]] = []
    latest: dict[bytes, bytes | None] = {}  # a key written twice in the batch: its later value
    count = 0
    for key, value in records:
        count += 1
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
        if deriver is None or key == offset_key:
            continue
        name = decode_key(key)
        if deriver.wants(name):
            old = latest[key] if key in latest else db.get(key)
            latest[key] = value
            replayed.append((name, old, value))
    if deriver is not None:
        add(batch, db, deriver.replayed(DerivedPartition(db, offset_key), replayed, offset))
    batch.put(offset_key, str(offset).encode())
    db.write(batch)
    return count
