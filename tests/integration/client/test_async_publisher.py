"""The asyncio publisher never loses an event silently: what the broker refuses is reported."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kafka.admin import NewTopic

from ebbtide.client import AsyncEventPublisher, PublishFailed
from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Topics
from tests.support import EVENT, drop_topics, unique_settings


def test_events_the_broker_refuses_are_reported_not_dropped(stack: tuple[str, str], tmp_path: Path) -> None:
    settings = unique_settings(stack[0], tmp_path)
    admin = kafka.admin(settings, client_id=None)
    admin.create_topics(
        [NewTopic(Topics(settings.topic_prefix).events, 1, 1, topic_configs={"max.message.bytes": "200"})]
    )
    admin.close()

    async def publish() -> None:
        async with AsyncEventPublisher(settings, timeout=10) as publisher:
            await publisher.publish(EVENT)  # small enough
            await publisher.flush()  # acknowledged (in one batch with the next, both would be refused)
            await publisher.publish({**EVENT, "event_id": "e2", "producer": "x" * 300})  # too large here

    try:
        refused = r"^1 of 1 event\(s\) not acknowledged by the broker \(MessageSizeTooLargeError\)$"
        with pytest.raises(PublishFailed, match=refused) as failed:
            asyncio.run(publish())
        assert failed.value.first == 0
    finally:
        drop_topics(settings, changelogs=False)
