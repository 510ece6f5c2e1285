"""The decisions' hash chains, one per partition, and their signed checkpoints.

Every decision the worker makes on input partition p is sent to partition p of the decisions
topic (the topics share one partition count), so each chain has one writer: the worker holding p.
It carries ``seq``, its place in the chain (1 for the first), and ``prev_hash``, the hex SHA-256
of the previous decision's message value as sent (64 zeros for the first); its own hash is the
SHA-256 of its own value, those two fields included.

The chain's head (the last seq and hash, and the seq and wall time of the last checkpoint) is kept
in the staged state table under ``c:<partition>``, written with the batch: a batch that fails
before its flush is dropped and replayed from the same head, so the decisions it sends again have
the same seq and the same bytes (``ebbtide audit verify`` counts such re-sent duplicates).

At the end of each batch, a partition whose chain moved since its last checkpoint gets a signed
one (:data:`ebbtide.schemas.CHECKPOINT`, to partition p of the checkpoints topic) of its durable
head (as the last flushed batch left it) once ``every`` decisions were chained since the last, or
``seconds`` have passed since it; a chain's first checkpoint comes at the end of its second batch.
Checkpoints go out with the batch's other output, before its state is flushed.

A batch replayed after a crash re-sends its decisions from the same head, with the same seqs; the
same bytes if the partition's inputs (events, ticks, receipts: three topics) come in the same order
again, else other decisions under those seqs, which supersede the first ones. A checkpoint never
vouches for decisions that could be superseded so.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ebbtide.schemas import CHECKPOINT, codec_for
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.routing import Out
from ebbtide.streams.worker.staging import StagedTable

GENESIS = "0" * 64  # the prev_hash of a chain's first decision
CHECKPOINT_KEY = b"checkpoint"  # the key of every checkpoint message (its partition is its chain's)


def head_key(partition: int) -> str:
    return f"c:{partition}"


def value_hash(value: bytes) -> str:
    """The hash a chain links by: hex SHA-256 of a message value, exactly as sent."""
    return hashlib.sha256(value).hexdigest()


@dataclass
class ChainHead:
    """Where one partition's chain is: its last decision and its last checkpoint."""

    seq: int = 0
    hash: str = GENESIS
    checkpoint_seq: int = 0
    checkpoint_at: float | None = None  # wall time (s) of the last checkpoint; None: none yet

    def dump(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "cp_seq": self.checkpoint_seq,
            "cp_at": self.checkpoint_at,
        }

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> ChainHead:
        if not raw:
            return cls()
        at = raw.get("cp_at")
        return cls(
            int(raw["seq"]), str(raw["hash"]), int(raw["cp_seq"]), float(at) if at is not None else None
        )


class Chains:
    """The chain of each partition, in the staged table, and the checkpoints that are due."""

    def __init__(
        self,
        state: StagedTable,
        topic: str,
        policy_label: str,
        signer: CertificateSigner | None,
        every: int = 1000,
        seconds: float = 60.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``topic``: the checkpoints topic; ``signer`` signs each checkpoint (None: none is sent,
        which only tests of other things should do)."""
        self.state = state
        self.topic = topic
        self.policy_label = policy_label
        self.signer = signer
        self.every = every
        self.seconds = seconds
        self.wall = wall
        self._codec = codec_for(CHECKPOINT)
        self._open: set[int] = set()  # partitions whose chain may have moved since its last checkpoint

    def head(self, partition: int) -> ChainHead:
        return ChainHead.load(self.state.get(head_key(partition)))

    def link(
        self, partition: int, record: dict[str, Any], encode: Callable[[dict[str, Any]], bytes]
    ) -> bytes:
        """The value of decision ``record`` as the next link of ``partition``'s chain (``seq`` and
        ``prev_hash`` filled, then encoded); the head moves to it (staged)."""
        head = self.head(partition)
        value = encode({**record, "seq": head.seq + 1, "prev_hash": head.hash})
        head.seq, head.hash = head.seq + 1, value_hash(value)
        self.state[head_key(partition)] = head.dump()
        self._open.add(partition)
        return value

    def checkpoints(self) -> list[Out]:
        """The signed checkpoints due at the end of a batch (their heads staged as checkpointed).

        A checkpoint vouches for the chain's durable head (as the last flushed batch left it), never
        for this batch's decisions: if the batch fails, it is replayed, and its decisions may come
        out in another order (the partition's events, ticks and receipts interleaved otherwise);
        what a checkpoint vouches for is never sent again with other bytes."""
        if self.signer is None:
            return []
        now = self.wall()
        out: list[Out] = []
        for partition in sorted(self._open):
            head = self.head(partition)
            durable = ChainHead.load(self.state.stored(head_key(partition)))
            if head.seq <= head.checkpoint_seq:
                self._open.discard(partition)  # nothing new since the last checkpoint
                continue
            due = durable.seq > head.checkpoint_seq and (
                head.checkpoint_at is None
                or durable.seq - head.checkpoint_seq >= self.every
                or now - head.checkpoint_at >= self.seconds
            )
            if not due:
                continue
            record = {
                "partition": partition,
                "seq": durable.seq,
                "head": durable.hash,
                "policy_version": self.policy_label,
                "made_at": int(now * 1000),
            }
            value = self._codec.encode(self.signer.sign_checkpoint(record))
            out.append(Out(self.topic, CHECKPOINT_KEY, value, partition=partition))
            head.checkpoint_seq, head.checkpoint_at = durable.seq, now
            self.state[head_key(partition)] = head.dump()
        return out

    def resume(self, partitions: set[int]) -> None:
        """Partitions now held: a chain left with decisions after its last checkpoint (a restart)
        gets one at the end of a batch once it is due."""
        self._open |= partitions

    def forget(self, partitions: set[int]) -> None:
        self._open -= partitions
