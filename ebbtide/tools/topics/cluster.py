"""The project's topics on a live cluster: :func:`check` reads them and names every difference
from their specs; :func:`apply` creates the missing ones and sets the configurations that
differ, then reads them again. Neither ever changes a partition count or a replication factor
(:attr:`.drift.Difference.fixable`): those are reported, and the command exits non-zero.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.topic_spec import TopicSpec
from ebbtide.tools.topics.drift import MISSING, Difference, Observed, differences

UNKNOWN_TOPIC = 3  # Kafka's UNKNOWN_TOPIC_OR_PARTITION error code in a metadata answer


class TopicsError(Exception):
    """Why the topics could not be read or changed: one line for the operator."""


@dataclass
class Report:
    """The topics of a check or an apply: their specs, what the cluster has (after the apply),
    what still differs, and what the apply did."""

    specs: list[TopicSpec]
    observed: dict[str, Observed]
    differences: list[Difference]
    created: list[str] = field(default_factory=list)
    altered: dict[str, list[str]] = field(default_factory=dict)  # topic -> configurations set

    def status(self, name: str) -> str:
        """``ok``, ``created``, ``altered``, ``missing`` or ``drift``, for the table."""
        if any(d.topic == name for d in self.differences):
            return MISSING if name not in self.observed else "drift"
        if name in self.created:
            return "created"
        return "altered" if name in self.altered else "ok"


def _admin(settings: Settings, timeout: float) -> Any:
    ms = max(1000, round(timeout * 1000))
    try:
        return kafka.admin(settings, "ebbtide-topics", request_timeout_ms=ms, bootstrap_timeout_ms=ms)
    except KafkaError as exc:
        where = settings.kafka_bootstrap
        raise TopicsError(
            f"the broker at {where} did not answer within {timeout:g} s ({type(exc).__name__})"
        ) from None


def observe(client: Any, specs: Sequence[TopicSpec]) -> dict[str, Observed]:
    """What the cluster has of the topics of ``specs``: partitions, the fewest replicas of any
    partition, and the effective value of each configuration the spec declares."""
    described = client.describe_topics([spec.name for spec in specs])
    found = {t["name"]: t for t in described if t["error_code"] != UNKNOWN_TOPIC and t["partitions"]}
    present = [spec for spec in specs if spec.name in found]
    if not present:
        return {}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=dict.fromkeys(spec.config))
        for spec in present
    ]
    configs = client.describe_configs(resources, config_filter="all").get("topic", {})
    observed: dict[str, Observed] = {}
    for spec in present:
        partitions = found[spec.name]["partitions"]
        values = configs.get(spec.name, {})
        observed[spec.name] = Observed(
            spec.name,
            len(partitions),
            min(len(p["replica_nodes"]) for p in partitions),
            {name: str(entry["value"]) for name, entry in values.items() if entry.get("value") is not None},
        )
    return observed


def check(settings: Settings, specs: Sequence[TopicSpec], timeout: float = 30.0) -> Report:
    """Read the topics of ``specs`` and name every difference; changes nothing."""
    client = _admin(settings, timeout)
    try:
        observed = observe(client, specs)
    except KafkaError as exc:
        raise TopicsError(f"could not read the topics ({type(exc).__name__}: {exc})") from None
    finally:
        client.close()
    found = [d for spec in specs for d in differences(spec, observed.get(spec.name))]
    return Report(list(specs), observed, found)


def create(settings: Settings, specs: Sequence[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the missing topics of ``specs`` as declared; the names created. Existing topics are
    left as they are, whatever they differ in."""
    client = _admin(settings, timeout)
    try:
        _enough_brokers(client, specs)
        present = observe(client, specs)
        return _create(client, [spec for spec in specs if spec.name not in present])
    except KafkaError as exc:
        raise TopicsError(f"could not create the topics ({type(exc).__name__}: {exc})") from None
    finally:
        client.close()


def apply(settings: Settings, specs: Sequence[TopicSpec], timeout: float = 30.0) -> Report:
    """Create the missing topics of ``specs`` and set the configurations that differ; then read
    them again: the report's differences are what apply could not fix (partitions, replicas)."""
    client = _admin(settings, timeout)
    try:
        _enough_brokers(client, specs)
        before = observe(client, specs)
        created = _create(client, [spec for spec in specs if spec.name not in before])
        altered = _alter(client, specs, before)
        observed, found = _settled(client, specs, timeout if created or altered else 0.0)
    except KafkaError as exc:
        raise TopicsError(f"could not change the topics ({type(exc).__name__}: {exc})") from None
    finally:
        client.close()
    return Report(list(specs), observed, found, created, altered)


def _settled(
    client: Any, specs: Sequence[TopicSpec], timeout: float
) -> tuple[dict[str, Observed], list[Difference]]:
    """The topics once the broker shows the changes just made (it applies them from its metadata
    log a moment later): read again until only what apply cannot fix differs, ``timeout`` seconds
    at most."""
    deadline = time.monotonic() + timeout
    while True:
        observed = observe(client, specs)
        found = [d for spec in specs for d in differences(spec, observed.get(spec.name))]
        if not any(d.fixable for d in found) or time.monotonic() > deadline:
            return observed, found
        time.sleep(0.2)  # the polling interval of a bounded wait


def _enough_brokers(client: Any, specs: Sequence[TopicSpec]) -> None:
    brokers = len(client.describe_cluster()["brokers"])
    wanted = max((spec.replication_factor for spec in specs), default=1)
    if wanted > brokers:
        raise TopicsError(
            f"EBBTIDE_TOPIC_REPLICATION_FACTOR is {wanted} but the cluster has {brokers} broker(s): "
            "start more brokers, or set it (and EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS) to 1 on a "
            "one-broker development stack"
        )


def _create(client: Any, missing: Sequence[TopicSpec]) -> list[str]:
    """Create ``missing`` in one request; the names created. One made meanwhile (by a worker,
    another apply) is compared with its spec afterwards like any other."""
    created, refused = kafka.create_missing(client, missing)
    if refused:
        name, error = refused[0]
        raise TopicsError(f"the broker refused to create {name}: {error.__name__}")
    return created


def _alter(client: Any, specs: Sequence[TopicSpec], before: dict[str, Observed]) -> dict[str, list[str]]:
    """Set the configurations that differ from the spec (incrementally: others stay as they are)."""
    altered: dict[str, list[str]] = {}
    for spec in specs:
        observed = before.get(spec.name)
        if observed is None:
            continue
        changes = {
            d.what: spec.config[d.what]
            for d in differences(spec, observed)
            if d.fixable and d.what in spec.config
        }
        if not changes:
            continue
        result = client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=changes)])
        outcome = result.get("topic", {}).get(spec.name, "no answer")
        if outcome != "OK":
            raise TopicsError(
                f"the broker refused to set {', '.join(sorted(changes))} of {spec.name}: {outcome}"
            )
        altered[spec.name] = sorted(changes)
    return altered
