"""The due index and the partition counts kept on disk beside the states (``derived``,
``digest``, ``progress.StoredDueIndex``), on real RocksDB directories without a broker: the
stored index takes what the in-memory one takes, the recovery paths derive the digest a full
rebuild computes, and a restart starts from the digest without reading a state."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
import rocksdict
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.runtime.authenticity import HoldKeys
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.topic_spec import STATE_TABLE
from ebbtide.streams.engine.model import new_subject
from ebbtide.streams.policy.calendar import MS_PER_DAY
from ebbtide.streams.policy.rules import default_policy
from ebbtide.streams.worker import digest, state_format
from ebbtide.streams.worker.app import create_app
from ebbtide.streams.worker.derived import DerivedPartition
from ebbtide.streams.worker.digest import DIGEST_KEY
from ebbtide.streams.worker.partitions import Partitions
from ebbtide.streams.worker.progress import DUE, DueIndex, StoredDueIndex, bucket_of, due_key
from ebbtide.streams.worker.restore import _write
from ebbtide.streams.worker.staging import StagedTable
from ebbtide.streams.worker.state_format import Entry, Summary
from ebbtide.streams.worker.store import PartitionStore, SharedOptions

pytestmark = pytest.mark.unit

LABEL = default_policy().label
DAY0 = 20_000 * MS_PER_DAY

# -- the stored index takes what the in-memory one takes ---------------------------------------------

subjects = st.sampled_from([f"subj-{n}" for n in range(6)])
days = st.integers(min_value=-3, max_value=12).map(lambda d: DAY0 + d * MS_PER_DAY + 5)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("file"), subjects, days),
        st.tuples(st.just("take"), st.just(""), days),
        st.tuples(st.just("persist"), st.just(""), st.just(0)),
        st.tuples(st.just("crash"), st.just(""), st.just(0)),
    ),
    max_size=40,
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DerivedPartition]:
    """One database for every example (emptied by each): opening one per example is slow."""
    db = SharedOptions().open(tmp_path_factory.mktemp("due") / "db")
    yield DerivedPartition(db, b"__offset")
    db.close()


@settings(max_examples=150, deadline=None)
@given(script=steps)
def test_the_stored_index_takes_what_the_memory_index_takes(
    scratch: DerivedPartition, script: list[tuple[str, str, int]]
) -> None:
    scratch.write(dict.fromkeys(scratch.scan(DUE, b"e")))  # what an example before left
    memory, stored = DueIndex(), StoredDueIndex(lambda: scratch)
    persisted = copy.deepcopy(memory)  # the model of what is on disk: the index as at the last persist
    for op, subject, ms in script:
        if op == "file":
            memory.file(subject, ms)
            stored.file(subject, ms)
        elif op == "take":
            assert stored.take(ms) == memory.take(ms)
            assert stored.cursor == memory.cursor
        elif op == "persist":  # what a persist writes beside the states (the cursor: in the digest)
            scratch.write(stored.take_held())
            persisted = copy.deepcopy(memory)
        else:  # a SIGKILL: what was held is gone; the restart has the persisted entries and cursor
            stored = StoredDueIndex(lambda: scratch, persisted.cursor)
            memory = copy.deepcopy(persisted)
        assert len(stored) == len(memory)


# -- the recovery paths derive what a full rebuild computes ------------------------------------------


def _table(path: Path) -> tuple[faust.Table[str, Any], PartitionStore]:
    """The worker's state table on the rocksdb store under ``path``, holding partition 0."""
    app = create_app(
        Settings(state_dir=path, topic_prefix="unit.due", app_id="unit-due"), default_policy(), HoldKeys()
    )
    table = app.tables[STATE_TABLE]
    store = table.data
    assert isinstance(store, PartitionStore)
    store._holds = lambda partition: partition == 0  # type: ignore[method-assign]
    return table, store


def _state(subject: str, summary: Summary) -> bytes:
    """A stored state with ``summary`` (what the digest and the due index count of it)."""
    return state_format.encode(Entry(new_subject(subject), summary))


