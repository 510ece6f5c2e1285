"""The verdict of ``ebbtide audit verify``: every partition's chain walked (:mod:`.chain`), the
forged checkpoints, and the one-line summary or the findings. Pure: it is given what was read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ebbtide.tools.audit.chain import ChainWalk, Finding, Message, PartitionReport, checkpoints_of


@dataclass
class Verdict:
    reports: list[PartitionReport]
    forged: list[Finding]

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.reports for f in r.findings] + self.forged

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        """``N decisions in P partitions, D re-sent duplicates, C checkpoints verified; ...``"""
        total = sum(r.decisions for r in self.reports)
        unchained = sum(r.not_chained for r in self.reports)
        superseded = sum(r.superseded for r in self.reports)
        line = (
            f"{total} decisions in {len(self.reports)} partitions"
            + (f" ({unchained} not chained: written before the chain)" if unchained else "")
            + f", {sum(r.duplicates for r in self.reports)} re-sent duplicates, "
            + (f"{superseded} superseded by a batch replayed after a crash, " if superseded else "")
            + f"{sum(r.checkpoints for r in self.reports)} checkpoints verified"
        )
        for r in self.reports:
            for first, last, again in r.superseded_runs:
                line += (
                    f"; partition {r.partition}: offsets {first}-{last} were superseded by the re-send "
                    f"at offset {again} (a worker restart explains it; those decisions were not applied)"
                )
            if r.after_checkpoint:
                after = r.after_checkpoint
                line += (
                    f"; the last {after} decisions of partition {r.partition} are after its last checkpoint"
                )
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "partitions": [
                {
                    "partition": r.partition,
                    "decisions": r.decisions,
                    "not_chained": r.not_chained,
                    "duplicates": r.duplicates,
                    "superseded": r.superseded,
                    "superseded_runs": [
                        {"first_offset": a, "last_offset": b, "resent_at": c} for a, b, c in r.superseded_runs
                    ],
                    "checkpoints_verified": r.checkpoints,
                    "last_seq": r.last_seq,
                    "after_last_checkpoint": r.after_checkpoint,
                }
                for r in self.reports
            ],
            "findings": [vars(f) for f in self.findings],
        }


def verify(
    decisions: Iterable[Message], checkpoints: Iterable[Message], public_pem: bytes, whole: bool = True
) -> Verdict:
    """Walk each partition's chain (``decisions`` in offset order within each partition; a
    partition read from offset 0 must begin its chain at seq 1) against the checkpoints signed by
    ``public_pem``'s key. ``whole``: the decisions were read from their beginning, so a partition
    with checkpoints and no decision lost its chain. ``public_pem`` not an Ed25519 public key:
    ValueError."""
    good, forged = checkpoints_of(checkpoints, public_pem)
    walks: dict[int, ChainWalk] = {}
    for m in decisions:
        walk = walks.get(m.partition)
        if walk is None:
            mine = [cp for cp in good if cp.partition == m.partition]
            walk = walks[m.partition] = ChainWalk(m.partition, mine, from_start=m.offset == 0)
        walk.add(m.offset, m.value)
    for partition in ({cp.partition for cp in good} - set(walks)) if whole else ():  # an empty chain
        walks[partition] = ChainWalk(partition, [cp for cp in good if cp.partition == partition], True)
    return Verdict([walks[p].finish() for p in sorted(walks)], forged)
