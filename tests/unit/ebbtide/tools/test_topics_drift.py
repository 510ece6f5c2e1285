"""The drift comparison: one difference per way a topic on the cluster differs from its spec, and
which of them ``topics apply`` may fix."""

from __future__ import annotations

from ebbtide.runtime.topic_spec import TopicSpec
from ebbtide.tools.topics.drift import Difference, Observed, differences

SPEC = TopicSpec(
    "p.events",
    4,
    3,
    {"cleanup.policy": "delete", "retention.ms": "2332800000", "min.insync.replicas": "2"},
)


def observed(partitions: int = 4, replicas: int = 3, **config: str) -> Observed:
    values = {"cleanup.policy": "delete", "retention.ms": "2332800000", "min.insync.replicas": "2"}
    values.update({name.replace("_", "."): value for name, value in config.items()})
    return Observed("p.events", partitions, replicas, values)


def test_a_topic_as_declared_has_no_difference() -> None:
    assert differences(SPEC, observed()) == []


def test_a_missing_topic_is_one_difference_apply_can_fix() -> None:
    (missing,) = differences(SPEC, None)
    assert missing.line() == "p.events: missing"
    assert missing.fixable


def test_each_difference_is_one_line_naming_what_the_cluster_has_and_what_is_wanted() -> None:
    found = differences(
        SPEC,
        observed(
            partitions=2,
            replicas=1,
            cleanup_policy="compact",
            retention_ms="604800000",
            min_insync_replicas="1",
        ),
    )
    assert [d.line() for d in found] == [
        "p.events: partitions is 2, want 4",
        "p.events: replication factor is 1, want 3",
        "p.events: cleanup.policy is compact, want delete",
        "p.events: retention.ms is 604800000 (7 days), want 2332800000 (27 days)",
        "p.events: min.insync.replicas is 1, want 2",
    ]
    assert [d.fixable for d in found] == [False, False, True, True, True]


def test_more_partitions_than_declared_is_drift_too_and_not_fixable() -> None:
    (found,) = differences(SPEC, observed(partitions=8))
    assert found == Difference("p.events", "partitions", "4", "8")
    assert not found.fixable


def test_a_configuration_the_cluster_did_not_report_is_a_difference() -> None:
    seen = Observed("p.events", 4, 3, {"cleanup.policy": "delete", "retention.ms": "2332800000"})
    (found,) = differences(SPEC, seen)
    assert found.as_json() == {
        "topic": "p.events",
        "what": "min.insync.replicas",
        "want": "2",
        "have": "unknown",
    }


def test_configurations_the_spec_does_not_declare_are_not_compared() -> None:
    leader = TopicSpec("app-__assignor-__leader", 1, 3, {"cleanup.policy": "delete"})
    seen = Observed(leader.name, 1, 3, {"cleanup.policy": "delete", "retention.ms": "1"})
    assert differences(leader, seen) == []


def test_no_time_limit_is_shown_as_such() -> None:
    changelog = TopicSpec("app-state-changelog", 4, 3, {"retention.ms": "-1"})
    (found,) = differences(changelog, Observed(changelog.name, 4, 3, {"retention.ms": "604800000"}))
    assert found.line() == "app-state-changelog: retention.ms is 604800000 (7 days), want -1 (no limit)"


AUDIT = TopicSpec(
    "p.receipts",
    4,
    3,
    {"cleanup.policy": "delete", "retention.ms": "2332800000", "min.insync.replicas": "2"},
    retention_floor=True,
)


def test_a_topic_with_personal_values_keeps_exactly_its_retention_not_longer() -> None:
    (found,) = differences(SPEC, observed(retention_ms="-1"))
    assert (found.what, found.have) == ("retention.ms", "-1")
    (found,) = differences(SPEC, observed(retention_ms="9999999999"))
    assert found.fixable  # apply brings it back down: personal values leave the log in time


def test_an_audit_topic_may_keep_its_proofs_longer_or_for_ever_and_apply_never_shortens_it() -> None:
    assert differences(AUDIT, observed(retention_ms="-1")) == []
    assert differences(AUDIT, observed(retention_ms="9999999999")) == []
    (shorter,) = differences(AUDIT, observed(retention_ms="604800000"))
    assert (shorter.what, shorter.want, shorter.fixable) == ("retention.ms", "2332800000", True)


def test_the_audit_topics_are_the_ones_whose_retention_is_a_floor() -> None:
    from ebbtide.runtime.settings import Settings
    from ebbtide.tools.topics import declared

    floors = {spec.name.split(".")[-1] for spec in declared(Settings()) if spec.retention_floor}
    assert floors == {"events", "clock", "decisions", "receipts", "answers", "certificates", "checkpoints"}