def _history() -> list[tuple[str, bytes | None]]:
    """Changelog records of partition 0: states written and written again (under two policies,
    with gauges), held certificates added and removed, progress; offsets are their indexes."""
    day = MS_PER_DAY
    return [
        ("p:0", b"progress"),
        ("s:0:a", _state("a", Summary(DAY0 + 3 * day, 2, LABEL, waiting_by={"client": 2}))),
        ("s:0:b", _state("b", Summary(None, 0, "old-policy", open={"customer_db": 1}))),
        ("u:0:cert-1", b"held certificate"),
        ("s:0:c", _state("c", Summary(DAY0 + 9 * day, 1, LABEL, held={"client": 1}, duties={"erasure": 1}))),
        ("s:0:a", _state("a", Summary(DAY0 + 5 * day, 1, LABEL, late={"crm": 1}, waiting_by={"client": 1}))),
        ("u:0:cert-2", b"held certificate"),
        ("s:0:b", _state("b", Summary(DAY0 + day, 1, LABEL, waiting_by={"invoice": 1}))),
        ("u:0:cert-1", None),
        ("c:0", b"chain head"),
        ("s:0:d", _state("d", Summary(None, 0, LABEL))),
    ]


def _stored_digest(store: PartitionStore) -> digest.Digest:
    raw = store.derived(0).get(DIGEST_KEY)
    assert raw is not None
    return digest.decode(raw)


def _counted(found: digest.Digest) -> tuple[Any, ...]:
    return found.policies, found.pending, [g for g in found.gauges if g], found.unsigned, found.cursor


def _due_subjects(store: PartitionStore) -> dict[str, set[int]]:
    entries: dict[str, set[int]] = {}
    for key in store.derived(0).scan(DUE, b"e"):
        entries.setdefault(key[9:].decode(), set()).add(int.from_bytes(key[1:9], "big") - (1 << 63))
    return entries


def test_the_recovery_paths_derive_the_digest_a_full_rebuild_computes(tmp_path: Path) -> None:
    history = _history()
    final = {key: value for key, value in history}

    # A legacy database: the final states and their offset, no digest (an older version's).
    legacy_table, legacy = _table(tmp_path / "legacy")
    db = legacy._db_for_partition(0)
    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in final.items():
        if value is not None:
            batch.put(legacy._encode_key(key), value)
    batch.put(legacy.offset_key, str(len(history) - 1).encode())
    db.write(batch)
    rebuilt = Partitions(StagedTable(legacy_table), LABEL, lambda p, s: None)
    rebuilt.index(0)
    assert rebuilt.starts["rebuild"] == 1 and rebuilt.states_read == 4
    legacy.persist({})  # the rebuild's digest goes with the next persist
    from_rebuild = _stored_digest(legacy)
    assert from_rebuild.offset == len(history) - 1

    # Replayed into an empty database (Faust's recovery), then its tail over it (the bulk read).
    table, store = _table(tmp_path / "replayed")
    Partitions(StagedTable(table), LABEL, lambda p, s: None)  # the store's deriver
    events = [
        SimpleNamespace(message=SimpleNamespace(key=store._encode_key(k), value=v, partition=0, offset=n))
        for n, (k, v) in enumerate(history)
    ]
    store.apply_changelog_batch(events[:6], lambda k: k, lambda v: v)
    assert _stored_digest(store).offset == 5
    tail = [
        SimpleNamespace(key=e.message.key, value=e.message.value, offset=e.message.offset) for e in events[6:]
    ]
    _write(store._dbs[0], tail, store.offset_key, store.deriver, store._decode_key)
    from_replay = _stored_digest(store)
    assert from_replay.offset == len(history) - 1
    assert _counted(from_replay) == _counted(from_rebuild)
    assert from_replay.policies == {LABEL: 4} and from_replay.unsigned == ["u:0:cert-2"]
    # Every state's next deadline has its due entry, in both.
    wanted = {
        "a": bucket_of(DAY0 + 5 * MS_PER_DAY),
        "b": bucket_of(DAY0 + MS_PER_DAY),
        "c": bucket_of(DAY0 + 9 * MS_PER_DAY),
    }
    for entries in (_due_subjects(store), _due_subjects(legacy)):
        assert all(bucket in entries.get(subject, set()) for subject, bucket in wanted.items())


