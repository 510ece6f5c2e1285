"""Publishing never loses an event silently: what the broker refuses is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.admin import NewTopic

from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Topics
from ebbtide.tools.client import EventPublisher, PublishFailed
from tests.support import EVENT, unique_settings


def test_events_the_broker_refuses_are_reported_not_dropped(stack: tuple[str, str], tmp_path: Path) -> None:
    settings = unique_settings(stack[0], tmp_path)
    admin = kafka.admin(settings, client_id=None)
    admin.create_topics(
        [NewTopic(Topics(settings.topic_prefix).events, 1, 1, topic_configs={"max.message.bytes": "200"})]
    )
    admin.close()
    publisher = EventPublisher(settings)
    publisher.publish(EVENT)  # small enough
    publisher.publish({**EVENT, "event_id": "e2", "producer": "x" * 300})  # too large for this topic
    with pytest.raises(PublishFailed, match=r"of 2 event\(s\) not acknowledged by the broker"):
        publisher.close()
