"""The golden run: a realistic run of the worker's processor, recorded once and replayed by the
unit tests (tests/unit/streams/worker/test_golden_run.py), which prove that the worker's outputs
stay byte-identical.

A run is a list of phases, each one processor's life over the same table (a restart between
two, the second under a longer retention, so every subject is judged again); a phase is a list
of batches as the lifecycle agent takes them: the inputs (events, clock ticks, receipts, per
partition in the order consumed), then every output (topic, key, partition, value, headers, in
the order sent), then the state table as it stood after the phase in today's JSON form (what
Faust's json codec wrote to the changelog). Every key is derived from a fixed seed, so the
signatures (Ed25519, deterministic) come out the same on every replay.

Re-record (only for a deliberate, reviewed change of the worker's outputs):
``PYTHONPATH=$PWD python -m tests.golden.record``.
"""

from __future__ import annotations

import hashlib
import lzma
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ebbtide.runtime.authenticity import HoldKeys, MessageSigner, TrustedKeys, Verifier
from ebbtide.runtime.settings import Topics
from ebbtide.streams.policy.rules import DEFAULT_POLICY, Policy, default_policy, parse_policy
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import Out

FIXTURE = Path(__file__).with_name("run.msgpack.xz")
TOPICS = Topics("golden")
PARTITIONS = 3
CHECKPOINTS = (100, 30.0)  # a chain checkpoint every 100 decisions or 30 s of (recorded) wall time
SOURCES = {"events": TOPICS.events, "clock": TOPICS.clock, "receipts": TOPICS.receipts}


class Input(msgspec.Struct, array_like=True):
    source: str  # events, clock or receipts
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Output(msgspec.Struct, array_like=True):
    topic: str
    key: bytes
    partition: int | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, out: Out) -> Output:
        return cls(
            out.topic, out.key, out.partition, out.value, [(name, value) for name, value in out.headers]
        )


class Batch(msgspec.Struct, array_like=True):
    wall: float  # the worker's wall clock (s) during the batch: the chain checkpoints' time
    inputs: list[Input]
    outputs: list[Output]


class Phase(msgspec.Struct, array_like=True):
    policy: str  # "shipped" or "longer" (see :func:`policy`)
    batches: list[Batch]
    table: dict[str, bytes]  # after the phase, each value as Faust's json codec wrote it


class Run(msgspec.Struct):
    customers: int
    seed: int
    phases: list[Phase]


def read(path: Path = FIXTURE) -> Run:
    return msgspec.msgpack.decode(lzma.decompress(path.read_bytes()), type=Run)


def write(run: Run, path: Path = FIXTURE) -> int:
    data = lzma.compress(msgspec.msgpack.encode(run), preset=9 | lzma.PRESET_EXTREME)
    path.write_bytes(data)
    return len(data)


def private_pem(name: str) -> bytes:
    """A fixed Ed25519 key for ``name`` (the worker, a store's sink, the legal hold signer)."""
    seed = hashlib.sha256(f"ebbtide golden run: {name}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def sink_signer(store: str) -> MessageSigner:
    return MessageSigner(private_pem(f"sink {store}"))


def hold_signer() -> MessageSigner:
    return MessageSigner(private_pem("legal hold"))


class _SinkKeys(TrustedKeys):
    def verifier(self, store: str) -> Verifier:
        return Verifier(sink_signer(store).public_pem)


def policy(name: str) -> Policy:
    """``shipped``: the shipped policy; ``longer``: it with one retention longer (a new label)."""
    if name == "shipped":
        return default_policy()
    text = DEFAULT_POLICY.read_text()
    return parse_policy(text.replace("keep = { years = 3 }", "keep = { years = 5 }", 1))


class Wall:
    """The wall clock the processor's chains read: the recorded batch's."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def processor(policy_name: str, table: MutableMapping[str, Any], wall: Wall) -> LifecycleProcessor:
    """The worker's processor as the golden run uses it: fixed keys, any tick, the recorded wall."""
    made = LifecycleProcessor(
        policy(policy_name),
        TOPICS,
        table,
        PARTITIONS,
        signer=CertificateSigner(private_pem("worker"), "ebbtide golden run"),
        trusted=_SinkKeys(),
        hold_keys=HoldKeys([hold_signer().public_pem]),
        checkpoints=CHECKPOINTS,
    )
    made.chains.wall = wall
    return made


def run_batch(processor: LifecycleProcessor, wall: Wall, batch_wall: float, inputs: list[Input]) -> list[Out]:
    """What the batch step does with one batch (streams.worker.batch), sends left out."""
    wall.now = batch_wall
    out: list[Out] = []
    for i in inputs:
        out += processor.on_message(SOURCES[i.source], i.partition, i.offset, i.key, i.value)
    out += processor.end_batch()
    processor.flush()
    return out


def replay(
    run: Run,
    table: MutableMapping[str, Any],
    phases: Iterator[int] | None = None,
    on_batch: Callable[[int, int, list[Out]], None] | None = None,
) -> None:
    """Feed ``run``'s phases (all, or the ones ``phases`` names) to fresh processors over
    ``table``; ``on_batch(phase, batch, outputs)`` sees what each batch sent."""
    wall = Wall()
    for number in phases if phases is not None else range(len(run.phases)):
        phase = run.phases[number]
        worker = processor(phase.policy, table, wall)
        worker.resume(set(range(PARTITIONS)))
        for index, batch in enumerate(phase.batches):
            sent = run_batch(worker, wall, batch.wall, batch.inputs)
            if on_batch is not None:
                on_batch(number, index, sent)


def first_difference(expected: list[Output], got: list[Output]) -> str | None:
    """Where two batches' outputs first differ, said plainly; None if they are the same."""
    for n, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            fields = [f for f in Output.__struct_fields__ if getattr(want, f) != getattr(have, f)]
            return (
                f"output {n} differs in {', '.join(fields)}: expected topic {want.topic} key {want.key!r} "
                f"value {want.value[:120]!r}..., got topic {have.topic} key {have.key!r} "
                f"value {have.value[:120]!r}..."
            )
    if len(expected) != len(got):
        return f"{len(expected)} outputs expected, {len(got)} sent"
    return None