def test_a_restart_starts_from_the_digest_and_reads_no_state(tmp_path: Path) -> None:
    table, store = _table(tmp_path)
    owned = Partitions(StagedTable(table), LABEL, lambda p, s: None)
    assert owned.index(0) is not None and owned.starts["digest"] == 1  # an empty database
    state = StagedTable(table)
    summary = Summary(DAY0 + 2 * MS_PER_DAY, 3, LABEL, open={"crm": 2})
    state["s:0:x"] = Entry(new_subject("x"), summary)
    owned.count_state(0, None, summary)
    owned.index(0).file("x", DAY0 + 2 * MS_PER_DAY)
    owned.hold(0, "u:0:cert")
    state["u:0:cert"] = {"certificate": "held"}
    state.flush()
    store.persist({0: 41})
    assert owned.index(0).take(DAY0) == []  # moves the cursor: persisted with the next batch
    state["p:0"] = {"now": DAY0, "events_done": 1, "deferred": []}
    state.flush()
    store.persist({0: 42})
    for db in store._dbs.values():
        db.close()

    table, store = _table(tmp_path)  # the same state directory, as after a SIGKILL
    again = Partitions(StagedTable(table), LABEL, lambda p, s: None)
    assert again.index(0).take(DAY0 + 2 * MS_PER_DAY) == ["x"]
    assert again.starts == {"digest": 1} and again.states_read == 0
    assert again._pending[0] == 3 and again.overdue("open") == {"crm": 2}
    assert again.held(0) == {"u:0:cert"} and again.index(0).cursor == bucket_of(DAY0 + 2 * MS_PER_DAY)
    for db in store._dbs.values():
        db.close()

    table, store = _table(tmp_path)  # restarted with a new policy: its subjects are judged again
    judged: list[tuple[int, str]] = []
    changed = Partitions(StagedTable(table), "policy-2", lambda p, s: judged.append((p, s)))
    changed.index(0)
    assert changed.starts == {"rebuild": 1} and judged == [(0, "x")]


def test_a_digest_behind_its_states_is_not_trusted(tmp_path: Path) -> None:
    table, store = _table(tmp_path)
    owned = Partitions(StagedTable(table), LABEL, lambda p, s: None)
    owned.index(0)
    table["s:0:y"] = _state("y", Summary(None, 1, LABEL))
    owned.count_pending(0, 1)
    store.persist({0: 7})
    db = store._dbs[0]
    db.put(store.offset_key, b"8")  # states moved on without it (written by an older version)
    again = Partitions(StagedTable(table), LABEL, lambda p, s: None)
    again.index(0)
    assert again.starts == {"rebuild": 1} and again.states_read == 1 and again._pending[0] == 1
    assert digest.stored(DerivedPartition(db, store.offset_key), LABEL)[0] is None
    store.persist({})
    assert _stored_digest(store).offset == 8 and _stored_digest(store).pending == 1
    assert due_key(0, "") < DIGEST_KEY  # the digest is never scanned as a due entry


def test_a_start_from_the_digest_counts_the_writes_held_for_the_partition(tmp_path: Path) -> None:
    table, store = _table(tmp_path)
    Partitions(StagedTable(table), LABEL, lambda p, s: None).index(0)
    store.persist({0: 3})  # a digest at offset 3
    table["s:0:z"] = _state("z", Summary(DAY0 + MS_PER_DAY, 2, LABEL))  # held: not acknowledged yet
    again = Partitions(StagedTable(table), LABEL, lambda p, s: None)  # as after a rebalance
    assert again.index(0).take(DAY0 + MS_PER_DAY) == ["z"]
    assert again.starts == {"digest": 1} and again._pending[0] == 2


