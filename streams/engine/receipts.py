"""Receipts: a store's answer to a deletion command, folded into the subject's state.

A confirmed deletion settles its copy; once no store owes an answer, the copies answered since
the last certificate are certified (``certificate``) and pruned to tombstones. A failed deletion
is ordered again at the next tick, with the same command id.
"""

from __future__ import annotations

from dataclasses import replace

from ebbtide.streams.engine.certificate import CertificateDue, certificate_due
from ebbtide.streams.engine.decisions import record_decision
from ebbtide.streams.engine.events import DeletionReported
from ebbtide.streams.engine.model import Outcome, RecordState, SubjectState, record_id
from ebbtide.streams.engine.shredding import shred_keys
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.vocabulary import FAILED

# What a DELETION_CONFIRMED decision says of each answer (vocabulary.ANSWERED); {expires}: the
# time the last backup holding the copy expires.
CONFIRMED = {
    "DELETED": "deleted",
    "NOT_FOUND": "already gone from the store",
    "ANONYMISED": "anonymised: the row stays with its personal fields blanked",
    "EXPIRES": "held only in backups, gone when the last expires at {expires}",
}


def apply_receipt(state: SubjectState, report: DeletionReported, policy: Policy) -> Outcome:
    """Record a store's answer; a receipt for an unknown or settled command changes nothing.

    A failed deletion is never dropped: the record goes back to waiting with its passed
    deadline, so the next tick orders it again (same command id) until a store confirms it."""
    record = state.records.get(record_id(report.store, report.category, report.record_key))
    if record is None or record.command_id != report.command_id or record.status != "ordered":
        return Outcome(state)
    if report.outcome == FAILED:
        return _failed(state, record, report, policy)
    records = dict(state.records)
    answered = replace(
        record,
        status="deleted",
        chase_at=None,
        answer=(
            report.outcome,
            report.rows,
            report.executed_at,
            report.reason,
            report.signer_key_id if report.signature else None,
            report.signature if report.signer_key_id else None,
        ),
    )
    records[record.record_id] = answered
    template = CONFIRMED.get(report.outcome)
    what = template.format(expires=calendar.iso(report.executed_at)) if template else report.outcome
    if record.reissues:
        what += f" (after {record.reissues} re-issue{'s' if record.reissues > 1 else ''}: it was overdue)"
    decision = record_decision(
        state.subject_id,
        record,
        "DELETION_CONFIRMED",
        policy.rule(record.rule_id),
        record.deadline,
        f"{record.store} confirmed: {what}",
        policy,
        (report.command_id,),
        report.command_id,
    )
    state = replace(state, records=records)
    certificate = certificate_due(state, policy)
    if certificate is not None:
        # Everything the certificate needs of its copies (each store's answer and signed receipt)
        # is in it now, and it goes out with this outcome before the state is written.
        # With no live copy left, the subject's data keys go too (shredding.py).
        state, shredded, commands = shred_keys(
            prune(state, certificate), policy, certificate.issued_at, report.command_id
        )
        return Outcome(state, (decision, *shredded), commands, certificates=(certificate,))
    return Outcome(state, (decision,))


def _failed(state: SubjectState, record: RecordState, report: DeletionReported, policy: Policy) -> Outcome:
    """The copy back to waiting with its passed deadline, its failure counted."""
    retry = replace(
        record,
        status="pending",
        command_id=None,
        failures=record.failures + 1,
        ordered_at=None,
        chase_at=None,
        reissues=0,
    )
    decision = record_decision(
        state.subject_id,
        retry,
        "DELETION_FAILED",
        policy.rule(record.rule_id),
        record.deadline,
        f"store reported failure: {report.reason or 'no reason given'}; ordered again at the next tick "
        f"(attempt {retry.failures})",
        policy,
        (report.command_id,),
        f"{report.command_id}#{retry.failures}",
    )
    return Outcome(replace(state, records={**state.records, record.record_id: retry}), (decision,))


def prune(state: SubjectState, certificate: CertificateDue) -> SubjectState:
    """The state once ``certificate`` is issued: each copy it lists (and any copy certified
    before copies were pruned) is reduced to its tombstone, the least that keeps the engine
    correct and idempotent:
    - store, category and record key: the copy is known, so announcing it again is recognised;
    - its command id: a late or repeated receipt for it is its own (and changes nothing);
    - the announcement that announced it, and those of earlier copies under its key: a late or
      replayed one is recognised (``RecordState.covers``) though its id leaves ``seen``, so it
      neither starts a new deletion nor is stamped again (another announcement of the key is a
      new record: the store holds it again);
    - when it was ordered: for ``explain``;
    - the store's outcome, rows and time, and the certificate's ``issued_at``: for ``explain``.
    Its rule, deadline, ref, causes and the store's signed receipt are in the certificate.

    Ids of announcements whose every copy is pruned are dropped from ``seen``, as their
    tombstones recognise them, unless a copy was anonymised (an anonymised row stays in its
    table: it stays known by ``seen`` as before)."""
    listed = {copy.record for copy in certificate.copies}
    records = dict(state.records)
    announcements: dict[str, tuple[str, str]] = {}  # event id: (category, record key)
    for rid, record in state.records.items():
        if rid in listed or (record.certified and record.certificate is None):
            records[rid] = _tombstone(record, certificate.issued_at if rid in listed else 0)
            if record.written_by in state.seen:
                announcements[record.written_by] = (record.category, record.record_key)
    siblings: dict[tuple[str, str], list[RecordState]] = {}  # the copies of one record, in every store
    for record in records.values():
        siblings.setdefault((record.category, record.record_key), []).append(record)
    forget = {
        event_id
        for event_id, (category, key) in announcements.items()
        if all(
            copy.pruned and copy.covers(event_id) and not _anonymised(copy)
            for copy in siblings[(category, key)]
        )
    }
    return replace(state, records=records, seen=state.seen - forget if forget else state.seen)


def _anonymised(record: RecordState) -> bool:
    return record.answer is not None and record.answer[0] == "ANONYMISED"


def _tombstone(record: RecordState, certificate: int) -> RecordState:
    """A deleted copy as ``prune`` keeps it."""
    answer = record.answer
    return RecordState(
        record.store,
        record.category,
        record.record_key,
        None,
        record.written_by,
        0,
        "deleted",
        command_id=record.command_id,
        ordered_at=record.ordered_at,
        answer=(answer[0], answer[1], answer[2], None, None, None) if answer is not None else None,
        certified=True,
        certificate=certificate,
        earlier=record.earlier,
    )
