"""The Faust wiring, through ``agent.test_context()``: a batch the agent takes goes through the
processor, its output to the producer, and only then its state to the table's changelog, on the
source partition; a batch whose output the broker refuses writes no state and exits.

The app's producer is a fake that records what is sent (``send``: the outputs, awaited for the
broker's acknowledgement) and what the state table writes to its changelog (``send_soon``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import pytest

from ebbtide import bootstrap
from ebbtide.runtime.authenticity import HoldKeys
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.streams.worker import batch, state_format
from ebbtide.streams.worker.app import create_app
from ebbtide.streams.worker.batch import EXIT_BATCH_FAILED
from ebbtide.streams.worker.routing import partition_for
from ebbtide.tools.client import to_record
from tests.unit.streams.worker.harness import CLIENT_RECORD


class Producer:
    def __init__(self, refuse: bool = False, refuse_changelog: bool = False) -> None:
        self.refuse = refuse
        self.refuse_changelog = refuse_changelog
        self.log: list[tuple[str, str, bytes, int | None]] = []

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: Any, timestamp: Any, headers: Any
    ) -> asyncio.Future[None]:
        self.log.append(("send", topic, key, partition))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse:
            ack.set_exception(RuntimeError("not leader for partition"))
        else:
            ack.set_result(None)
        return ack

    def send_soon(self, pending: Any) -> None:
        message = pending.message
        self.log.append(("changelog", message.channel.get_topic_name(), message.key, message.partition))
        if self.refuse_changelog:
            pending.set_exception(RuntimeError("not enough replicas"))
        else:
            pending.set_result(None)  # acknowledged at once


def worker(tmp_path: Path, producer: Producer) -> tuple[faust.App, Topics, int]:
    """The worker's app with a fake producer; its topics and partition count."""
    # The memory store: no partition is assigned here, and the rocksdb store reads and writes only
    # the partitions the worker holds (tests/integration/streams/test_state_on_disk.py).
    settings = Settings(state_dir=tmp_path, topic_prefix="unit.app", app_id="unit-app", state_store="memory")
    app = create_app(settings, bootstrap.policy(settings), HoldKeys())  # no hold signer trusted
    app._producer = producer  # type: ignore[attr-defined]  # what app.producer returns
    return app, Topics(settings.topic_prefix), settings.partitions


async def publish(
    app: faust.App, topic: str, key: bytes, value: bytes, partition: int, done: Callable[[], bool]
) -> None:
    """Hand one message of ``topic`` to the lifecycle agent, as its consumer would, and wait (30 s
    at most: a deadline for a loaded machine, not a measure) until ``done`` says its batch step
    has finished."""
    async with app.agents["lifecycle"].test_context() as agent:
        message = agent.to_message(key, value, partition=partition)
        message.topic = topic  # the agent reads three topics; the wrapper names none of them
        channel = agent.stream().channel
        await channel.put(await channel.decode(message))
        for _ in range(3000):  # the agent takes a batch within BATCH_WAIT
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the batch step did not finish within 30 s")


def record_written(partitions: int) -> tuple[bytes, bytes, int]:
    """A record announcement: its key, its encoded value and its subject's partition."""
    key = CLIENT_RECORD["subject_id"].encode()
    value = codec_for(LIFECYCLE_EVENT).encode(to_record(CLIENT_RECORD))
    return key, value, partition_for(key, partitions)


def test_the_agent_sends_the_output_first_then_writes_the_state_on_the_source_partition(
    tmp_path: Path,
) -> None:
    producer = Producer()
    app, topics, partitions = worker(tmp_path, producer)
    key, value, partition = record_written(partitions)

    def state_written() -> bool:  # the subject's state, the partition's progress and chain head
        return sum(entry[0] == "changelog" for entry in producer.log) == 3

    asyncio.run(publish(app, topics.events, key, value, partition, state_written))
    sends = [entry for entry in producer.log if entry[0] == "send"]
    changelog = [entry for entry in producer.log if entry[0] == "changelog"]
    assert sends and {topic for _, topic, _, _ in sends} == {topics.decisions}
    assert {p for _, _, _, p in sends} == {partition}  # the decisions' chain is the source partition's
    assert producer.log == sends + changelog  # every output before any state
    assert [(k, p) for _, _, k, p in changelog] == [
        (f'"s:{partition}:cust-1"'.encode(), partition),
        (f'"c:{partition}"'.encode(), partition),
        (f'"p:{partition}"'.encode(), partition),
    ]
    stored = app.tables["state"][f"s:{partition}:cust-1"]  # bytes, in the current state format
    assert stored[0] == state_format.VERSION and state_format.decode(stored).subject_id == "cust-1"


def test_a_batch_whose_output_is_refused_writes_no_state_and_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(batch, "exit_now", exits.append)
    producer = Producer(refuse=True)
    app, topics, partitions = worker(tmp_path, producer)
    key, value, partition = record_written(partitions)
    asyncio.run(publish(app, topics.events, key, value, partition, lambda: bool(exits)))
    assert [entry[0] for entry in producer.log] and {entry[0] for entry in producer.log} == {"send"}
    assert exits == [EXIT_BATCH_FAILED]
    assert f"s:{partition}:cust-1" not in app.tables["state"]


def test_a_batch_whose_state_the_broker_refuses_exits_before_it_is_acked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state's changelog messages are awaited in the batch (Faust's own flush may give up on
    them before its commit): one refused, the worker exits, and the batch is replayed."""
    exits: list[int] = []
    monkeypatch.setattr(batch, "exit_now", exits.append)
    producer = Producer(refuse_changelog=True)
    app, topics, partitions = worker(tmp_path, producer)
    key, value, partition = record_written(partitions)
    asyncio.run(publish(app, topics.events, key, value, partition, lambda: bool(exits)))
    assert "changelog" in {entry[0] for entry in producer.log}
    assert exits == [EXIT_BATCH_FAILED]
