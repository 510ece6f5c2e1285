"""The topics' spec: retention derived from the loaded policy (not typed by hand), compaction only
where a key says what is current, durability from the settings, and the worker's Faust app
creating its changelog as the spec declares it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ebbtide.runtime.authenticity import HoldKeys
from ebbtide.runtime.kafka import pipeline_topics
from ebbtide.runtime.settings import Settings, SettingsError, Topics
from ebbtide.runtime.topic_spec import (
    CLEANUP,
    COMPACT,
    DAY_MS,
    MIN_INSYNC,
    RETENTION,
    SEGMENT,
    TopicSpec,
    changelog_topic,
)
from ebbtide.streams.policy.rules import DEFAULT_POLICY, Policy, default_policy, parse_policy
from ebbtide.streams.policy.stores import Holding, Store, StoreMap
from ebbtide.tools.topics.retention import rule_days
from ebbtide.tools.topics.spec import project_topics

SETTINGS = Settings(topic_prefix="p", app_id="app", partitions=6)
AUDIT = ("events", "clock", "receipts", "decisions", "answers", "certificates", "checkpoints")
LOG = ("dlq", "commands.customer_db", "commands.keys")


def by_name(specs: list[TopicSpec]) -> dict[str, TopicSpec]:
    return {spec.name.removeprefix("p."): spec for spec in specs}


def policy_text(**changes: str) -> str:
    """The shipped policy's text with lines replaced (``old=new``)."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return text


def days(spec: TopicSpec) -> float:
    assert spec.retention_ms is not None
    return spec.retention_ms / DAY_MS


def test_audit_topics_keep_their_messages_as_long_as_the_longest_rule() -> None:
    policy = default_policy()
    longest = max(policy.rules, key=rule_days)
    assert longest.id == "bookkeeping"  # 5 years from the end of the financial year
    assert rule_days(longest) == 5 * 366 + 366
    specs = by_name(project_topics(SETTINGS, policy, ["customer_db"]))
    for name in AUDIT:
        assert days(specs[name]) == rule_days(longest), name
        assert specs[name].cleanup == "delete"
        assert "bookkeeping" in specs[name].reason


def test_a_longer_rule_in_the_policy_lengthens_the_audit_topics() -> None:
    longer = parse_policy(policy_text(**{"keep = { years = 5 }": "keep = { years = 10 }"}))
    specs = by_name(project_topics(SETTINGS, longer, []))
    assert days(specs["decisions"]) == 10 * 366 + 366
    assert (
        days(specs["events"]) == days(specs["decisions"]) == days(specs["clock"])
    )  # sealed events: kept for the audit
    assert "sealed" in specs["events"].reason


def _map_without(categories: set[str]) -> StoreMap:
    """One store holding every category but ``categories``."""
    from ebbtide.streams.policy.rules import CATEGORIES

    holds = tuple(Holding(c, ("f",)) for c in CATEGORIES if c not in categories)
    return StoreMap("1", (Store("db", "DB", "postgres", 3_600_000, "test", holds),), "hash")


def test_receipts_and_certificates_follow_the_rules_of_what_the_stores_hold() -> None:
    policy = default_policy().with_stores(_map_without({"invoice", "payment"}))
    specs = by_name(project_topics(SETTINGS, policy, ["db"]))
    account = policy.rule("account")
    assert account is not None
    for name in ("receipts", "certificates"):  # no store holds bookkeeping data: the 3-year rules
        assert days(specs[name]) == rule_days(account) == 3 * 366
    assert days(specs["decisions"]) == 5 * 366 + 366  # every rule's decisions are recorded


def test_answers_follow_the_rules_that_keep_a_record_on_erasure() -> None:
    bookkeeping = 'keep = { years = 5 }\non_erasure = "restrict"'
    text = policy_text(**{bookkeeping: bookkeeping.replace("restrict", "delete")})
    specs = by_name(project_topics(SETTINGS, parse_policy(text), []))
    assert days(specs["answers"]) == 3 * 366  # account: the longest rule that still keeps
    assert days(specs["decisions"]) == 5 * 366 + 366


