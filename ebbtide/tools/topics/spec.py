"""Every topic the project owns, as :class:`~ebbtide.runtime.topic_spec.TopicSpec`: what
``ebbtide topics apply`` creates and alters, ``topics check`` compares a cluster with, and
docs/topics.md lists (``python -m ebbtide.tools.topics.doc``).

Partitions come from EBBTIDE_PARTITIONS, replicas from EBBTIDE_TOPIC_REPLICATION_FACTOR and
``min.insync.replicas`` from EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS; each topic's cleanup policy and
retention from what its messages are and the loaded policy (:mod:`.retention`). Only a topic
whose key says what is current is compacted (the worker's state changelog): every other topic has
many messages per key (a subject has many decisions, receipts and certificates), so compaction
would keep only a subject's last one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ebbtide.runtime.kafka import pipeline_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.topic_spec import (
    CLEANUP,
    DAY_MS,
    DELETE,
    MIN_INSYNC,
    RETENTION,
    SEGMENT,
    TopicSpec,
    worker_topics,
)
from ebbtide.streams.engine.shredding import KEY_STORE
from ebbtide.streams.policy.rules import Policy, Rule
from ebbtide.tools.topics.retention import (
    Period,
    every_rule,
    held_by_a_store,
    kept_on_erasure,
    log_window,
    longest,
)

SUBJECT = "subject id (many messages per subject)"
WINDOW_WORDS = "the policy's erasure answer period, in 28-day months"

# Why each topic of the log window keeps what it keeps; the window itself is added.
LOG_REASONS = {
    "dlq": "the original bytes of refused messages (they may hold personal values), like the events; "
    "EbbtideDeadLetters alerts on the first, and `ebbtide dlq replay` must run within the window",
    "commands": "signed deletion commands: a sink reads them within its service level and the worker "
    "sends an unanswered one again, so the log only bridges an outage",
}
LOG_KEYS = {
    "dlq": "the refused message's own key (mostly a subject id)",
}
AUDIT_KEYS = {
    "clock": "`tick` (the clock picks the partition)",
    "checkpoints": "`checkpoint` (partition p holds the checkpoints of decisions partition p's chain)",
    "decisions": f"{SUBJECT}; none (empty) for a partition's `CLOCK_APPLIED` entries",
}
AUDIT_REASONS = {
    "events": "lifecycle events, whose personal values (record keys, domain names, refs) are sealed "
    "with their subject's data key, destroyed once none of the subject's copies is left (key "
    "shredding, docs/auditing.md): kept as long as the decisions, so a replay re-derives every "
    "decision from them",
    "clock": "signed ticks, one stream per partition: where each tick fell among the events is what "
    "a replay (`ebbtide audit replay`) needs to re-derive the decisions they fired, so they are kept "
    "as long as the events; they hold no personal data",
    "receipts": "the stores' signed answers: the worker reads them at once, an auditor checks them "
    "as long as a deletion they prove can be questioned",
    "decisions": "every decision with its rule, clause and basis: the change log an auditor replays "
    "(seed 003 Vedlegg 1)",
    "answers": "each erasure answer says what is kept and until when: it outlives the longest "
    "promise it can make",
    "certificates": "signed deletion certificates that customers and auditors verify",
    "checkpoints": "the worker's signed checkpoints of each decisions partition's hash chain "
    "(`ebbtide audit verify`): kept as long as the decisions they vouch for",
}


CDC_REASON = (
    "Debezium's change events of the captured tables (docs/cdc.md): record keys, subject ids and "
    "refs in clear. Its one reader, `ebbtide cdc run`, commits its offsets as it goes, so the log "
    "only bridges the translator's outage, and is where a CDC dead letter (reason and coordinates "
    "only) is read again"
)


def cdc_topic(settings: Settings) -> TopicSpec:
    """``<prefix>.cdc``, where the connector writes every captured table's changes: deleted by
    time, daily segments, so no message stays longer than EBBTIDE_CDC_RETENTION_DAYS."""
    days = settings.cdc_retention_days
    return TopicSpec(
        f"{settings.topic_prefix}.cdc",
        settings.partitions,
        settings.topic_replication_factor,
        {
            CLEANUP: DELETE,
            RETENTION: str((days - 1) * DAY_MS),
            SEGMENT: str(DAY_MS),
            MIN_INSYNC: str(settings.topic_min_insync_replicas),
        },
        key="the row's primary key (Debezium's JSON)",
        reason=f"{CDC_REASON}; at most {days} days (EBBTIDE_CDC_RETENTION_DAYS)",
    )


def project_topics(
    settings: Settings, policy: Policy, stores: Iterable[str] | None = None
) -> list[TopicSpec]:
    """Every topic of the project: the pipeline's (the command topics of ``stores``, default every
    store of the policy's store map) and the worker's own (its changelog and leader topic)."""
    topics = Topics(settings.topic_prefix)
    chosen = list(stores) if stores is not None else list(policy.stores.ids if policy.stores else ())
    window = log_window(policy)
    if KEY_STORE not in chosen:  # the key store's commands (shredding): not a store of the map
        chosen.append(KEY_STORE)
    audit: dict[str, Callable[[Rule], bool]] = {
        "events": every_rule,
        "clock": every_rule,  # as the events: a replay needs both
        "receipts": held_by_a_store(policy),
        "decisions": every_rule,
        "answers": kept_on_erasure,
        "certificates": held_by_a_store(policy),
        "checkpoints": every_rule,  # as the decisions
    }
    specs: list[TopicSpec] = []
    for name in pipeline_topics(topics, chosen):
        role = _role(topics, name)
        if role in audit:
            period = longest(policy, audit[role])
            specs.append(
                _audit_topic(settings, name, period, AUDIT_REASONS[role], AUDIT_KEYS.get(role, SUBJECT))
            )
        else:
            specs.append(_log_topic(settings, name, role, window))
    return [*specs, cdc_topic(settings), *worker_topics(settings)]


def _role(topics: Topics, name: str) -> str:
    """``events``, ``clock``, ... or ``commands``: what a pipeline topic of ``topics`` is."""
    suffix = name.removeprefix(f"{topics.prefix}.")
    return "commands" if suffix.startswith("commands.") else suffix


def _log_topic(settings: Settings, name: str, role: str, window: Period) -> TopicSpec:
    """Deleted by time: a segment rolls daily and goes once its newest message is a day short of
    the window old, so no message stays longer than the window."""
    return TopicSpec(
        name,
        settings.partitions,
        settings.topic_replication_factor,
        {
            CLEANUP: DELETE,
            RETENTION: str(window.ms - DAY_MS),
            SEGMENT: str(DAY_MS),
            MIN_INSYNC: str(settings.topic_min_insync_replicas),
        },
        key=LOG_KEYS.get(role, SUBJECT),
        reason=f"{LOG_REASONS[role]}; at most {window.why()} ({WINDOW_WORDS})",
    )


def _audit_topic(settings: Settings, name: str, period: Period, reason: str, key: str) -> TopicSpec:
    return TopicSpec(
        name,
        settings.partitions,
        settings.topic_replication_factor,
        {
            CLEANUP: DELETE,
            RETENTION: str(period.ms),
            MIN_INSYNC: str(settings.topic_min_insync_replicas),
        },
        key=key,
        reason=f"{reason}; at least {period.why()}",
        retention_floor=True,
    )
