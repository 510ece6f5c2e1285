"""How a topic on the cluster differs from its spec: one :class:`Difference` per thing.

Pure: :func:`differences` compares a :class:`~ebbtide.runtime.topic_spec.TopicSpec` with what a
cluster reported (:class:`Observed`, read in :mod:`.cluster`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ebbtide.runtime.topic_spec import RETENTION, SEGMENT, TopicSpec

MISSING = "missing"
PARTITIONS = "partitions"
REPLICATION = "replication factor"


@dataclass(frozen=True)
class Observed:
    """A topic as the cluster describes it: partitions, replicas (the fewest of any partition)
    and the effective value of each configuration the spec declares."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    """One way a topic differs from its spec: ``what`` (``missing``, ``partitions``,
    ``replication factor`` or a configuration name), what the spec wants and what the cluster has."""

    topic: str
    what: str
    want: str
    have: str

    @property
    def fixable(self) -> bool:
        """Whether ``topics apply`` can fix it: a missing topic or a configuration. Never the
        partitions (fewer would lose messages; more would move subjects to other partitions, and
        the worker keeps each subject's state on its partition) nor the replicas (a reassignment)."""
        return self.what not in (PARTITIONS, REPLICATION)

    def line(self) -> str:
        if self.what == MISSING:
            return f"{self.topic}: missing"
        have, want = _shown(self.what, self.have), _shown(self.what, self.want)
        return f"{self.topic}: {self.what} is {have}, want {want}"

    def as_json(self) -> dict[str, str]:
        return {"topic": self.topic, "what": self.what, "want": self.want, "have": self.have}


def _shown(what: str, value: str) -> str:
    """A value as an operator reads it: durations in ms also in days."""
    if what in (RETENTION, SEGMENT) and value.lstrip("-").isdigit():
        ms = int(value)
        return "-1 (no limit)" if ms < 0 else f"{ms} ({ms / 86_400_000:g} days)"
    return value


def differences(spec: TopicSpec, observed: Observed | None) -> list[Difference]:
    """Every way ``observed`` (None: no such topic) differs from ``spec``: partitions, replicas and
    each configuration the spec declares; an empty list if it is as declared."""
    if observed is None:
        return [Difference(spec.name, MISSING, "present", "absent")]
    found: list[Difference] = []
    if observed.partitions != spec.partitions:
        found.append(Difference(spec.name, PARTITIONS, str(spec.partitions), str(observed.partitions)))
    if observed.replication_factor != spec.replication_factor:
        found.append(
            Difference(spec.name, REPLICATION, str(spec.replication_factor), str(observed.replication_factor))
        )
    for name, want in spec.config.items():
        have = observed.config.get(name, "unknown")
        if have != want and not (name == RETENTION and spec.retention_floor and _keeps_longer(have, want)):
            found.append(Difference(spec.name, name, want, have))
    return found


def _keeps_longer(have: str, want: str) -> bool:
    """Whether a retention.ms of ``have`` keeps every message at least as long as ``want`` (-1:
    for ever). Apply never shortens such a topic: Kafka would delete the proofs older than that."""
    try:
        kept, wanted = int(have), int(want)
    except ValueError:
        return False
    return kept < 0 or (wanted >= 0 and kept >= wanted)
