"""SubjectState to and from plain JSON-able dicts, for tables and changelogs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ebbtide.streams.engine.certificate import CertificateDue, CertifiedCopy
from ebbtide.streams.engine.facts import Fact
from ebbtide.streams.engine.model import Answer, RecordState, SubjectState
from ebbtide.streams.engine.rights import Duty


def dump_certificate(certificate: CertificateDue) -> dict[str, Any]:
    """A certificate's content as plain JSON-able data (kept while it waits to be signed)."""
    return asdict(certificate)


def _dump_record(r: RecordState) -> list[Any]:
    return [
        r.store,
        r.category,
        r.record_key,
        r.ref,
        r.written_by,
        r.written_at,
        r.status,
        r.rule_id,
        r.deadline,
        list(r.caused_by),
        r.command_id,
        list(r.blockers),
        r.restricted_by,
        r.failures,
        r.ordered_at,
        r.chase_at,
        r.reissues,
        _dump_answer(r.answer),
        r.certified,
        *([list(r.earlier)] if r.earlier else []),  # written again after a deletion
    ]


def _dump_tombstone(r: RecordState) -> list[Any]:
    """Key, command, order, answer, certificate, and the announcements it recognises."""
    outcome, rows, executed_at = r.answer[:3] if r.answer is not None else (None, None, None)
    return [
        r.record_key,
        r.command_id,
        r.ordered_at,
        outcome,
        rows,
        executed_at,
        r.certificate,
        r.written_by,
        list(r.earlier),
    ]


def load_certificate(raw: dict[str, Any]) -> CertificateDue:
    copies = tuple(CertifiedCopy(**c) for c in raw["copies"])
    return CertificateDue(raw["subject_id"], raw["issued_at"], raw["policy_version"], copies)


def dump(state: SubjectState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "s": state.subject_id,
        "seen": sorted(state.seen),
        "facts": [[f.time, f.event_id, f.kind, f.ref, f.until, list(f.detail)] for f in state.facts],
        "records": [_dump_record(r) for r in state.records.values() if not r.pruned],
    }
    settled: dict[tuple[str, str], list[list[Any]]] = {}
    for r in state.records.values():
        if r.pruned:
            settled.setdefault((r.store, r.category), []).append(_dump_tombstone(r))
    if settled:  # a key of its own: a worker of an earlier version reads the rest as before
        out["settled"] = [[store, category, copies] for (store, category), copies in settled.items()]
    if state.duties:
        out["duties"] = [
            [d.duty_id, d.kind, d.due, d.opened_by, d.source, d.done_at, d.done_by]
            + ([d.closed_as] if d.closed_as else [])  # as before unless closed: older workers read it
            for d in state.duties.values()
        ]
    if state.overdue:
        out["overdue"] = sorted(state.overdue)
    # Derived, kept beside the state so a restarted worker rebuilds its due index without
    # decoding every subject.
    out["policy"] = state.policy
    out["next"] = state.next_deadline()
    out["waiting"] = state.pending_deadlines()
    late, unanswered = unanswered_by_store(state)
    if unanswered:
        out["late"], out["open"] = late, unanswered
    return out


def unanswered_by_store(state: SubjectState) -> tuple[dict[str, int], dict[str, int]]:
    """Per store: (copies chased for want of a receipt and still unanswered, all copies ordered
    and not answered yet)."""
    late: dict[str, int] = {}
    unanswered: dict[str, int] = {}
    for record in state.records.values():
        if record.status == "ordered":
            unanswered[record.store] = unanswered.get(record.store, 0) + 1
            if record.overdue():  # chased at least once (the overdue gauge)
                late[record.store] = late.get(record.store, 0) + 1
    return late, unanswered


