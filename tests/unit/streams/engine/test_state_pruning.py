"""A subject's state is bounded: a copy confirmed by its store and listed in a deletion certificate
is pruned to a tombstone, and ``seen`` keeps only the event ids deduplication needs.

Run as a script (``python -m tests.unit.streams.engine.test_state_pruning``) to print the state sizes of a
long-lived subject with many written-and-deleted records, before and after pruning.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.streams.engine import events as ev
from ebbtide.streams.engine import receipts, snapshot
from ebbtide.streams.engine.certificate import CertificateDue
from ebbtide.streams.engine.decisions import DeleteRecord
from ebbtide.streams.engine.explain import explain, render
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import Outcome, RecordState, SubjectState, new_subject
from ebbtide.streams.engine.receipts import apply_receipt
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import default_policy
from tests.unit.streams.builders import SUBJECT, closed, invoiced, t, written
from tests.unit.streams.engine.test_properties import START, histories

POLICY = default_policy()
DAY = calendar.MS_PER_DAY
CLIENT = [written("client", "1", "2019-01-10", event_id="w-client"), closed("2021-03-15", event_id="c-1")]
COPIES = ("chat_vendor/client/1", "customer_db/client/1", "support_desk/client/1")


def size(state: SubjectState) -> int:
    """Bytes of the state as the processor measures it (``streams.worker.staging.state_size``)."""
    return len(json.dumps(snapshot.dump(state), separators=(",", ":")))


def fold(events: list[ev.Event], state: SubjectState | None = None) -> SubjectState:
    state = state or new_subject(SUBJECT)
    for event in events:
        state = apply_event(state, event, POLICY).state
    return state


def answer(command: DeleteRecord, outcome: str = "DELETED", at: int | None = None) -> ev.DeletionReported:
    rows = 0 if outcome in ("NOT_FOUND", "FAILED") else 1
    return ev.DeletionReported(
        command.command_id,
        command.subject_id,
        command.store,
        command.category,
        command.record_key,
        outcome,
        "no such table" if outcome == "FAILED" else None,
        rows,
        at if at is not None else command.issued_at + 60_000,
        signer_key_id="5c0e9d2a41b7f3e8",
        signature="A" * 86 + "==",
    )


def answered(state: SubjectState, commands: tuple[DeleteRecord, ...], outcome: str = "DELETED") -> Outcome:
    """Every command answered ``outcome``; the last outcome, with every certificate issued."""
    certificates: tuple[CertificateDue, ...] = ()
    outcome_ = Outcome(state)
    for command in commands:
        outcome_ = apply_receipt(outcome_.state, answer(command, outcome), POLICY)
        certificates += outcome_.certificates
    return replace(outcome_, certificates=certificates)


def certify_only(state: SubjectState, certificate: CertificateDue) -> SubjectState:
    """What the engine did with a certificate's copies before they were pruned: mark them
    certified and drop the receipt signatures, keep everything else."""
    records = dict(state.records)
    for copy in certificate.copies:
        record = records[copy.record]
        kept = (*record.answer[:4], None, None) if record.answer is not None else None
        records[copy.record] = replace(record, certified=True, answer=kept)
    return replace(state, records=records)


@contextmanager
def without_pruning() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(receipts, "prune", certify_only)
        yield


class TestACertifiedCopyIsPrunedToATombstone:
    def closed_and_deleted(self) -> tuple[SubjectState, Outcome, Outcome]:
        due = fire_due(fold(CLIENT), t("2024-03-15"), POLICY)
        done = answered(due.state, due.commands)
        return due.state, due, done

    def test_a_certificate_prunes_its_copies_to_what_the_engine_still_needs(self) -> None:
        _, due, done = self.closed_and_deleted()
        (certificate,) = done.certificates
        assert sorted(c.record for c in certificate.copies) == list(COPIES)
        assert all(c.receipt_signature for c in certificate.copies)  # the certificate has the receipts
        for rid in COPIES:
            tombstone = done.state.records[rid]
            command = next(c for c in due.commands if f"{c.store}/{c.category}/{c.record_key}" == rid)
            assert tombstone == RecordState(
                tombstone.store,
                "client",
                "1",
                None,
                "w-client",  # the announcement it recognises, once its id leaves ``seen``
                0,
                "deleted",
                command_id=command.command_id,
                ordered_at=t("2024-03-15"),
                answer=("DELETED", 1, t("2024-03-15") + 60_000, None, None, None),
                certified=True,
                certificate=certificate.issued_at,
            )
        assert done.state.seen == frozenset()  # the announcement's id: a tombstone recognises it now
        assert snapshot.load(json.loads(json.dumps(snapshot.dump(done.state)))) == done.state

    def test_a_copy_answered_before_the_last_store_answers_is_kept_whole_until_the_certificate(self) -> None:
        _, due, _ = self.closed_and_deleted()
        first = apply_receipt(due.state, answer(due.commands[0]), POLICY)
        assert first.certificates == ()
        kept = first.state.records[f"{due.commands[0].store}/client/1"]
        assert not kept.pruned and kept.answer is not None and kept.answer[5] is not None  # its receipt

    def test_explain_says_the_copy_is_deleted_and_which_certificate_proves_it(self) -> None:
        _, due, done = self.closed_and_deleted()
        (certificate,) = done.certificates
        report = explain(done.state, POLICY, t("2024-04-01"))
        (row,) = [r for r in report["records"] if r["record"] == "customer_db/client/1"]
        command = next(c for c in due.commands if c.store == "customer_db")
        assert row["status"] == "deleted" and row["command_id"] == command.command_id
        assert (row["rule"], row["deadline"], row["certificate"]) == (
            None,
            None,
            calendar.iso(certificate.issued_at),
        )
        assert (
            "customer_db/client/1  [deleted]  category client, rule and deadline in its deletion certificate"
            in (render(report))
        )
        issued = calendar.iso(certificate.issued_at)
        assert row["why"] == [
            f"customer_db answered DELETED (1 row(s)) at 2024-03-15T00:01:00Z to command {row['command_id']}",
            f"proven by the subject's deletion certificate issued {issued}, whose entry for this command "
            "gives the rule, the deadline and the store's signed receipt (the worker keeps no more of a "
            "certified copy)",
        ]

    def test_a_late_or_repeated_receipt_for_a_pruned_copy_changes_nothing(self) -> None:
        _, due, done = self.closed_and_deleted()
        for command in due.commands:
            for outcome in ("DELETED", "NOT_FOUND", "FAILED"):
                late = apply_receipt(done.state, answer(command, outcome), POLICY)
                assert late == Outcome(done.state)

    def test_the_announcement_replayed_after_the_deletion_is_not_stamped_again(self) -> None:
        _, _, done = self.closed_and_deleted()
        for event in CLIENT:  # its id is no longer in ``seen``: the tombstones recognise it
            assert apply_event(done.state, event, POLICY) == Outcome(done.state)
        assert fire_due(done.state, t("2040-01-01"), POLICY) == Outcome(done.state)

    def test_another_announcement_of_a_deleted_copy_is_a_new_record_deleted_in_its_turn(self) -> None:
        # The store holds the record again (a restored backup announced by backfill, with the row's
        # old time): whatever its time, an announcement the copy did not take in is news.
        _, _, done = self.closed_and_deleted()
        restored = written("client", "1", "2020-06-01", event_id="backfill:customer_db:client:1")
        again = apply_event(done.state, restored, POLICY)
        assert [(d.record, d.kind) for d in again.decisions] == [(rid, "STAMPED") for rid in COPIES]
        ordered = fire_due(again.state, t("2024-06-01"), POLICY)
        assert sorted(f"{c.store}/{c.category}/{c.record_key}" for c in ordered.commands) == list(COPIES)

    def test_a_record_written_again_after_its_deletion_is_a_new_record(self) -> None:
        _, _, done = self.closed_and_deleted()
        again = apply_event(done.state, written("client", "1", "2024-05-01", event_id="w-again"), POLICY)
        assert [(d.record, d.kind) for d in again.decisions] == [(rid, "STAMPED") for rid in COPIES]
        copy = again.state.records["customer_db/client/1"]
        assert (copy.status, copy.written_by, copy.certificate, copy.deadline) == (
            "pending",
            "w-again",
            None,
            t("2024-03-15"),  # the account clock: 3 years after closing, so due at once
        )
        ordered = fire_due(again.state, t("2024-05-02"), POLICY)
        assert {c.record_key for c in ordered.commands} == {"1"} and len(ordered.commands) == 3

    def test_an_anonymised_row_keeps_its_announcement_id_as_a_backfill_may_announce_it_again(self) -> None:
        backfill = ev.RecordWritten(
            "backfill:billing_db:invoice:7",
            SUBJECT,
            t("2019-03-01"),
            "billing_db",
            "invoice",
            "7",
            ref="inv-7",
        )
        state = fold([invoiced("inv-7", "2019-03-01"), backfill])
        due = fire_due(state, t("2025-01-01"), POLICY)
        done = answered(due.state, due.commands, "ANONYMISED")
        assert done.state.records["billing_db/invoice/7"].pruned
        assert done.state.seen == {backfill.event_id}  # the row stays in its table...
        rerun = replace(backfill, time=t("2026-01-01"))  # ...and a backfill run again, with no time column
        assert apply_event(done.state, rerun, POLICY) == Outcome(done.state)

    def test_a_copy_certified_before_copies_were_pruned_is_pruned_at_the_next_certificate(self) -> None:
        with without_pruning():
            _, _, done = self.closed_and_deleted()
        assert not any(r.pruned for r in done.state.records.values())
        state = fold([written("correspondence", "t1", "2020-01-01")], done.state)
        due = fire_due(state, t("2024-03-16"), POLICY)
        later = answered(due.state, due.commands)
        assert len(later.certificates) == 1
        assert {rid: r.certificate for rid, r in later.state.records.items()} == {
            **{rid: 0 for rid in COPIES},  # their certificate's time is not known
            "customer_db/correspondence/t1": later.certificates[0].issued_at,
            "support_desk/correspondence/t1": later.certificates[0].issued_at,
        }
        report = explain(later.state, POLICY, None)
        assert "proven by one of the subject's deletion certificates" in report["records"][0]["why"][1]


class TestTheWorkerWithPrunedCopies:
    def test_a_late_receipt_is_its_commands_not_a_security_event_and_a_replay_writes_nothing(
        self, tmp_path: Path
    ) -> None:
        from ebbtide.streams.worker import state_format
        from ebbtide.streams.worker.certify import CertificateSigner
        from ebbtide.streams.worker.staging import subject_key
        from tests.support import security_events
        from tests.unit.streams.worker.harness import CLIENT_RECORD, TOPICS, answer, fanned_out

        h, commands = fanned_out(CertificateSigner.from_file(tmp_path / "k.key", "Test ISP"))
        outs = [o for i, c in enumerate(commands) for o in h.processor.on_receipt(0, i, b"cust-1", answer(c))]
        h.processor.flush()
        assert [o.topic for o in outs].count(TOPICS.certificates) == 1
        key = subject_key(0, "cust-1")
        stored = h.table[key]
        dumped = snapshot.dump(state_format.decode(stored))
        assert dumped["records"] == [] and len(dumped["settled"]) == 3  # one group per store
        refused = security_events("receipts", "not_issued")
        for i, command in enumerate(commands):  # a sink answering a re-sent command again
            again = h.processor.on_receipt(0, 10 + i, b"cust-1", answer(command, "NOT_FOUND", 0))
            h.processor.flush()
            assert again == []  # not dead-lettered: it answers the copy's own command
        assert security_events("receipts", "not_issued") == refused
        assert h.publish(CLIENT_RECORD) == []  # the announcement delivered again: nothing to send...
        assert h.table[key] is stored  # ...and nothing written


class TestSeenKeepsOnlyWhatDeduplicationNeeds:
    def test_facts_keep_their_own_event_ids_and_no_op_events_are_not_remembered(self) -> None:
        state = fold([ev.CustomerRegistered("r-1", SUBJECT, t("2019-01-01")), *CLIENT])
        assert state.seen == {"w-client"}
        for event in CLIENT:
            assert apply_event(state, event, POLICY) == Outcome(state)
        again = apply_event(state, ev.CustomerRegistered("r-1", SUBJECT, t("2019-01-01")), POLICY)
        assert again == Outcome(state)

    def test_a_subject_with_many_deleted_records_keeps_a_fraction_of_its_state(self) -> None:
        figures = measure(years=10, tickets=3)
        # A tombstone keeps its announcement's id, so that one is recognised and no other is.
        assert figures["after"] < figures["before"] * 0.5
        assert figures["after_per_copy"] < 160  # key, command id, order, answer, certificate, id


@settings(max_examples=60, deadline=None)
@given(histories(), st.integers(min_value=0, max_value=2**32))
def test_pruning_changes_no_decision_command_certificate_or_status(events: list[ev.Event], seed: int) -> None:
    """Events, ticks, receipts (any outcome, some never sent, some repeated) and events delivered
    again, in any order: the same decisions, commands, answers and certificates, byte for byte,
    as without pruning; and the pruned state survives its JSON form."""
    pruned = lifecycle(events, seed)
    with without_pruning():
        whole = lifecycle(events, seed)
    assert pruned[0] == whole[0]
    assert pruned[1] <= whole[1]  # never larger


def lifecycle(events: list[ev.Event], seed: int) -> tuple[list[str], int]:
    """A trace of everything the engine said, and the final state size."""
    rng = random.Random(seed)
    state, now = new_subject(SUBJECT), START
    trace: list[str] = []
    sent: list[ev.Event] = []
    receipts: list[ev.DeletionReported] = []

    def step(what: str, outcome: Outcome) -> SubjectState:
        trace.append(f"{what}: {outcome.decisions!r} {outcome.commands!r} {outcome.answers!r}")
        trace.append(repr(outcome.certificates))
        roundtrip = snapshot.load(json.loads(json.dumps(snapshot.dump(outcome.state))))
        assert roundtrip == outcome.state
        return outcome.state

    def tick(days: int) -> None:
        nonlocal state, now
        now += days * DAY
        due = fire_due(state, now, POLICY)
        state = step(f"tick {now}", due)
        for command in due.commands:
            if rng.random() < 0.15:
                continue  # no answer: chased
            outcome = rng.choice(["DELETED", "DELETED", "NOT_FOUND", "ANONYMISED", "FAILED"])
            receipts.append(answer(command, outcome, now + rng.randint(0, 3) * 60_000))
        rng.shuffle(receipts)
        while receipts and rng.random() < 0.8:
            receipt = receipts.pop()
            state = step(f"receipt {receipt.command_id}", apply_receipt(state, receipt, POLICY))
            if rng.random() < 0.2:
                receipts.append(receipt)  # delivered again later

    late = {e.event_id: rng.choice([0, 0, 0, 400]) * DAY for e in events}  # some arrive late
    for event in sorted(events, key=lambda e: (e.time + late[e.event_id], e.event_id)):
        while now + 200 * DAY < event.time:
            tick(rng.randint(1, 200))
        state = step(f"event {event.event_id}", apply_event(state, event, POLICY))
        sent.append(event)
        if rng.random() < 0.2:
            again = rng.choice(sent)
            replayed = apply_event(state, again, POLICY)
            assert replayed.decisions == () and replayed.commands == ()
            state = step(f"again {again.event_id}", replayed)
    for _ in range(12):  # years pass: everything due is ordered, chased and answered
        tick(rng.randint(100, 400))
    for event in sent:  # the whole log delivered again: nothing new
        replayed = apply_event(state, event, POLICY)
        assert replayed.decisions == () and replayed.commands == ()
        state = step(f"replay {event.event_id}", replayed)
    statuses = {r["record"]: r["status"] for r in explain(state, POLICY, now)["records"]}
    trace.append(repr(sorted(statuses.items())))
    return trace, size(state)


# -- the measurement ----------------------------------------------------------------------------


def _id(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))  # ids as producers make them


def long_lived_subject(years: int, tickets: int) -> list[ev.Event]:
    """A customer for ``years``: a yearly invoice and payment (bookkeeping: anonymised 5 years on),
    ``tickets`` support tickets a year (in the support desk and the customer database), then the
    account closed; every record deleted in the end."""

    def at(year: int, month: int = 1, day: int = 1) -> int:
        return t(f"{year}-{month:02d}-{day:02d}")

    out: list[ev.Event] = [
        ev.CustomerRegistered(_id("reg"), SUBJECT, at(2000)),
        ev.RecordWritten(_id("client"), SUBJECT, at(2000), "customer_db", "client", "4711"),
        ev.ServiceOrdered(_id("order"), SUBJECT, at(2000), service_id="svc-1", kind="HOSTING"),
    ]
    for year in range(2000, 2000 + years):
        invoice, payment = f"inv-{year}", f"pay-{year}"
        out += [
            ev.InvoiceIssued(_id("inv", year), SUBJECT, at(year, 2), invoice_id=invoice),
            ev.RecordWritten(
                _id("iw", year), SUBJECT, at(year, 2), "billing_db", "invoice", invoice, invoice
            ),
            ev.PaymentRecorded(_id("pay", year), SUBJECT, at(year, 3), payment_id=payment),
            ev.RecordWritten(
                _id("pw", year), SUBJECT, at(year, 3), "billing_db", "payment", payment, payment
            ),
        ]
        out += [
            ev.RecordWritten(
                _id("ticket", year, k),
                SUBJECT,
                at(year, 4) + k * DAY,
                "support_desk",
                "correspondence",
                f"t-{year}-{k}",
            )
            for k in range(tickets)
        ]
    end = at(2000 + years, 1, 10)
    out += [
        ev.ServiceCancelled(_id("cancel"), SUBJECT, end, service_id="svc-1"),
        ev.AccountClosed(_id("close"), SUBJECT, end),
    ]
    return out


def measure(years: int = 20, tickets: int = 5) -> dict[str, Any]:
    """State sizes of :func:`long_lived_subject` once every record is deleted and certified: as
    the previous version kept it (whole copies, every event id in ``seen``), and pruned."""
    events = long_lived_subject(years, tickets)

    def run() -> SubjectState:
        state, pending = new_subject(SUBJECT), sorted(events, key=lambda e: e.time)
        for year in range(2000, 2000 + years + 8):
            now = t(f"{year}-12-31")
            while pending and pending[0].time <= now:
                state = apply_event(state, pending.pop(0), POLICY).state
            due = fire_due(state, now, POLICY)
            bookkeeping = ("invoice", "payment")
            state = answered(
                due.state, tuple(c for c in due.commands if c.category in bookkeeping), "ANONYMISED"
            ).state
            state = answered(state, tuple(c for c in due.commands if c.category not in bookkeeping)).state
        return state

    after = run()
    with without_pruning():
        whole = run()
    before = replace(whole, seen=frozenset(e.event_id for e in events))  # every event id, as before
    copies = len(after.records)
    assert all(r.pruned for r in after.records.values())
    raw = snapshot.dump(after)
    return {
        "events": len(events),
        "copies": copies,
        "before": size(before),
        "after": size(after),
        "before_per_copy": size(before) // copies,
        "after_per_copy": len(json.dumps(raw["settled"], separators=(",", ":"))) // copies,
        "after_seen": len(raw["seen"]),
        "after_facts_bytes": len(json.dumps(raw["facts"], separators=(",", ":"))),
    }


if __name__ == "__main__":
    for years, tickets in ((5, 2), (20, 5), (40, 10)):
        print(years, "years,", tickets, "tickets a year:", measure(years, tickets))
