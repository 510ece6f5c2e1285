"""Staged writes: visible at once to the processor, applied to the table only on flush."""

from __future__ import annotations

from typing import Any

from ebbtide.streams.engine.model import SubjectState, new_subject
from ebbtide.streams.worker.staging import StagedTable, Subjects


def test_writes_are_visible_before_flush_but_not_in_the_table() -> None:
    table: dict[str, int] = {"a": 1}
    staged = StagedTable(table)
    staged["b"] = 2
    del staged["a"]
    assert staged.get("b") == 2 and staged.get("a") is None
    assert table == {"a": 1}
    staged.flush()
    assert table == {"b": 2}


def test_flush_applies_writes_in_the_order_they_were_last_made() -> None:
    seen: list[str] = []

    class Recording(dict[str, int]):
        def __setitem__(self, key: str, value: int) -> None:
            seen.append(key)
            super().__setitem__(key, value)

    staged = StagedTable(Recording())
    staged["s:1"] = 1
    staged["p:0"] = 1
    staged["s:1"] = 2
    staged.flush()
    assert seen == ["p:0", "s:1"]


def test_discard_forgets_staged_writes() -> None:
    table: dict[str, int] = {}
    staged = StagedTable(table)
    staged["x"] = 1
    staged.discard()
    assert staged.flush() == 0 and table == {}


def test_subjects_are_decoded_once_per_stored_object_and_then_served_from_the_cache() -> None:
    decoded: list[str] = []

    def on_decoded(partition: int, state: SubjectState) -> SubjectState:
        decoded.append(f"{partition}:{state.subject_id}")
        return state

    table: dict[str, Any] = {}
    staged = StagedTable(table)
    subjects = Subjects(staged, on_decoded)
    state = new_subject("cust-1")
    old, raw = subjects.save(0, state)
    assert old is None and staged["s:0:cust-1"] is raw
    assert subjects.load(0, "cust-1") is state and decoded == []  # what was saved, not decoded
    staged.flush()
    table["s:0:cust-1"] = dict(table["s:0:cust-1"])  # another object: e.g. recovered after a restart
    assert subjects.load(0, "cust-1") == state and decoded == ["0:cust-1"]
    assert subjects.load(0, "cust-1") == state and decoded == ["0:cust-1"]
    subjects.forget(0)
    assert subjects.load(0, "cust-1") == state and decoded == ["0:cust-1", "0:cust-1"]
    assert subjects.load(1, "cust-1") is None
