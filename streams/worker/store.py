"""The worker's state table on local disk: Faust's RocksDB store (rocksdict), one database per
partition under the state directory, so a restarted worker replays only the changelog's tail.

Every key names its partition (``streams.worker.staging``), so a write lands in the database of
the partition its key names and a read goes straight to that one database: Faust's own store
takes the partition of the event being processed, which is not the key's when the batch step
writes a batch's state after the batch (``streams.worker.batch``).

A database holds a prefix of its changelog partition and the offset it reaches, written together:

- a write to the table is held in memory (reads see it) until the batch step has the broker's
  acknowledgement of its changelog message (:meth:`PartitionStore.persist`, called by
  ``PartitionedTable.written``); then the batch's writes of each partition and the offset of its
  last acknowledged changelog message go to that partition's database in one atomic RocksDB
  write batch. A SIGKILL before that loses nothing the changelog has (the next start replays it
  from the offset the database holds) and leaves no write the changelog lacks;
- what recovery reads from the changelog is written with its offset the same way
  (:meth:`PartitionStore.apply_changelog_batch`).

Each write batch also carries what the worker derives from the states it writes (the due
index's entries and the partition's digest, in the database's ``derived`` column family: see
``streams.worker.derived``), as the store's :class:`~ebbtide.streams.worker.derived.Deriver` (the
worker's ``Partitions``) says; the store itself knows nothing of what a state holds.

RocksDB's write-ahead log (not synced per write) keeps every atomic write through a crash of the
process; a host crash may lose the last ones, which the next start replays from the changelog. A
partition taken away drops its held writes; it reopens from its database and the changelog's tail.

Memory is bounded over all partitions: one block cache and one write buffer budget shared by
every database of the table (``BLOCK_CACHE``, with the memtables, ``WRITE_BUFFERS``, counted
in it), not Faust's 2 GiB cache and 192 MiB of memtables per database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import faust
import rocksdict
from faust.stores import rocksdb
from faust.types import TP, CollectionT, EventT, StoreT
from yarl import URL

from ebbtide.streams.worker.derived import (
    COLUMN_FAMILY,
    DerivedPartition,
    Deriver,
    Replayed,
    add,
    write_records,
)
from ebbtide.streams.worker.restore import read_into
from ebbtide.streams.worker.staging import PartitionNotHeld, partition_of_key

STORES = ("rocksdb", "memory")  # EBBTIDE_STATE_STORE
BLOCK_CACHE = 128 * 1024**2  # bytes: read cache shared by every partition's database
WRITE_BUFFERS = 64 * 1024**2  # bytes: memtables of every partition's database together
WRITE_BUFFER = 16 * 1024**2  # bytes: one memtable of one database
MAX_OPEN_FILES = 256  # per database

log = logging.getLogger(__name__)


def store_url(store: str) -> str:
    """Faust's store URL for EBBTIDE_STATE_STORE (``rocksdb`` or ``memory``)."""
    return f"{store}://"


class SharedOptions(rocksdb.RocksDBOptions):
    """RocksDB options of the table's databases: one block cache and one write buffer budget for
    all of them (Faust's defaults give each database its own 2 GiB cache and 192 MiB of
    memtables). Index and filter blocks are kept in the cache, so they count against it."""

    def __init__(self) -> None:
        super().__init__(
            max_open_files=MAX_OPEN_FILES,
            write_buffer_size=WRITE_BUFFER,
            max_write_buffer_number=2,
            block_cache_size=BLOCK_CACHE,
            use_rocksdict=True,
        )
        self.cache = rocksdict.Cache(BLOCK_CACHE)
        self.buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            WRITE_BUFFERS, False, self.cache
        )

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.create_missing_column_families(True)  # the derived data's, in a database without it
        options.set_max_open_files(MAX_OPEN_FILES)
        options.set_write_buffer_size(WRITE_BUFFER)
        options.set_max_write_buffer_number(2)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.buffers)
        options.set_compression_type(rocksdict.DBCompressionType.lz4())
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, False)  # full filters: a point read touches one block
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options

    def open(self, path: Path, *, read_only: bool = False) -> rocksdict.Rdict:
        options = self.as_options()
        db = rocksdict.Rdict(
            str(path),
            options=options,
            column_families={COLUMN_FAMILY: options},
            access_type=rocksdict.AccessType.read_write(),
        )
        db.set_read_options(rocksdict.ReadOptions())
        return db