def test_the_log_window_is_the_erasure_answer_period_in_shortest_months() -> None:
    for months in (1, 2):
        policy = parse_policy(
            policy_text(**{"erasure_response_months = 1": f"erasure_response_months = {months}"})
        )
        specs = by_name(project_topics(SETTINGS, policy, ["customer_db"]))
        for name in LOG:
            spec = specs[name]
            # a segment rolls daily and goes when its newest message is retention old
            assert int(spec.config[SEGMENT]) + int(spec.config[RETENTION]) == months * 28 * DAY_MS, name
            assert spec.cleanup == "delete"


def test_only_the_state_changelog_is_compacted_and_it_never_expires() -> None:
    specs = project_topics(SETTINGS, default_policy(), ["customer_db"])
    compacted = [spec.name for spec in specs if spec.cleanup == COMPACT]
    assert compacted == [changelog_topic("app")] == ["app-state-changelog"]
    changelog = by_name(specs)["app-state-changelog"]
    assert changelog.config[RETENTION] == "-1"
    assert changelog.partitions == 6  # one changelog partition per source partition


def test_every_pipeline_topic_is_declared_with_the_settings_durability() -> None:
    settings = dataclasses.replace(SETTINGS, topic_replication_factor=5, topic_min_insync_replicas=3)
    stores = ["customer_db", "billing_db"]
    specs = project_topics(settings, default_policy(), stores)
    names = [spec.name for spec in specs]
    assert names[: len(pipeline_topics(Topics("p"), stores))] == pipeline_topics(Topics("p"), stores)
    assert names[-2:] == ["app-state-changelog", "app-__assignor-__leader"]
    for spec in specs:
        assert spec.replication_factor == 5
        assert spec.config.get(MIN_INSYNC, "3") == "3"
        assert spec.config[CLEANUP] in ("delete", "compact")
    assert by_name(specs)["app-__assignor-__leader"].partitions == 1


def test_the_default_store_list_is_the_policys_store_map() -> None:
    policy: Policy = default_policy()
    assert policy.stores is not None
    names = {spec.name for spec in project_topics(SETTINGS, policy)}
    assert {f"p.commands.{store}" for store in policy.stores.ids} <= names


def test_the_workers_faust_app_creates_its_changelog_as_declared(tmp_path: Path) -> None:
    from ebbtide import bootstrap
    from ebbtide.streams.worker.app import create_app

    settings = Settings(
        state_dir=tmp_path,
        topic_prefix="unit.t",
        app_id="unit-t",
        topic_replication_factor=3,
        topic_min_insync_replicas=2,
    )
    app = create_app(settings, bootstrap.policy(settings), HoldKeys())
    declared = by_name(project_topics(settings, default_policy(), []))["unit-t-state-changelog"]
    topic = app.tables["state"].changelog_topic
    assert topic.get_topic_name() == declared.name
    assert topic.partitions == declared.partitions
    assert app.conf.topic_replication_factor == declared.replication_factor == 3
    assert topic.compacting and not topic.deleting  # Faust writes cleanup.policy=compact
    assert {**dict(topic.config), CLEANUP: COMPACT} == dict(declared.config)
    assert declared.config[MIN_INSYNC] == "2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EBBTIDE_TOPIC_REPLICATION_FACTOR": "0"}, "EBBTIDE_TOPIC_REPLICATION_FACTOR must be at least 1"),
        (
            {"EBBTIDE_TOPIC_REPLICATION_FACTOR": "1"},  # min ISR 2 by default: more than the replicas
            "EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS must be from 1 to EBBTIDE_TOPIC_REPLICATION_FACTOR (1)",
        ),
        ({"EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS": "0"}, "EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS must be from 1"),
    ],
)
def test_durability_settings_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_the_production_values_are_the_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)
    local = Settings.from_env(
        {"EBBTIDE_TOPIC_REPLICATION_FACTOR": "1", "EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS": "1"}
    )
    assert (local.topic_replication_factor, local.topic_min_insync_replicas) == (1, 1)
