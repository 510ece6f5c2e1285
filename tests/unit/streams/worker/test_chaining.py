"""The worker's hash chains: each input partition's decisions are chained on their own partition,
a batch replayed after a crash sends the very same bytes again, and the checkpoints made at the end
of a batch (of the head the batch before left) verify."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ebbtide.runtime import keys
from ebbtide.schemas import DECISION, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.policy.rules import rules_policy
from ebbtide.streams.worker.batch import BatchStep
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import Out, partition_for
from ebbtide.tools.audit.chain import Message
from ebbtide.tools.audit.verdict import verify
from ebbtide.tools.client import to_record
from tests.unit.streams.worker.harness import TOPICS, event
from tests.unit.streams.worker.test_batch import Msg

pytestmark = pytest.mark.unit
PARTITIONS = 4
SIGNER = CertificateSigner(keys.generate_key()[0], "unit")


def written(subject: str, n: int) -> dict[str, Any]:
    return event(
        f"w{subject}{n}", "RecordWritten", "2019-01-01T00:00:00Z", subject, store="customer_db",
        category="client", record_key=str(n),
    )  # fmt: skip


def messages(*events: dict[str, Any], offset: int = 0) -> list[Msg]:
    """The events as the agent takes them, each on its subject's partition."""
    out = []
    for n, raw in enumerate(events, start=offset):
        key = raw["subject_id"].encode()
        value = codec_for(LIFECYCLE_EVENT).encode(to_record(raw))
        out.append(Msg(TOPICS.events, partition_for(key, PARTITIONS), n, key, value))
    return out


def run(step_of: Any, processor: LifecycleProcessor, batch: list[Msg], fail: bool = False) -> list[Out]:
    """One batch through the batch step; ``fail``: the broker refuses its output (a crash)."""
    sent: list[Out] = []
    exits: list[int] = []

    async def send(out: Out) -> asyncio.Future[None]:
        sent.append(out)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.set_exception(RuntimeError("broker gone")) if fail else ack.set_result(None)
        return ack

    asyncio.run(step_of(processor, send, exit=exits.append)(batch))
    assert bool(exits) == fail
    return sent


def decisions(sent: list[Out], topic: str = TOPICS.decisions) -> list[Out]:
    return [o for o in sent if o.topic == topic]


def test_a_batch_replayed_after_a_crash_resends_the_same_bytes_and_the_chain_goes_on() -> None:
    processor = LifecycleProcessor(rules_policy(), TOPICS, {}, PARTITIONS, signer=SIGNER)
    first = messages(written("cust-1", 1), written("cust-1", 2))
    crashed = run(BatchStep, processor, first, fail=True)
    replayed = run(BatchStep, processor, first)
    assert decisions(crashed) and [o.value for o in decisions(crashed)] == [
        o.value for o in decisions(replayed)
    ]
    later = run(BatchStep, processor, messages(written("cust-1", 3), offset=2))
    log = decisions(crashed) + decisions(replayed) + decisions(later)
    seqs = [codec_for(DECISION).decode(o.value)["seq"] for o in log]
    assert seqs == [1, 2, 1, 2, 3]
    marks = [
        Message(o.partition or 0, n, o.value) for n, o in enumerate(decisions(later, TOPICS.checkpoints))
    ]
    verdict = verify(
        [Message(o.partition or 0, n, o.value) for n, o in enumerate(log)], marks, SIGNER.public_pem
    )
    assert verdict.ok and verdict.summary().startswith("5 decisions in 1 partitions, 2 re-sent duplicates")


def test_each_input_partition_has_its_own_chain_on_its_own_partition() -> None:
    subjects = {partition_for(f"cust-{n}".encode(), PARTITIONS): f"cust-{n}" for n in range(1, 20)}
    two = sorted(subjects)[:2]
    processor = LifecycleProcessor(rules_policy(), TOPICS, {}, PARTITIONS, signer=SIGNER)
    sent = run(BatchStep, processor, messages(*(written(subjects[p], n) for p in two for n in (1, 2))))
    assert not decisions(sent, TOPICS.checkpoints)  # nothing durable to vouch for yet
    sent += run(BatchStep, processor, messages(*(written(subjects[p], 3) for p in two), offset=4))
    by_partition: dict[int, list[Out]] = {}
    for out in decisions(sent):
        by_partition.setdefault(out.partition or 0, []).append(out)
    assert sorted(by_partition) == two
    for chain in by_partition.values():
        assert [codec_for(DECISION).decode(o.value)["seq"] for o in chain] == [1, 2, 3]
    checkpoints = decisions(sent, TOPICS.checkpoints)
    assert sorted(o.partition for o in checkpoints) == two  # one per chain, of what the first batch left
    log = [Message(p, n, o.value) for p, chain in by_partition.items() for n, o in enumerate(chain)]
    marks = [Message(o.partition or 0, 0, o.value) for o in checkpoints]
    verdict = verify(log, marks, SIGNER.public_pem)
    assert verdict.ok and "2 checkpoints verified" in verdict.summary()
    assert [r.checkpointed_seq for r in verdict.reports] == [2, 2]
