"""SubjectState to and from plain JSON-able dicts, for tables and changelogs."""

from __future__ import annotations

from typing import Any

from streams.policy.engine import Fact, RecordState, SubjectState


def dump(state: SubjectState) -> dict[str, Any]:
    return {
        "s": state.subject_id,
        "seen": sorted(state.seen),
        "facts": [[f.time, f.event_id, f.kind, f.ref] for f in state.facts],
        "records": [
            [r.store, r.category, r.record_key, r.ref, r.written_by, r.status,
             r.rule_id, r.deadline, list(r.caused_by), r.command_id]
            for r in state.records.values()
        ],
    }


def load(raw: dict[str, Any]) -> SubjectState:
    records = {}
    for store, category, key, ref, written_by, status, rule_id, deadline, caused, command in raw["records"]:
        record = RecordState(store, category, key, ref, written_by, status, rule_id, deadline,
                             tuple(caused), command)
        records[record.record_id] = record
    return SubjectState(
        subject_id=raw["s"],
        seen=frozenset(raw["seen"]),
        facts=tuple(Fact(t, e, k, r) for t, e, k, r in raw["facts"]),
        records=records,
    )
