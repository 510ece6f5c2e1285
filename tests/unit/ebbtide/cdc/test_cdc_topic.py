"""The CDC topic is declared with a short retention: it holds the captured rows' values in clear."""

from __future__ import annotations

import pytest

from ebbtide.cdc.translator import cdc_topic as topic_name
from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.runtime.topic_spec import CLEANUP, DAY_MS, RETENTION, SEGMENT
from ebbtide.streams.policy.rules import default_policy
from ebbtide.tools.topics.spec import cdc_topic, project_topics


def test_the_cdc_topic_keeps_its_changes_at_most_the_set_days_and_is_a_project_topic() -> None:
    settings = Settings.from_env({"EBBTIDE_TOPIC_PREFIX": "p", "EBBTIDE_CDC_RETENTION_DAYS": "3"})
    spec = cdc_topic(settings)
    assert spec.name == topic_name(settings) == "p.cdc"
    # a daily segment goes when its newest message is the retention old: at most 3 days
    assert spec.config[RETENTION] == str(2 * DAY_MS) and spec.config[SEGMENT] == str(DAY_MS)
    assert spec.config[CLEANUP] == "delete" and not spec.retention_floor  # apply brings a longer one down
    assert "in clear" in spec.reason and "at most 3 days (EBBTIDE_CDC_RETENTION_DAYS)" in spec.reason
    assert spec in project_topics(settings, default_policy(), [])
    assert cdc_topic(Settings()).config[RETENTION] == str(6 * DAY_MS)  # 7 days by default


@pytest.mark.parametrize("days", ["1", "0", "-7"])
def test_a_cdc_retention_under_two_days_is_refused_naming_the_setting(days: str) -> None:
    with pytest.raises(SettingsError, match="EBBTIDE_CDC_RETENTION_DAYS must be at least 2"):
        Settings.from_env({"EBBTIDE_CDC_RETENTION_DAYS": days})
