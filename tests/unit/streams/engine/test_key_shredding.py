"""Key shredding: once no copy of a sealed subject is left, the engine decides KEY_SHREDDED for
each of its data keys, orders it destroyed in the store ``keys``, and certifies it on its receipt;
a subject that comes back under a new key has that key shredded in its turn, never the old one
again; a subject whose values are not sealed has nothing to shred."""

from __future__ import annotations

import json
import os

from ebbtide.runtime.tokens import DataKey, key_id_of
from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.decisions import DeleteRecord
from ebbtide.streams.engine.events import DeletionReported
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import SubjectState
from ebbtide.streams.engine.receipts import apply_receipt
from ebbtide.streams.engine.shredding import KEY_STORE, sealed_key_ids
from tests.unit.streams.builders import closed, t, written
from tests.unit.streams.engine.test_state_pruning import POLICY, answer, answered, fold

K1 = DataKey("cust-1", "a1a1a1a1a1a1a1a1", os.urandom(32))
K2 = DataKey("cust-1", "b2b2b2b2b2b2b2b2", os.urandom(32))


def closed_and_deleted(key: str, state: SubjectState | None = None, at: str = "2019-01-10") -> SubjectState:
    """A client record under ``key`` (sealed or not), the account closed, the copies deleted."""
    year = int(at[:4])
    state = fold([written("client", key, at), closed(f"{year + 2}-03-15")], state)
    due = fire_due(state, t(f"{year + 5}-03-15"), POLICY)
    assert due.commands
    return answered(due.state, due.commands).state


def test_the_last_certificate_shreds_the_subjects_key_and_its_receipt_certifies_it() -> None:
    sealed = K1.seal("42")
    state = fold([written("client", sealed, "2019-01-10"), closed("2021-03-15")])
    due = fire_due(state, t("2024-03-15"), POLICY)
    *first, last = due.commands
    state = due.state
    for command in first:
        state = apply_receipt(state, answer(command), POLICY).state
    done = apply_receipt(state, answer(last), POLICY)
    assert len(done.certificates) == 1
    (shredded,) = [d for d in done.decisions if d.kind == "KEY_SHREDDED"]
    assert shredded.record == f"{KEY_STORE}/key/{K1.key_id}" and K1.key_id in shredded.reason
    assert "42" not in shredded.reason
    (command,) = done.commands
    assert (command.store, command.category, command.record_key) == (KEY_STORE, "key", K1.key_id)
    again = apply_receipt(state, answer(last), POLICY)  # deterministic: the same from the same state
    assert again.decisions == done.decisions and again.commands == done.commands
    assert snapshot.load(json.loads(json.dumps(snapshot.dump(done.state)))) == done.state

    proven = apply_receipt(done.state, answer(command), POLICY)
    assert [d.kind for d in proven.decisions] == ["DELETION_CONFIRMED"]
    (certificate,) = proven.certificates
    assert [c.record for c in certificate.copies] == [shredded.record]
    assert proven.commands == ()  # its key is shredded already: nothing more


def test_a_subject_back_under_a_new_key_has_that_one_shredded_not_the_old_one_again() -> None:
    first = closed_and_deleted(K1.seal("42"))
    key_copies = [r for r in first.records.values() if r.store == KEY_STORE]
    assert [r.record_key for r in key_copies] == [K1.key_id]
    (command_id,) = [r.command_id for r in key_copies]
    assert command_id is not None
    settled = apply_receipt(first, answer_for(first, K1.key_id), POLICY).state
    back = fold([written("client", K2.seal("43"), "2026-05-01"), closed("2028-03-15")], settled)
    assert sealed_key_ids(back) == {K1.key_id, K2.key_id}
    due = fire_due(back, t("2031-03-15"), POLICY)
    done = answered(due.state, due.commands)
    shredded = [r.record_key for r in done.state.records.values() if r.store == KEY_STORE]
    assert sorted(shredded) == [K1.key_id, K2.key_id]
    assert [c.record_key for c in done.commands] == [K2.key_id]


def answer_for(state: SubjectState, key_id: str) -> DeletionReported:
    copy = state.records[f"{KEY_STORE}/key/{key_id}"]
    assert copy.command_id is not None and copy.deadline is not None
    return answer(
        DeleteRecord(copy.command_id, state.subject_id, KEY_STORE, "key", key_id, "key-shredding", "", 0, 0)
    )


def test_no_shredding_while_a_copy_is_live_nor_for_a_subject_whose_values_are_not_sealed() -> None:
    plain = closed_and_deleted("42")
    assert not [r for r in plain.records.values() if r.store == KEY_STORE]
    live = fold([written("client", K1.seal("42"), "2019-01-10")])  # the account is open
    assert sealed_key_ids(live) == {K1.key_id}
    assert not [r for r in live.records.values() if r.store == KEY_STORE]


def test_the_engine_reads_key_ids_as_the_token_format_writes_them() -> None:
    token = K1.seal("kari.no", domain=True)
    state = fold([written("domain_contact", K1.seal("7"), "2019-01-10", ref=token)])
    assert sealed_key_ids(state) == {key_id_of(token)}
