"""Snapshots: a subject's state survives the table's JSON form, and its summary matches it."""

from __future__ import annotations

import json
from dataclasses import replace

from ebbtide.streams.engine import snapshot
from tests.unit.streams.builders import breach, closed, erasure, fold, hold, invoiced, written


def test_a_state_survives_its_json_form_unchanged() -> None:
    state = fold(
        [
            written("client", "1", "2019-01-10"),
            invoiced("inv-7", "2022-03-10"),
            written("invoice", "7", "2022-03-10", ref="inv-7"),
            closed("2024-02-01"),
            hold("court-1", "2024-02-05", categories=("invoice",)),
            erasure("req-1", "2024-02-10", verified=False),
            breach("b-1", "2024-03-01"),
        ]
    )
    assert snapshot.load(json.loads(json.dumps(snapshot.dump(state)))) == state


def test_the_summary_gives_the_next_deadline_and_waiting_records_without_decoding() -> None:
    state = fold(
        [
            written("client", "1", "2019-01-10"),
            closed("2024-02-01"),
            written("auto_collected", "log-1", "2024-01-05"),
        ]
    )
    raw = snapshot.dump(state)
    assert snapshot.summary(raw) == (state.subject_id, state.next_deadline(), 2, state.policy)
    assert state.policy.startswith("v1+")
    older = {k: v for k, v in raw.items() if k not in ("next", "waiting")}  # written before summaries
    assert snapshot.summary(older) == snapshot.summary(raw)


def test_an_answer_stored_before_receipts_were_kept_loads_without_a_signature() -> None:
    state = fold([written("client", "1", "2019-01-10"), closed("2024-02-01")])
    (record,) = state.records.values()
    signed = replace(record, status="deleted", command_id="c", answer=("DELETED", 1, 5, None, "k", "c2ln"))
    raw = snapshot.dump(replace(state, records={record.record_id: signed}))
    assert raw["records"][0][17] == ["DELETED", 1, 5, None, "k", "c2ln"]  # kept until certified
    assert snapshot.load(json.loads(json.dumps(raw))).records[record.record_id] == signed
    raw["records"][0][17] = ["DELETED", 1, 5, None]  # as an older worker wrote it
    loaded = snapshot.load(raw).records[record.record_id]
    assert loaded.answer == ("DELETED", 1, 5, None, None, None)
    assert snapshot.dump(replace(state, records={record.record_id: loaded}))["records"][0][17] == [
        "DELETED",
        1,
        5,
        None,
    ]