def unanswered_summary(raw: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """:func:`unanswered_by_store` of a dumped state, cheaply."""
    if "waiting" in raw:
        return dict(raw.get("late", {})), dict(raw.get("open", {}))
    return unanswered_by_store(load(raw))


def open_summary(raw: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Of a dumped state, cheaply: (records waiting for their deadline, by category; records a
    legal hold keeps, by category; duties not done or closed yet, by duty: erasure, export,
    breach). Read from the record fields every version wrote in the same places."""
    waiting: dict[str, int] = {}
    held: dict[str, int] = {}
    for fields in raw["records"]:
        category, status, deadline, blockers = fields[1], fields[6], fields[8], fields[11]
        if status != "pending":
            continue
        if deadline is not None and not blockers:
            waiting[category] = waiting.get(category, 0) + 1
        if any(b.startswith("hold:") for b in blockers):
            held[category] = held.get(category, 0) + 1
    duties: dict[str, int] = {}
    for row in raw.get(
        "duties", ()
    ):  # duty id (erasure/..., export/..., breach/...), ..., done at, by, closed as
        done_at, closed_as = row[5], row[7] if len(row) > 7 else None
        if done_at is None and not closed_as:
            duty = row[0].split("/")[0]
            duties[duty] = duties.get(duty, 0) + 1
    return waiting, held, duties


def summary(raw: dict[str, Any]) -> tuple[str, int | None, int, str]:
    """(subject id, next deadline, records waiting, policy label) of a dumped state, cheaply."""
    if "waiting" in raw:
        return raw["s"], raw["next"], raw["waiting"], raw.get("policy", "")
    state = load(raw)  # written by an older version
    return state.subject_id, state.next_deadline(), state.pending_deadlines(), state.policy


def _dump_answer(answer: Answer | None) -> list[Any] | None:
    """A store's answer; its receipt's key id and signature only while it has them (until the
    copy is certified), so a certified copy is stored as before."""
    if answer is None:
        return None
    return list(answer) if answer[5] is not None else list(answer[:4])


def _load_answer(raw: list[Any] | None) -> Answer | None:
    """Of a state written before receipts were kept for certificates: no key id, no signature."""
    if raw is None:
        return None
    outcome, rows, executed_at, reason, *signed = raw
    key_id, signature = signed if len(signed) == 2 else (None, None)
    return (outcome, rows, executed_at, reason, key_id, signature)


def load(raw: dict[str, Any]) -> SubjectState:
    """A state from :func:`dump`'s data, also as written by earlier versions."""
    records = {}
    for fields in raw["records"]:
        record = _load_record(fields)
        records[record.record_id] = record
    for store, category, copies in raw.get("settled", []):  # pruned copies, by store and category
        for copy in copies:
            key, command, ordered_at, outcome, rows, executed_at, certificate = copy[:7]
            written_by, earlier = copy[7:9] if len(copy) > 7 else ("", [])
            record = RecordState(
                store,
                category,
                key,
                None,
                written_by,
                0,
                "deleted",
                command_id=command,
                ordered_at=ordered_at,
                answer=(outcome, rows, executed_at, None, None, None) if outcome is not None else None,
                certified=True,
                certificate=certificate,
                earlier=tuple(earlier),
            )
            records[record.record_id] = record
    return SubjectState(
        subject_id=raw["s"],
        seen=frozenset(raw["seen"]),
        facts=tuple(Fact(t, e, k, r, u, tuple(d)) for t, e, k, r, u, d in raw["facts"]),
        records=records,
        duties={d[0]: Duty(*d) for d in raw.get("duties", [])},
        overdue=frozenset(raw.get("overdue", [])),
        policy=raw.get("policy", ""),
    )


def _load_record(fields: list[Any]) -> RecordState:
    """A copy not pruned, from its fields as :func:`dump` wrote them (or an earlier version did,
    with fewer fields)."""
    (
        store,
        category,
        key,
        ref,
        written_by,
        written_at,
        status,
        rule_id,
        deadline,
        caused,
        command,
        blockers,
        restricted_by,
    ) = fields[:13]
    failures = fields[13] if len(fields) > 13 else 0  # written before failures were counted
    # Written before receipts were kept (fields 14-18): no order time, nothing to chase.
    ordered_at, chase_at, reissues, answer, certified = (
        fields[14:19]
        if len(fields) > 14
        else (
            None,
            None,
            0,
            None,
            False,
        )
    )
    return RecordState(
        store,
        category,
        key,
        ref,
        written_by,
        written_at,
        status,
        rule_id,
        deadline,
        tuple(caused),
        command,
        tuple(blockers),
        restricted_by,
        failures,
        ordered_at,
        chase_at,
        reissues,
        _load_answer(answer),
        certified,
        earlier=tuple(fields[19]) if len(fields) > 19 and isinstance(fields[19], list) else (),
    )
