"""The chain check: an intact chain (re-sent duplicates included) passes; a changed, removed,
reordered or inserted decision, a forged checkpoint and a checkpoint whose head is not the chain's
are each found, at their partition and offset."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest

from ebbtide.runtime import keys
from ebbtide.schemas import DECISION, codec_for
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.chaining import Chains
from ebbtide.streams.worker.staging import StagedTable
from ebbtide.tools.audit.chain import Message
from ebbtide.tools.audit.verdict import Verdict, verify

pytestmark = pytest.mark.unit


@cache
def signer(name: str = "worker") -> CertificateSigner:
    return CertificateSigner(keys.generate_key()[0], name)


def record(n: int, seq: int | None = None) -> dict[str, Any]:
    return {
        "decision_id": f"d{n}",
        "subject_id": "cust-1",
        "record": "customer_db/1",
        "category": "client",
        "kind": "STAMPED",
        "rule_id": None,
        "clause": None,
        "basis": None,
        "deadline": None,
        "reason": f"reason number {n}",
        "policy_version": "p1",
        "caused_by": [],
        "input": None,
        "seq": seq,
        "prev_hash": None,
    }


def chain(count: int, checkpoint_at: tuple[int, ...] = ()) -> tuple[list[bytes], list[bytes]]:
    """``count`` chained decisions of partition 0, one batch each, and the checkpoints made at the
    end of the batches after those numbered (each of the head the batch before left)."""
    table = StagedTable({})
    chains = Chains(table, "t.checkpoints", "p1", signer(), every=1)
    values, checkpoints = [], []
    for n in range(1, count + 2):
        if n <= count:
            values.append(chains.link(0, record(n), codec_for(DECISION).encode))
        if n - 1 in checkpoint_at:
            checkpoints += [out.value for out in chains.checkpoints()]
        table.flush()
    return values, checkpoints


def check(values: Sequence[bytes], checkpoints: Sequence[bytes] = ()) -> Verdict:
    decisions = [Message(0, offset, v) for offset, v in enumerate(values)]
    marks = [Message(0, offset, v) for offset, v in enumerate(checkpoints)]
    return verify(decisions, marks, signer().public_pem)


def only(verdict: Verdict) -> tuple[str, int]:
    assert len(verdict.findings) == 1, [f.line() for f in verdict.findings]
    return verdict.findings[0].kind, verdict.findings[0].offset


def test_an_intact_chain_with_resent_duplicates_passes_and_says_what_no_checkpoint_covers() -> None:
    values, checkpoints = chain(8, checkpoint_at=(3, 6))
    verdict = check(values[:6] + values[3:6] + values[6:], checkpoints)  # 4..6 re-sent after a crash
    assert verdict.ok, [f.line() for f in verdict.findings]
    assert verdict.summary() == (
        "11 decisions in 1 partitions, 3 re-sent duplicates, 2 checkpoints verified; "
        "the last 2 decisions of partition 0 are after its last checkpoint"
    )


def test_a_changed_byte_is_found_at_its_offset() -> None:
    values, _ = chain(8)
    changed = bytearray(values[4])
    changed[changed.index(b"reason number 5") + 7] ^= 0x01  # one byte of its text
    assert only(check([*values[:4], bytes(changed), *values[5:]])) == ("changed", 4)
    assert only(check([*values[:4], values[4][:-3], *values[5:]])) == ("changed", 4)  # not a decision
    in_link = bytearray(values[4])
    in_link[-20] ^= 0x01  # a byte of its prev_hash: neither link around it holds
    assert only(check([*values[:4], bytes(in_link), *values[5:]])) == ("changed", 4)


def test_a_removed_decision_is_a_gap_at_the_next_one() -> None:
    values, _ = chain(8)
    verdict = check(values[:4] + values[5:])
    assert only(verdict) == ("removed", 4)
    assert "to 6: 1 decision(s) missing" in verdict.findings[0].detail


def test_reordered_and_inserted_decisions_are_named_so() -> None:
    values, checkpoints = chain(8, checkpoint_at=(5,))
    assert only(check([*values[:4], values[5], values[4], *values[6:]])) == ("reordered", 4)
    forged = codec_for(DECISION).decode(values[4])  # a decision that claims the real one's place
    forged["reason"] = "nothing to see"
    inserted = [*values[:5], codec_for(DECISION).encode(forged), *values[5:]]
    assert only(check(inserted)) == ("inserted", 5)  # the next one links to the real one
    assert only(check(inserted[:6], checkpoints)) == ("inserted", 5)  # ... or a checkpoint covers it


def test_a_batch_replayed_in_another_order_supersedes_what_it_sent_first() -> None:
    table = StagedTable({})
    chains = Chains(table, "t.checkpoints", "p1", signer(), every=1)
    link = lambda n: chains.link(0, record(n), codec_for(DECISION).encode)  # noqa: E731
    durable = [link(n) for n in (1, 2, 3)]
    table.flush()
    crashed = [link(n) for n in (4, 5, 6)]
    checkpoints = [o.value for o in chains.checkpoints()]  # of seq 3, what the flush made durable
    table.discard()  # the batch failed before its flush: replayed, its inputs in another order
    replayed = [link(n) for n in (5, 4, 6, 7)]
    verdict = check(durable + crashed + replayed, checkpoints)
    assert verdict.ok, [f.line() for f in verdict.findings]
    assert "3 superseded by a batch replayed after a crash, 1 checkpoints verified" in verdict.summary()
    # the auditor is told where: the displaced decisions (offsets 3-5) and the re-send (offset 6)
    assert verdict.as_json()["partitions"][0]["superseded_runs"] == [
        {"first_offset": 3, "last_offset": 5, "resent_at": 6}
    ]
    assert "offsets 3-5 were superseded by the re-send at offset 6" in verdict.summary()
    behind = codec_for(DECISION).decode(durable[2]) | {"reason": "another"}  # seq 3, checkpointed
    assert only(check([*durable, *crashed, codec_for(DECISION).encode(behind)], checkpoints)) == (
        "inserted",
        6,
    )


def test_a_checkpoint_signed_by_another_key_is_forged() -> None:
    values, checkpoints = chain(4, checkpoint_at=(4,))
    table = StagedTable({})
    other = Chains(table, "t.checkpoints", "p1", signer("intruder"), every=1)
    for v in values:  # the same chain, checkpointed by a key that is not the worker's
        other.link(0, codec_for(DECISION).decode(v), codec_for(DECISION).encode)
    table.flush()
    forged = [o.value for o in other.checkpoints()]
    assert check(values, checkpoints).ok
    assert only(check(values, checkpoints + forged)) == ("forged", 1)


def test_a_rewritten_chain_does_not_match_its_checkpoint_nor_may_it_be_cut_short() -> None:
    values, checkpoints = chain(6, checkpoint_at=(3, 6))
    first = codec_for(DECISION).decode(values[0]) | {"reason": "rewritten"}
    again = Chains(  # the same chain rebuilt from a first decision changed at its source
        StagedTable({}), "t.checkpoints", "p1", None
    )
    rewritten = [again.link(0, first, codec_for(DECISION).encode)]
    rewritten += [
        again.link(0, codec_for(DECISION).decode(v), codec_for(DECISION).encode) for v in values[1:]
    ]
    verdict = check(rewritten, checkpoints)  # every link holds; the signed heads do not
    assert {(f.kind, f.offset) for f in verdict.findings} == {("changed", 2), ("changed", 5)}
    kind, offset = only(check(values[:4], checkpoints))
    assert (kind, offset) == ("removed", 3)  # the checkpoint at seq 6 vouches for what is gone


def test_decisions_written_before_the_chain_are_not_chained() -> None:
    values, _ = chain(3)
    old = codec_for(DECISION).encode(record(0))  # no seq, no prev_hash
    verdict = check([old, *values])
    assert verdict.ok and "(1 not chained" in verdict.summary()
