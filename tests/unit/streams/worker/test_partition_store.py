"""The on-disk state store (``streams.worker.store.PartitionStore``) on a real RocksDB directory,
without a broker: which partitions it holds is set by the test (Faust's assignor says it in a
running worker). What a batch wrote is never dropped, and a partition held elsewhere is never
read as "no state"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest

from ebbtide.runtime.authenticity import HoldKeys
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.topic_spec import STATE_TABLE
from ebbtide.streams.policy.rules import default_policy
from ebbtide.streams.worker.app import create_app
from ebbtide.streams.worker.partitions import Partitions
from ebbtide.streams.worker.staging import PartitionNotHeld, StagedTable
from ebbtide.streams.worker.store import PartitionStore

pytestmark = pytest.mark.unit


def table_holding(tmp_path: Path, held: set[int]) -> tuple[faust.Table[str, Any], PartitionStore]:
    """The worker's state table on the rocksdb store under ``tmp_path``, holding ``held``."""
    settings = Settings(state_dir=tmp_path, topic_prefix="unit.store", app_id="unit-store")
    app = create_app(settings, default_policy(), HoldKeys())
    table = app.tables[STATE_TABLE]
    store = table.data
    assert isinstance(store, PartitionStore)
    store._holds = lambda partition: partition in held  # type: ignore[method-assign]
    return table, store


def on_disk(store: PartitionStore, partition: int) -> dict[bytes, bytes]:
    return {k: v for k, v in store._dbs[partition].items() if k != store.offset_key}


def test_a_batch_written_to_a_held_partition_not_open_yet_is_persisted(tmp_path: Path) -> None:
    table, store = table_holding(tmp_path, {1})
    assert 1 not in store._dbs
    table["s:1:a"] = b"state of a"
    store.persist({1: 10})
    assert list(on_disk(store, 1).values()) == [b"state of a"]
    assert store.persisted_offset(faust.types.TP(table.changelog_topic_name, 1)) == 10
    assert table["s:1:a"] == b"state of a"


def test_a_held_delete_removes_the_key_from_disk_and_from_the_partitions_items(tmp_path: Path) -> None:
    table, store = table_holding(tmp_path, {0})
    table["s:0:a"] = b"a"
    table["s:0:b"] = b"b"
    store.persist({0: 1})
    del table["s:0:a"]
    assert dict(store.partition_items(0)) == {"s:0:b": b"b"}  # the held delete already counts
    store.persist({0: 2})
    assert list(on_disk(store, 0).values()) == [b"b"]


def test_a_partition_held_elsewhere_is_not_read_as_empty(tmp_path: Path) -> None:
    table, store = table_holding(tmp_path, {0})
    with pytest.raises(PartitionNotHeld, match="partition 2"):
        table.get("s:2:someone")
    with pytest.raises(PartitionNotHeld):
        list(store.partition_items(2))


class NotHeldTable(dict[str, Any]):
    def partition_items(self, partition: int) -> Iterator[tuple[str, Any]]:
        raise PartitionNotHeld(f"partition {partition} read but not held here")


def test_a_due_index_that_could_not_be_built_is_not_kept_half_built() -> None:
    partitions = Partitions(StagedTable(NotHeldTable()), default_policy().label, lambda p, s: None)
    with pytest.raises(PartitionNotHeld):
        partitions.index(3)
    partitions.resume({3})  # at a rebalance: said in the log, built when next needed
    assert 3 not in partitions._due


@pytest.mark.parametrize(
    "key",
    [
        "s:0:cust-1",
        "s:11:a:b:c",
        's:3:quote " and \\ backslash',
        "s:2:blåbær-ø",
        "p:7",
        "u:5:content",
        "c:12",
    ],
)
def test_the_partition_is_read_off_the_stored_key_as_the_key_serializer_writes_it(
    tmp_path: Path, key: str
) -> None:
    _, store = table_holding(tmp_path, set())
    assert store.partition_of(store._encode_key(key)) == int(key.split(":", 2)[1])


def test_one_read_gives_a_held_write_then_the_persisted_value_then_none(tmp_path: Path) -> None:
    table, store = table_holding(tmp_path, {4})
    table["s:4:a"] = b"held"
    assert table.read("s:4:a") == b"held"
    store.persist({4: 1})
    store._held.clear()
    assert table.read("s:4:a") == b"held"  # now from disk
    del table["s:4:a"]
    assert table.read("s:4:a") is None
    assert table.read("s:4:never") is None
