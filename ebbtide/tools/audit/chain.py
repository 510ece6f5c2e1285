"""Checking the decisions' hash chains and the worker's signed checkpoints of them: pure functions
over what was read (partition, offset and value bytes of each message; no Kafka here).

Each decisions partition is one chain (``streams.worker.chaining``): a decision's ``seq`` follows
the previous one's and its ``prev_hash`` is the SHA-256 of the previous decision's value bytes.
The first broken link of each partition is reported, as what it looks like:

- ``changed``: a decision whose hash is not what the next one names (seq continuous), or that
  names neither the decision before it nor is named by the next (its own ``prev_hash`` changed),
  or whose bytes are not a decision at all;
- ``removed``: the seq jumps (decisions missing before this one), or a checkpoint vouches for a
  seq past the chain's end;
- ``reordered``: the seq jumps, and the missing decisions come later in the partition;
- ``inserted``: a seq already seen, with other bytes (a decision that does not belong there), or
  a decision the next one skips, linking to the one it displaced.

A decision re-sent with the same seq and the very same bytes (a batch replayed after a crash) is a
``duplicate``: counted, not an error. A replayed batch whose inputs came in another order re-sends
other decisions under the same seqs: a decision with a seq the chain has, linked to the chain's
decision before that seq, after the last checkpoint the chain matched (the worker checkpoints only
what cannot be re-sent), supersedes the decisions from that seq on (counted, not an error).

Every checkpoint's signature is checked with the worker's public key, and the chain's hash at its
seq must be its head. Decisions without chain fields (written before the chain) are counted as not
chained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ebbtide.runtime.authenticity import CHECKPOINT, Refused, Verifier
from ebbtide.schemas import CHECKPOINT as CHECKPOINT_SCHEMA
from ebbtide.schemas import DECISION, InvalidMessage, codec_for
from ebbtide.streams.worker.chaining import GENESIS, value_hash  # the worker's own link, checked here

WINDOW = 100_000  # seqs behind the chain's end whose hashes are kept to recognise re-sent duplicates


@dataclass(frozen=True)
class Message:
    """One message as read: its partition, offset, value bytes and timestamp (epoch ms)."""

    partition: int
    offset: int
    value: bytes | None
    timestamp: int = 0


@dataclass
class Finding:
    """Something wrong, where it is: ``topic`` is ``decisions`` or ``checkpoints``."""

    topic: str
    partition: int
    offset: int
    kind: str
    detail: str

    def line(self) -> str:
        return f"{self.topic} partition {self.partition}, offset {self.offset}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature was verified: chain ``partition``'s hash at ``seq`` is ``head``."""

    offset: int
    partition: int
    seq: int
    head: str


@dataclass
class PartitionReport:
    partition: int
    decisions: int = 0  # every decision message read, duplicates and unchained ones included
    not_chained: int = 0
    duplicates: int = 0
    superseded: int = 0  # sent, then re-sent otherwise by a batch replayed after a crash
    # Each run superseded: (offsets of the first and last displaced decision, offset of the re-send).
    # A crash explains one; whoever can write to the topic can also append one: an auditor checks
    # each against the worker's restarts, and reads the displaced decisions as never applied.
    superseded_runs: list[tuple[int, int, int]] = field(default_factory=list)
    checkpoints: int = 0  # verified against the chain
    last_seq: int | None = None
    checkpointed_seq: int | None = None  # the highest seq a verified checkpoint vouches for
    first_seq: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def after_checkpoint(self) -> int:
        """Chained decisions after the last verified checkpoint (what no signature vouches for)."""
        if self.last_seq is None:
            return 0
        start = self.checkpointed_seq if self.checkpointed_seq is not None else (self.first_seq or 1) - 1
        return max(0, self.last_seq - start)


def checkpoints_of(messages: Iterable[Message], public_pem: bytes) -> tuple[list[Checkpoint], list[Finding]]:
    """The checkpoints signed by the worker's key (``public_pem``), and a finding for each other one."""
    verifier, codec = Verifier(public_pem), codec_for(CHECKPOINT_SCHEMA)
    good: list[Checkpoint] = []
    bad: list[Finding] = []
    for m in messages:
        try:
            record = codec.decode(m.value)
            verifier.check(CHECKPOINT, record)
        except InvalidMessage:
            bad.append(
                Finding("checkpoints", m.partition, m.offset, "forged", "not a checkpoint (undecodable)")
            )
            continue
        except Refused as exc:
            bad.append(Finding("checkpoints", m.partition, m.offset, "forged", exc.reason))
            continue
        good.append(Checkpoint(m.offset, int(record["partition"]), int(record["seq"]), str(record["head"])))
    return good, bad


