"""`ebbtide topics apply|check` against the real broker: apply declares a fresh prefix's topics and
check passes; configurations changed behind its back are reported, one line each, exit 1, and
apply sets them back; a partition count apply must not change is reported, not changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from ebbtide.cli import main
from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.topic_spec import changelog_topic
from tests.support import drop_topics, unique_settings, wait_until

STORE = "customer_db"


@pytest.fixture
def fresh(stack: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A prefix and app id no topic has yet, in the environment the command reads; its topics are
    deleted afterwards."""
    settings = unique_settings(stack[0], tmp_path)
    for name, value in {
        "EBBTIDE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "EBBTIDE_TOPIC_PREFIX": settings.topic_prefix,
        "EBBTIDE_APP_ID": settings.app_id,
        "EBBTIDE_PARTITIONS": str(settings.partitions),
        "EBBTIDE_TOPIC_REPLICATION_FACTOR": "1",  # the local stack has one broker
        "EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EBBTIDE_STORE_MAP", raising=False)
    yield settings
    drop_topics(settings)


def topics(action: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Run ``ebbtide topics ACTION --store customer_db``: its exit status and the difference lines
    it printed (``<topic>: ...``, after the table)."""
    code = main(["topics", action, "--store", STORE])
    out = capsys.readouterr().out.splitlines()
    return code, [line for line in out if line.split(" ", 1)[0].endswith(":")]


def set_configs(settings: Settings, changes: dict[str, dict[str, str]]) -> None:
    """Change topic configurations with the admin client, and wait until the broker shows them
    (it applies them from its metadata log a moment after it answers)."""
    admin = kafka.admin(settings, client_id=None)
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, configs=c) for name, c in changes.items()]
    try:
        answer = admin.alter_configs(resources)
        assert set(answer["topic"].values()) == {"OK"}, answer

        def shown() -> bool:
            found = admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, n, configs=dict.fromkeys(c))
                    for n, c in changes.items()
                ],
                config_filter="all",
            )["topic"]
            return all(
                found[n][key]["value"] == value for n, c in changes.items() for key, value in c.items()
            )

        wait_until(shown, 30, "the broker to show the changed configurations")
    finally:
        admin.close()


def test_apply_then_check_then_drift_then_apply(fresh: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    names = Topics(fresh.topic_prefix)
    code, lines = topics("check", capsys)
    assert code == 1
    assert f"{names.events}: missing" in lines and len(lines) == 13  # pipeline 10, CDC 1, worker 2

    assert topics("apply", capsys) == (0, [])
    code = main(["topics", "check", "--store", STORE, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (code, report["ok"], report["differences"]) == (0, True, [])
    assert {t["status"] for t in report["topics"]} == {"ok"} and len(report["topics"]) == 13

    changelog = changelog_topic(fresh.app_id)
    set_configs(
        fresh,
        {
            names.dlq: {"retention.ms": "604800000"},
            names.decisions: {"cleanup.policy": "compact"},
            changelog: {"cleanup.policy": "delete"},
            names.certificates: {"retention.ms": "-1"},  # kept for ever: longer than declared is fine
        },
    )
    code, lines = topics("check", capsys)
    assert code == 1
    assert sorted(lines) == sorted(
        [
            f"{names.dlq}: retention.ms is 604800000 (7 days), want 2332800000 (27 days)",
            f"{names.decisions}: cleanup.policy is compact, want delete",
            f"{changelog}: cleanup.policy is delete, want compact",
        ]
    )

    assert topics("apply", capsys) == (0, [])
    assert topics("check", capsys) == (0, [])
    admin = kafka.admin(fresh, client_id=None)
    try:  # apply did not shorten the certificates' retention back to the declared floor
        shown = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, names.certificates, configs={"retention.ms": None})],
            config_filter="all",
        )["topic"][names.certificates]["retention.ms"]["value"]
    finally:
        admin.close()
    assert shown == "-1"


def test_apply_never_changes_a_partition_count(fresh: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert topics("apply", capsys)[0] == 0
    commands = Topics(fresh.topic_prefix).commands(STORE)
    admin = kafka.admin(fresh, client_id=None)
    try:
        admin.create_partitions({commands: fresh.partitions + 1})
        wait_until(
            lambda: len(admin.describe_topics([commands])[0]["partitions"]) == fresh.partitions + 1,
            30,
            "the broker to show the new partition",
        )
    finally:
        admin.close()
    assert main(["topics", "apply", "--store", STORE]) == 1
    out, err = capsys.readouterr()
    line = f"{commands}: partitions is {fresh.partitions + 1}, want {fresh.partitions}"
    assert line in out.splitlines()
    assert "1 difference(s) (apply cannot change these" in err
    assert topics("check", capsys) == (1, [line])  # still there: apply changed nothing


def test_a_topic_the_broker_refuses_is_reported_with_its_reason_not_waited_for(fresh: Settings) -> None:
    """Both ways of creating topics (the project's ``topics create`` and the runtime's
    create_topics of the demo and the tests) share one request: a refusal names the broker's
    error at once instead of waiting for a topic that will never come."""
    from kafka.errors import InvalidConfigurationError

    from ebbtide.runtime.topic_spec import TopicSpec
    from ebbtide.tools.topics.cluster import TopicsError, create

    names = Topics(fresh.topic_prefix)
    refused = TopicSpec(names.dlq, 1, 1, {"cleanup.policy": "no-such-policy"})
    with pytest.raises(TopicsError, match=f"refused to create {names.dlq}: InvalidConfigurationError"):
        create(fresh, [refused])
    with pytest.raises(InvalidConfigurationError, match=names.dlq):
        kafka.create_topics(fresh, [refused])
    assert kafka.create_topics(fresh, [names.dlq]) == [names.dlq]  # a good one is still made
