"""What one of the project's Kafka topics must be: a :class:`TopicSpec`.

The spec of every topic is assembled in :mod:`ebbtide.tools.topics.spec` (the pipeline's topics
need the policy for their retention); this module holds the shape that the Kafka client factory
(:func:`ebbtide.runtime.kafka.create_topics`) creates topics from, and the one spec the worker
needs where its Faust app is built: its state table's changelog, compacted, and Faust's leader
topic. Topic configuration names are Kafka's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ebbtide.runtime.settings import Settings

CLEANUP = "cleanup.policy"
RETENTION = "retention.ms"
MIN_INSYNC = "min.insync.replicas"
SEGMENT = "segment.ms"
COMPACT = "compact"
DELETE = "delete"
FOREVER = -1  # retention.ms: no time limit
DAY_MS = 86_400_000

STATE_TABLE = "state"  # the worker's one Faust table (streams.worker.app)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the project declares it: partitions, replicas and topic configuration (each
    value as Kafka's DescribeConfigs shows it), with what its key says and why it is kept so."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)
    key: str = ""
    reason: str = ""
    # retention.ms is a floor, not a ceiling: a topic an auditor needs (decisions, receipts,
    # answers, certificates) may keep its messages longer, or for ever (-1), and is never shortened
    # to the declaration. A topic holding personal values keeps its exact declared retention.
    retention_floor: bool = False

    @property
    def cleanup(self) -> str:
        return self.config.get(CLEANUP, DELETE)

    @property
    def retention_ms(self) -> int | None:
        """retention.ms as declared (-1: no time limit; None: not declared)."""
        value = self.config.get(RETENTION)
        return None if value is None else int(value)


def changelog_topic(app_id: str) -> str:
    """The name Faust gives the changelog of the worker's state table."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def leader_topic(app_id: str) -> str:
    """The name of Faust's leader-election topic of the worker's group."""
    return f"{app_id}-__assignor-__leader"


def changelog_config(settings: Settings) -> dict[str, str]:
    """The state changelog's topic configuration: compacted (the latest value of each key is the
    state), never expired by time, each write on EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS replicas. The
    worker's Faust app creates its changelog with it (``extra_topic_configs`` of the table)."""
    return {
        CLEANUP: COMPACT,
        RETENTION: str(FOREVER),
        MIN_INSYNC: str(settings.topic_min_insync_replicas),
    }


def worker_topics(settings: Settings) -> list[TopicSpec]:
    """The topics the worker's Faust app creates for itself: its state changelog and the leader
    topic of its group."""
    return [
        TopicSpec(
            changelog_topic(settings.app_id),
            settings.partitions,
            settings.topic_replication_factor,
            changelog_config(settings),
            key="a state key of the worker (subject, partition clock, held certificate): its latest "
            "value is the state",
            reason="the worker's state (every record's deadline, every open duty) is rebuilt from it "
            "after a restart: compacted, so the latest value of each key stays for good and older "
            "ones go",
        ),
        TopicSpec(
            leader_topic(settings.app_id),
            1,
            settings.topic_replication_factor,
            {CLEANUP: DELETE},
            key="none (nothing is written to it)",
            reason="Faust's: its one partition elects the leader of the worker group; it holds no "
            "messages, so its retention is the broker's default",
        ),
    ]