class ChainWalk:
    """One partition's chain, fed its decisions in offset order (:meth:`add`), then :meth:`finish`."""

    def __init__(self, partition: int, checkpoints: Iterable[Checkpoint], from_start: bool) -> None:
        """``from_start``: read from the partition's offset 0, so the first chained decision must
        be seq 1 with 64 zeros before it; else the first one anchors the chain."""
        self.report = PartitionReport(partition)
        self.from_start = from_start
        self._pending: dict[int, list[Checkpoint]] = {}  # by seq: not matched by the chain yet
        for cp in checkpoints:
            self._pending.setdefault(cp.seq, []).append(cp)
        self._mismatched: dict[Checkpoint, int] = {}  # checkpoint -> offset of the decision that differs
        self._tip: tuple[int, str, int] | None = None  # seq, hash and offset of the chain's last link
        self._window: dict[int, tuple[str, int]] = {}  # seq -> (hash, offset), the last WINDOW
        self._broken: Finding | None = None
        self._missing: set[int] = set()  # the seqs a jump left out (reordered if they come later)
        self._last_offset = -1
        self._max_seq = 0
        self._suspect: tuple[int, int, int, str] | None = None  # a broken link: offsets, seq, hash
        self._superseded: dict[int, str] = {}  # seq -> hash of what the last re-send superseded
        self._superseded_at: dict[int, int] = {}  # seq -> its offset

    def add(self, offset: int, value: bytes | None) -> None:
        report = self.report
        report.decisions += 1
        self._last_offset = offset
        try:
            record = codec_for(DECISION).decode(value)
        except InvalidMessage:
            self._break(offset, "changed", "its bytes are not a decision")
            return
        seq, prev = record.get("seq"), record.get("prev_hash")
        if seq is None or prev is None:
            report.not_chained += 1
            if self._tip is not None:
                self._break(offset, "inserted", "a decision without chain fields after the chain began")
            return
        digest = value_hash(value or b"")
        self._max_seq = max(self._max_seq, seq)
        if self._broken is not None:  # links are no longer checked; checkpoints still are
            self._vouch(seq, digest, offset)
            self._resolve(offset, seq, prev)
            if seq in self._missing and self._broken.kind == "removed":
                self._broken.kind = "reordered"
                self._broken.detail += f"; seq {seq} comes later, at offset {offset}"
            return
        self._link(offset, seq, prev, digest)

    def _link(self, offset: int, seq: int, prev: str, digest: str) -> None:
        if self._tip is None:
            if self.from_start and seq != 1:
                self._missing = set(range(1, seq))
                return self._break(offset, "removed", f"the chain begins at seq {seq}, not 1")
            if self.from_start and prev != GENESIS:
                return self._break(offset, "changed", "the chain's first decision names a previous one")
            self.report.first_seq = seq
            self._window[seq - 1] = (prev, -1)  # the anchor, vouched for by a checkpoint if there is one
            self._vouch(seq - 1, prev, offset)
            return self._accept(offset, seq, digest)
        last_seq, last_hash, last_offset = self._tip
        if seq == last_seq + 1:
            if prev != last_hash and prev == self._superseded.get(last_seq):
                return self._break(
                    last_offset,
                    "inserted",
                    f"it claims seq {last_seq}, but the next decision (offset {offset}) links to the "
                    f"one it displaced (offset {self._superseded_at.get(last_seq)})",
                )
            if prev != last_hash:
                self._suspect = (last_offset, offset, seq, digest)  # or this one changed: see the next
                return self._break(
                    last_offset,
                    "changed",
                    f"its hash is not the one the next decision (offset {offset}, seq {seq}) names",
                )
            return self._accept(offset, seq, digest)
        if seq > last_seq + 1:
            self._missing = set(range(last_seq + 1, seq))
            return self._break(
                offset,
                "removed",
                f"seq jumps from {last_seq} (offset {last_offset}) to {seq}: "
                f"{seq - last_seq - 1} decision(s) missing before this one",
            )
        return self._again(offset, seq, prev, digest)

    def _again(self, offset: int, seq: int, prev: str, digest: str) -> None:
        """A seq the chain already has: re-sent by a batch replayed after a crash, the same bytes
        (a duplicate) or others that supersede the first (linked to the chain before it, and after
        the last checkpoint, which only vouches for what cannot be sent again); else inserted."""
        last_seq = self._tip[0] if self._tip else 0
        seen = self._window.get(seq)
        if seen is not None and seen[0] == digest:
            self.report.duplicates += 1
            return None
        before = self._window.get(seq - 1)
        if before is not None and before[0] == prev and seq > (self.report.checkpointed_seq or 0):
            self.report.superseded += last_seq - seq + 1
            self._superseded, self._superseded_at = {}, {}
            for gone in range(seq, last_seq + 1):
                was = self._window.pop(gone, None)
                if was is not None:
                    self._superseded[gone], self._superseded_at[gone] = was
            displaced = sorted(self._superseded_at.values())
            if displaced:
                self.report.superseded_runs.append((displaced[0], displaced[-1], offset))
            return self._accept(offset, seq, digest)
        where = f"the decision with seq {seq} at offset {seen[1]}" if seen else f"seq {seq}, long before"
        return self._break(offset, "inserted", f"seq {seq} again (the chain is at {last_seq}), not {where}")

    def _resolve(self, offset: int, seq: int, prev: str) -> None:
        """After a link broke between two decisions, the next one says which of them changed: if
        it does not name the second either, the second changed (its own ``prev_hash`` with it)."""
        if self._suspect is None or self._broken is None:
            return
        before, at, suspect_seq, suspect_hash = self._suspect
        self._suspect = None
        if seq == suspect_seq + 1 and prev != suspect_hash:
            self._broken.offset = at
            self._broken.detail = (
                f"it does not name the decision before it (offset {before}), and the next decision "
                f"(offset {offset}) does not name it"
            )

    def _accept(self, offset: int, seq: int, digest: str) -> None:
        self._tip = (seq, digest, offset)
        self._window[seq] = (digest, offset)
        if len(self._window) > WINDOW:
            del self._window[next(iter(self._window))]
        self._vouch(seq, digest, offset)

    def _vouch(self, seq: int, digest: str, offset: int) -> None:
        """The chain holds ``digest`` at ``seq`` (at ``offset``): its checkpoints of that head verify."""
        for cp in self._pending.get(seq, []):
            if cp.head != digest:
                self._mismatched[cp] = offset
                continue
            self._mismatched.pop(cp, None)
            self._pending[seq] = [c for c in self._pending[seq] if c is not cp]
            self.report.checkpoints += 1
            self.report.checkpointed_seq = max(self.report.checkpointed_seq or 0, seq)

    def _break(self, offset: int, kind: str, detail: str) -> None:
        if self._broken is None:
            self._broken = Finding("decisions", self.report.partition, offset, kind, detail)
            self.report.findings.insert(0, self._broken)

    def finish(self) -> PartitionReport:
        """The partition's report, with a finding for each checkpoint the chain does not match and
        each that vouches for a seq past the chain's end."""
        report = self.report
        report.last_seq = self._tip[0] if self._tip and self._broken is None else (self._max_seq or None)
        for cp, offset in sorted(self._mismatched.items(), key=lambda item: item[0].offset):
            report.findings.append(
                Finding(
                    "decisions",
                    report.partition,
                    offset,
                    "changed",
                    f"the chain's hash at seq {cp.seq} is not the head the signed checkpoint at checkpoints "
                    f"offset {cp.offset} names: the chain up to here was changed",
                )
            )
        for seq in sorted(s for s in self._pending if s > self._max_seq):
            for cp in self._pending[seq]:
                report.findings.append(
                    Finding(
                        "decisions",
                        report.partition,
                        self._last_offset,
                        "removed",
                        f"the signed checkpoint at checkpoints offset {cp.offset} vouches for seq {seq}, "
                        f"but the chain ends at seq {self._max_seq}: decisions removed from its end",
                    )
                )
        return report