class PartitionStore(rocksdb.Store):
    """Faust's RocksDB store, by the partition each key names, with writes held until their
    changelog messages are acknowledged (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, driver="rocksdict", **kwargs)
        self.rocksdb_options = SharedOptions()
        self._held: dict[int, dict[bytes, bytes | None]] = {}  # partition -> key -> value (None: deleted)
        self.restored = 0  # changelog records written by recovery since the start (logged, tested)
        # Derives the data kept beside the states (``derived``), set by the worker's partitions.
        self.deriver: Deriver | None = None

    def partition_of(self, key: bytes) -> int:
        """The partition a stored key names, off its bytes: json keeps ``"s:<p>:…"``'s ASCII prefix."""
        return int(key.split(b":", 2)[1].strip(b'"'))

    def read(self, key: str) -> bytes | None:
        """The bytes stored under ``key`` (a held write first), or None, in one read."""
        return self._get(self._encode_key(key))

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._held.setdefault(self.partition_of(key), {})[key] = value

    def _del(self, key: bytes) -> None:
        self._held.setdefault(self.partition_of(key), {})[key] = None

    def _get(self, key: bytes) -> bytes | None:
        partition = self.partition_of(key)
        held = self._held.get(partition)
        if held is not None and key in held:
            return held[key]
        value: bytes | None = self._open_db(partition).get(key)
        return value

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _open_db(self, partition: int) -> rocksdict.Rdict:
        """The partition's database, opened if need be; :class:`PartitionNotHeld` if this worker
        holds the partition neither as active nor as standby (its state is elsewhere: reading it
        as empty would make a subject new again)."""
        if partition in self._dbs:
            db: rocksdict.Rdict = self._dbs[partition]
            return db
        if not self._holds(partition):
            raise PartitionNotHeld(
                f"state store: partition {partition} read but not held here (open: {sorted(self._dbs)})"
            )
        opened: rocksdict.Rdict = self._db_for_partition(partition)
        return opened

    def _holds(self, partition: int) -> bool:
        tp = TP(self.table.changelog_topic_name, partition)  # type: ignore[attr-defined]
        assignor = self.app.assignor
        return tp in assignor.assigned_actives() or tp in assignor.assigned_standbys()

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Faust calls this once a changelog message is acknowledged: the offset is written with
        the writes it covers, by :meth:`persist`, instead."""

    def persist(self, offsets: Mapping[int, int]) -> None:
        """Write the held writes of each partition with ``offsets[partition]``, the offset of its
        last acknowledged changelog message, in one atomic write batch per partition (without
        an offset if none is known: every held write is acknowledged, so a database ahead of its
        offset only has the tail replayed over it again). A partition no longer held here
        (revoked meanwhile) is skipped: its next owner reads the changelog. One held but not
        open yet is opened: its acknowledged writes are never dropped."""
        held, self._held = self._held, {}
        dirty = set(self.deriver.dirty()) if self.deriver is not None else set()
        for partition in held.keys() | dirty:
            if partition not in self._dbs and not self._holds(partition):
                continue
            db = self._db_for_partition(partition)
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in held.get(partition, {}).items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            offset = offsets.get(partition)
            if offset is not None:
                batch.put(self.offset_key, str(offset).encode())
            if self.deriver is not None:  # the derived data, as it is with these writes
                at = offset if offset is not None else DerivedPartition(db, self.offset_key).offset()
                add(batch, db, self.deriver.persisting(partition, at))
            db.write(batch)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        """Write changelog records read by recovery as they are (keys and values not decoded),
        each partition's with its last offset and what the deriver derives from them in one
        atomic write batch (``derived.write_records``)."""
        records: dict[int, list[tuple[bytes, bytes | None]]] = {}
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            key: bytes = message.key  # type: ignore[assignment]  # changelog keys are never None
            records.setdefault(message.partition, []).append((key, message.value))
            offsets[message.partition] = max(message.offset, offsets.get(message.partition, -1))
        for partition, written in records.items():
            db = self._db_for_partition(partition)
            self.restored += write_records(
                db, written, offsets[partition], self.offset_key, self.deriver, self._decode_key
            )

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        """A partition taken away: its held writes go (the changelog has them if they were
        acknowledged) and its database is closed, so that it can be opened again at once if the
        partition comes back (Faust leaves closing to the garbage collector)."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._held.pop(tp.partition, None)
                db = self._dbs.pop(tp.partition, None)
                if db is not None:
                    db.close()
        super().revoke_partitions(table, tps)

    async def assign_partitions(self, table: CollectionT, tps: set[TP], generation_id: int = 0) -> None:
        """A partition (re)gained starts from its database and the changelog after it: writes
        held for it from before (a batch that ran through the rebalance) are dropped, and the
        changelog is read into its database in bulk (``streams.worker.restore``) when the table
        has the connection for it (``PartitionedTable.changelog_client``); Faust's recovery then
        reads only what was written after."""
        mine = {tp for tp in tps if tp.topic in table.changelog_topic.topics}
        for tp in mine:
            self._held.pop(tp.partition, None)
        await super().assign_partitions(table, tps, generation_id)
        client = getattr(table, "changelog_client", None)
        standbys = self.app.assignor.assigned_standbys()
        actives = sorted(tp.partition for tp in mine if tp not in standbys and tp.partition in self._dbs)
        if client is None or not actives:
            return
        topic = table.changelog_topic_name  # type: ignore[attr-defined]
        dbs = {p: (self._next_offset(TP(topic, p)), self._dbs[p]) for p in actives}
        restored = await read_into(client, topic, dbs, self.offset_key, self.deriver, self._decode_key)
        self.restored += restored.records
        log.info(
            "state store: %d changelog records of partitions %s read in bulk in %.2f s",
            restored.records,
            ",".join(map(str, actives)),
            restored.seconds,
        )

    def _next_offset(self, tp: TP) -> int:
        """The first changelog offset the partition's database does not have."""
        persisted = self.persisted_offset(tp)
        return 0 if persisted is None else persisted + 1

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        log.info(
            "state store: %d changelog records restored since the start (partitions %s on disk)",
            self.restored,
            ",".join(str(p) for p in sorted(self._dbs)) or "none",
        )
        await super().on_recovery_completed(active_tps, standby_tps)

    def derived(self, partition: int) -> DerivedPartition:
        """The partition's database, for its derived data (:class:`PartitionNotHeld` if not held)."""
        return DerivedPartition(self._open_db(partition), self.offset_key)

    def held_writes(
        self, partition: int, wants: Callable[[str], bool]
    ) -> list[tuple[str, bytes | None, bytes | None]]:
        """The partition's held writes of the keys ``wants`` says: (key, the value on disk, the
        value held; None: none)."""
        db = self._open_db(partition)
        held = self._held.get(partition, {}).items()
        named = ((self._decode_key(key), key, value) for key, value in held)
        return [(name, db.get(key), value) for name, key, value in named if wants(name)]

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """The keys and stored values of one partition, lazily, from its database (values as
        stored: not decoded), with the writes held for it in place of what is on disk."""
        held = dict(self._held.get(partition, {}))
        for key, value in self._open_db(partition).items():
            if key == self.offset_key or key in held:
                continue
            yield self._decode_key(key), value  # type: ignore[arg-type]  # raw mode: bytes
        for key, value in held.items():
            if value is not None:
                yield self._decode_key(key), value


