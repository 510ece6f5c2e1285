"""The asyncio publisher's delivery accounting, on a producer that fails as a dying broker does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError

from ebbtide.client import AsyncEventPublisher, InvalidEvent, PublishFailed, aio
from ebbtide.runtime.settings import Settings
from tests.support import EVENT

pytestmark = pytest.mark.unit


class DyingBroker:
    """Acknowledges the first ``alive`` sends, fails the next with RequestTimedOutError; with
    ``refuse``, a send after those raises at once (the queue cannot take it)."""

    def __init__(self, alive: int, refuse: bool = False) -> None:
        self.alive, self.refuse = alive, refuse
        self.sent: list[bytes] = []
        self.stopped = False

    async def start(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        if self.refuse and len(self.sent) >= self.alive:
            raise KafkaTimeoutError()
        self.sent.append(key)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if len(self.sent) <= self.alive:
            future.set_result(None)
        else:
            future.set_exception(RequestTimedOutError())
        return future

    async def stop(self) -> None:
        self.stopped = True


def publish(broker: DyingBroker, count: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, PublishFailed]:
    """Publish ``count`` events; how many publish() calls returned, and the failure raised."""
    monkeypatch.setattr(aio, "async_producer", lambda settings, timeout: broker)
    published = 0

    async def run() -> None:
        nonlocal published
        async with AsyncEventPublisher(Settings.from_env({}), timeout=2) as publisher:
            for n in range(count):
                await publisher.publish({**EVENT, "event_id": f"e{n}"})
                published += 1

    with pytest.raises(PublishFailed) as failed:
        asyncio.run(run())
    assert broker.stopped
    return published, failed.value


def test_after_a_failed_send_nothing_more_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = DyingBroker(alive=3)
    published, failed = publish(broker, 10, monkeypatch)
    assert len(broker.sent) == 4  # the fourth failed: the fifth publish sends nothing and raises
    assert published == 4
    assert (failed.failed, failed.total, failed.first, failed.reason) == (1, 4, 3, "RequestTimedOutError")


def test_a_send_the_producer_cannot_queue_counts_with_those_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = DyingBroker(alive=2, refuse=True)
    published, failed = publish(broker, 5, monkeypatch)
    assert published == 2
    assert (failed.failed, failed.total, failed.first) == (1, 3, 2)
    assert str(failed) == "1 of 3 event(s) not acknowledged by the broker within 2 s (KafkaTimeoutError)"


def test_an_invalid_event_is_refused_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = DyingBroker(alive=5)
    monkeypatch.setattr(aio, "async_producer", lambda settings, timeout: broker)

    async def run() -> None:
        async with AsyncEventPublisher(Settings.from_env({}), timeout=2) as publisher:
            await publisher.publish({**EVENT, "subject_id": ""})

    with pytest.raises(InvalidEvent, match="field subject_id"):
        asyncio.run(run())
    assert broker.sent == [] and broker.stopped
