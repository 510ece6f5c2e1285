"""Staged writes: visible at once to the processor, applied to the table (encoded) only on flush."""

from __future__ import annotations

import json
from typing import Any

from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.model import SubjectState, new_subject
from ebbtide.streams.worker import state_format, values
from ebbtide.streams.worker.staging import StagedTable, Subjects

HELD = {"subject_id": "cust-1", "issued_at": 1}


def test_writes_are_visible_before_flush_but_not_in_the_table() -> None:
    table: dict[str, Any] = {"u:0:a": values.encode("u:0:a", HELD)}
    staged = StagedTable(table)
    staged["u:0:b"] = {**HELD, "issued_at": 2}
    del staged["u:0:a"]
    assert staged.get("u:0:b") == {**HELD, "issued_at": 2} and staged.get("u:0:a") is None
    assert list(table) == ["u:0:a"]
    staged.flush()
    assert list(table) == ["u:0:b"] and table["u:0:b"][0] == values.VERSION  # encoded at the flush
    assert staged["u:0:b"] == staged.stored("u:0:b") == {**HELD, "issued_at": 2}


def test_flush_applies_writes_in_the_order_they_were_last_made() -> None:
    seen: list[str] = []

    class Recording(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            seen.append(key)
            super().__setitem__(key, value)

    staged = StagedTable(Recording())
    staged["u:0:1"] = HELD
    staged["p:0"] = {"now": None, "events_done": 1, "deferred": []}
    staged["u:0:1"] = {**HELD, "issued_at": 2}
    staged.flush()
    assert seen == ["p:0", "u:0:1"]


def test_discard_forgets_staged_writes() -> None:
    table: dict[str, Any] = {}
    staged = StagedTable(table)
    staged["u:0:x"] = HELD
    staged.discard()
    assert staged.flush() == 0 and table == {}


def test_a_subject_is_encoded_once_at_the_flush_and_decoded_only_when_its_bytes_change() -> None:
    decoded: list[str] = []

    def on_decoded(partition: int, state: SubjectState) -> SubjectState:
        decoded.append(f"{partition}:{state.subject_id}")
        return state

    table: dict[str, Any] = {}
    staged = StagedTable(table)
    subjects = Subjects(staged, on_decoded)
    state = new_subject("cust-1")
    old, summary = subjects.save(0, state)
    assert old is None and summary == state_format.summarise(state) and table == {}
    assert subjects.save(0, state) == (summary, summary)  # saved again in the batch: still staged
    assert subjects.load(0, "cust-1") is state and decoded == []  # what was saved, not decoded
    staged.flush()
    assert table["s:0:cust-1"] == state_format.encode_state(state)
    assert subjects.load(0, "cust-1") is state and decoded == []  # the bytes it wrote say the same
    stored = table["s:0:cust-1"]
    table["s:0:cust-1"] = stored[:1] + stored[1:]  # the same bytes, another object (read from disk)
    assert table["s:0:cust-1"] is not stored
    assert subjects.load(0, "cust-1") is state and decoded == []
    table["s:0:cust-1"] = json.dumps(snapshot.dump(state)).encode()  # other bytes: the old format
    assert subjects.load(0, "cust-1") == state and decoded == ["0:cust-1"]
    assert subjects.load(0, "cust-1") == state and decoded == ["0:cust-1"]
    subjects.forget(0)
    assert subjects.load(0, "cust-1") == state and decoded == ["0:cust-1", "0:cust-1"]
    assert subjects.load(1, "cust-1") is None
    assert subjects.save(0, state)[0] == summary  # what was stored, from its summary
    staged.flush()
    assert table["s:0:cust-1"][0] == state_format.VERSION  # written back in the new format
