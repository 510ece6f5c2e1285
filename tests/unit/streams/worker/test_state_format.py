"""The worker's compact state format: states come back as they were stored, their summaries
say what the due index and gauges need without the body, and states of the old format (JSON)
are read as before."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.streams.engine import events as ev
from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import SubjectState
from ebbtide.streams.engine.receipts import apply_receipt
from ebbtide.streams.policy import calendar
from ebbtide.streams.worker import state_format, values
from ebbtide.streams.worker.partitions import Partitions
from ebbtide.streams.worker.staging import StagedTable, partition_items, subject_key
from tests.unit.streams.engine.test_properties import POLICY, START, fold, histories

OUTCOMES = ("DELETED", "NOT_FOUND", "FAILED", "ANONYMISED")


@st.composite
def states(draw: st.DrawFn) -> SubjectState:
    """A subject's state after its events, a tick years on, some or all of its commands answered
    (all DELETED: certified and pruned), maybe a later tick chasing the rest."""
    state = fold(draw(histories()))
    day = calendar.MS_PER_DAY
    due = fire_due(state, START + 4000 * day, POLICY)
    state = due.state
    every = draw(st.booleans())
    for command in due.commands:
        if every or draw(st.booleans()):
            outcome = "DELETED" if every else draw(st.sampled_from(OUTCOMES))
            rows = 0 if outcome in ("NOT_FOUND", "FAILED") else 1
            receipt = ev.DeletionReported(
                command.command_id, command.subject_id, command.store, command.category,
                command.record_key, outcome, None, rows, START + 4001 * day,
            )  # fmt: skip
            state = apply_receipt(state, receipt, POLICY).state
    if draw(st.booleans()):
        state = fire_due(state, START + 4200 * day, POLICY).state
    return state


@settings(max_examples=80, deadline=None)
@given(states())
def test_a_state_comes_back_as_it_was_and_its_summary_says_what_its_dumped_form_does(
    state: SubjectState,
) -> None:
    raw = state_format.encode_state(state)
    assert raw[0] == state_format.VERSION
    assert state_format.decode(raw) == state
    summary = state_format.read_summary(raw)
    assert summary == state_format.legacy_summary(snapshot.dump(state))  # as the old format counted
    assert summary.next == state.next_deadline() and summary.waiting == state.pending_deadlines()
    assert len(raw) <= state_format.size_bound(state)
    legacy = json.dumps(snapshot.dump(state)).encode()  # state format 0, as Faust's json codec wrote it
    assert state_format.decode(legacy) == snapshot.load(json.loads(legacy))
    assert state_format.read_summary(legacy) == summary


def test_the_preset_dictionary_is_the_one_format_1_was_written_with() -> None:
    """Changing it would make every stored state unreadable: a new dictionary is a new version."""
    digest = hashlib.sha256(state_format.DICTIONARY).hexdigest()
    assert digest == "7038bf4503e317bcc6a1fc7810694b779ad3b1e59e09a48b0c42bdc9acbe5777"


def test_a_value_of_an_unknown_format_is_refused_with_its_version() -> None:
    with pytest.raises(ValueError, match="state format 9 unknown"):
        state_format.decode(b"\x09\x00\x00")
    with pytest.raises(ValueError, match="state format 9 of table key 'p:0' unknown"):
        values.decode("p:0", b"\x09\x90")


def test_progress_chain_heads_and_held_certificates_come_back_as_they_were_or_as_json() -> None:
    stored = {
        "p:0": {"now": 5, "events_done": 7, "deferred": [[9, 8, 3], [10, 9, None]]},
        "c:0": {"seq": 3, "hash": hashlib.sha256(b"x").hexdigest(), "cp_seq": 1, "cp_at": 12.5},
        "u:0:abc": {"subject_id": "cust-1", "issued_at": 4, "policy_version": "v1", "copies": []},
    }
    for key, value in stored.items():
        assert values.decode(key, values.encode(key, value)) == value
        assert values.decode(key, json.dumps(value).encode()) == value


class Table(dict[str, Any]):
    """A table that keeps each partition apart (as the on-disk store does)."""

    asked: list[int]

    def partition_items(self, partition: int) -> Iterator[tuple[str, Any]]:
        self.asked.append(partition)
        return ((k, v) for k, v in self.items() if k.split(":")[1] == str(partition))

    def keys(self) -> Any:
        raise AssertionError("the rebuild lists no keys")


def test_the_due_index_and_gauges_are_rebuilt_from_summaries_without_decoding_a_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = fold(
        [
            ev.RecordWritten("w1", "cust-1", START, "customer_db", "client", "1"),
            ev.AccountClosed("c1", "cust-1", START + calendar.MS_PER_DAY),
        ]
    )
    other = fold([ev.RecordWritten("w2", "cust-2", START, "customer_db", "client", "2")])
    table = Table(
        {
            subject_key(0, "cust-1"): state_format.encode_state(state),
            subject_key(0, "cust-2"): json.dumps(snapshot.dump(other)).encode(),  # the old format
            subject_key(1, "cust-3"): b"\x09not read: another partition",
            "u:0:held": values.encode("u:0:held", {"subject_id": "cust-1"}),
        }
    )
    table.asked = []

    def refused(raw: bytes) -> SubjectState:
        raise AssertionError("a state was decoded")

    monkeypatch.setattr(state_format, "decode", refused)
    owned = Partitions(StagedTable(table), state.policy, lambda partition, subject: None)
    index = owned.index(0)
    assert table.asked == [0]
    deadline = state.next_deadline()
    assert deadline is not None and index.take(deadline) == ["cust-1"]
    assert owned.held(0) == {"u:0:held"}
    assert owned._pending[0] == state.pending_deadlines() + other.pending_deadlines()


def test_a_table_without_partitions_of_its_own_is_read_entry_by_entry_for_one_partition() -> None:
    table = {"s:0:a": b"1", "s:1:b": b"2", "p:1": b"3", "c:10": b"4", "u:1:x": b"5"}
    assert list(partition_items(table, 1)) == [("s:1:b", b"2"), ("p:1", b"3"), ("u:1:x", b"5")]