def test_a_subject_judged_again_before_a_rebalance_is_counted_and_filed_as_staged(tmp_path: Path) -> None:
    table, store = _table(tmp_path)
    table["s:0:r"] = _state("r", Summary(DAY0 + 30 * MS_PER_DAY, 1, "old-policy", waiting_by={"client": 1}))
    store.persist({0: 5})
    state = StagedTable(table)
    # The new policy's first start judged r again (an earlier deadline), staged until the next
    # batch; then a rebalance dropped the index before that batch ran.
    judged_again = Summary(DAY0 + 2 * MS_PER_DAY, 2, LABEL, waiting_by={"client": 2})
    state["s:0:r"] = Entry(new_subject("r"), judged_again)
    loaded: list[str] = []
    owned = Partitions(state, LABEL, lambda p, s: loaded.append(s))
    assert owned.index(0).take(DAY0 + 2 * MS_PER_DAY) == ["r"]  # filed at the staged deadline
    assert loaded == [] and owned._pending[0] == 2 and owned._policies[0] == {LABEL: 1}
    assert owned.starts == {"rebuild": 1}


def test_a_rebalance_waits_for_the_batch_in_flight(tmp_path: Path) -> None:
    table, _ = _table(tmp_path)  # the digest and the index counting a batch go to disk with it
    assert table.app.conf.stream_wait_empty is True


def test_a_subject_that_failed_to_be_judged_again_does_not_force_a_full_start_every_time(
    tmp_path: Path,
) -> None:
    table, store = _table(tmp_path)
    table["s:0:f"] = _state("f", Summary(DAY0 + MS_PER_DAY, 1, "old-policy"))
    store.persist({0: 2})
    failed = Partitions(
        StagedTable(table), LABEL, lambda p, s: None
    )  # judging it again fails: it keeps its label
    failed.index(0)
    store.persist({})
    assert failed.starts == {"rebuild": 1} and _stored_digest(store).policies == {"old-policy": 1}
    again = Partitions(StagedTable(table), LABEL, lambda p, s: None)  # tried again when next decoded
    assert again.index(0).take(DAY0 + MS_PER_DAY) == ["f"]
    assert again.starts == {"digest": 1} and again.states_read == 0
    judged: list[str] = []
    newer = Partitions(
        StagedTable(table), "policy-3", lambda p, s: judged.append(s)
    )  # a policy not tried yet
    newer.index(0)
    assert newer.starts == {"rebuild": 1} and judged == ["f"]


def test_a_state_replayed_under_a_policy_not_judged_again_calls_for_a_full_start() -> None:
    found = digest.Digest(judged=LABEL)
    digest.advance(found, [("s:0:g", None, _state("g", Summary(None, 0, LABEL)))])
    assert found.judged == LABEL
    digest.advance(found, [("s:0:h", None, _state("h", Summary(None, 0, "old-policy")))])  # another worker's
    assert found.judged is None


def test_an_unreadable_digest_is_not_trusted_and_is_replaced(tmp_path: Path) -> None:
    table, store = _table(tmp_path)
    table["s:0:v"] = _state("v", Summary(DAY0 + MS_PER_DAY, 1, LABEL))
    store.persist({0: 4})
    store.derived(0).write({DIGEST_KEY: b"\xc1 not a digest"})  # damaged on disk
    owned = Partitions(StagedTable(table), LABEL, lambda p, s: None)
    assert owned.index(0).take(DAY0 + MS_PER_DAY) == ["v"]
    assert owned.starts == {"rebuild": 1} and owned._pending[0] == 1
    store.persist({})
    assert _stored_digest(store).offset == 4
    store.derived(0).write({DIGEST_KEY: b"\xc1"})
    replayed = digest.replay(store.derived(0), [("s:0:w", None, _state("w", Summary(None, 0, LABEL)))], 5)
    assert replayed == {DIGEST_KEY: None}