class PartitionedTable(faust.Table[str, Any]):
    """A table whose keys name their partition (``s:<p>:…``, ``p:<p>``), so every write goes to
    the changelog partition of the source partition it belongs to, also when written after a
    batch rather than while its event is the current one. Its changelog messages are kept until
    :meth:`written` has awaited the broker's acknowledgement of them; with the ``rocksdb://``
    store (:class:`PartitionStore`) the writes then go to disk with their changelog offsets."""

    _unacked: list[Any] | None = None
    # The connection (ebbtide.runtime.kafka.client_config) for reading the changelog in bulk when
    # a partition is assigned (streams.worker.restore); None: Faust's recovery reads it all.
    changelog_client: dict[str, Any] | None = None
    deriver: Deriver | None = None  # what is derived beside the states (derive_with)

    def _new_store_by_url(self, url: str | URL) -> StoreT[Any, Any]:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        store = PartitionStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
        store.deriver = self.deriver
        return store

    def partition_for_key(self, key: Any) -> int | None:
        return partition_of_key(key)

    def read(self, key: str) -> Any:
        """The value stored under ``key``, or None: one read of the rocksdb store (``get`` would
        read it twice); the memory store's ``get`` otherwise."""
        store = self.data
        if isinstance(store, PartitionStore):
            raw = store.read(key)
            return None if raw is None else store._decode_value(raw)
        return self.get(key)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        sent = super().send_changelog(*args, **kwargs)
        if self._unacked is None:
            self._unacked = []
        self._unacked.append(sent)
        return sent

    async def written(self) -> None:
        """Wait until the broker has acknowledged every changelog message sent since the last call
        (raises if one failed); then write what they changed to disk (with the rocksdb store)."""
        pending, self._unacked = self._unacked or [], []
        acked = await asyncio.gather(*pending) if pending else []
        store = self.data
        if isinstance(store, PartitionStore):
            offsets: dict[int, int] = {}
            for sent in acked:  # faust RecordMetadata
                if sent is not None:
                    offsets[sent.partition] = max(sent.offset, offsets.get(sent.partition, -1))
            store.persist(offsets)

    def derived(self, partition: int) -> DerivedPartition | None:
        """The partition's database for the derived data kept beside its states (the rocksdb
        store; None with the memory store, which keeps none)."""
        store = self.data
        return store.derived(partition) if isinstance(store, PartitionStore) else None

    def held_writes(self, partition: int, wants: Callable[[str], bool]) -> Replayed:
        """Writes held for the partition, not on disk yet (``PartitionStore.held_writes``)."""
        store = self.data
        return store.held_writes(partition, wants) if isinstance(store, PartitionStore) else []

    def derive_with(self, deriver: Deriver) -> None:
        """Have ``deriver`` say what is derived from the states written (the rocksdb store, made
        now or when first used)."""
        self.deriver = deriver
        if isinstance(self._data, PartitionStore):
            self._data.deriver = deriver

    def partition_items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """The keys and values of one partition, lazily: read from its own database with the
        rocksdb store (values decoded by the table's value serializer: unchanged bytes with
        ``raw``); picked out of every key with the memory store."""
        store = self.data
        if isinstance(store, PartitionStore):
            for key, value in store.partition_items(partition):
                yield key, store._decode_value(value)
            return
        for key in list(self.keys()):
            if partition_of_key(key) == partition:
                yield key, self[key]
