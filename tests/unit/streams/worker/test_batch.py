"""The batch step: outputs are sent and acknowledged before the state is flushed, and a batch
that fails anywhere leaves no state behind and exits so it is replayed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from ebbtide.streams.worker.batch import EXIT_BATCH_FAILED, BatchStep
from ebbtide.streams.worker.routing import Out
from tests.unit.streams.worker.fakes import FakeProcessor


@dataclass(frozen=True)
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Broker:
    """A producer whose acknowledgements arrive only when the test releases them."""

    def __init__(self, log: list[str], refuse: bytes | None = None) -> None:
        self.log = log
        self.refuse = refuse
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, out: Out) -> asyncio.Future[None]:
        self.log.append(f"send {out.value.decode()}")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    async def acknowledge(self) -> None:
        await asyncio.sleep(0)
        for ack, (_, value) in zip(self.acks, self.sent(), strict=True):
            self.log.append(f"ack {value}")
            if value.encode() == self.refuse:
                ack.set_exception(RuntimeError("not leader for partition"))
            else:
                ack.set_result(None)

    def sent(self) -> list[tuple[str, str]]:
        return [("send", line.split(" ", 1)[1]) for line in self.log if line.startswith("send ")]


def out(value: str) -> Out:
    return Out("t.decisions", b"cust-1", value.encode())


def messages(count: int) -> list[Msg]:
    return [Msg("t.events", 0, n, b"cust-1", b"v") for n in range(count)]


def run(step: BatchStep, broker: Broker, batch: list[Msg]) -> None:
    async def main() -> None:
        running = asyncio.create_task(step(batch))
        await broker.acknowledge()
        await running

    asyncio.run(main())


def test_outputs_are_sent_and_acknowledged_before_the_state_is_flushed() -> None:
    processor = FakeProcessor({0: [out("a")], 1: [out("b"), out("c")]})
    broker = Broker(processor.log)
    exits: list[int] = []
    run(BatchStep(processor, broker.send, exits.append), broker, messages(2))
    assert processor.log == [
        "process 0",
        "process 1",
        "send a",
        "send b",
        "send c",
        "ack a",
        "ack b",
        "ack c",
        "flush",
    ]
    assert exits == []


def test_a_batch_with_nothing_to_send_is_flushed_at_once() -> None:
    processor = FakeProcessor()
    broker = Broker(processor.log)
    run(BatchStep(processor, broker.send, [].append), broker, messages(3))
    assert processor.log == ["process 0", "process 1", "process 2", "flush"]


def test_an_output_the_broker_refuses_discards_the_batch_state_and_exits_for_a_replay() -> None:
    processor = FakeProcessor({0: [out("a"), out("b")]})
    broker = Broker(processor.log, refuse=b"b")
    exits: list[int] = []
    run(BatchStep(processor, broker.send, exits.append), broker, messages(1))
    assert "flush" not in processor.log and processor.log[-1] == "discard"
    assert exits == [EXIT_BATCH_FAILED]


def test_a_failing_message_sends_nothing_of_the_batch_and_exits_for_a_replay() -> None:
    processor = FakeProcessor({0: [out("a")]}, fail_at=1)
    broker = Broker(processor.log)
    exits: list[int] = []
    run(BatchStep(processor, broker.send, exits.append), broker, messages(2))
    assert processor.log == ["process 0", "discard"]
    assert exits == [EXIT_BATCH_FAILED]


def test_by_default_a_failed_batch_leaves_the_process_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import ebbtide.streams.worker.batch as batch

    codes: list[int] = []
    monkeypatch.setattr(batch.os, "_exit", codes.append)
    monkeypatch.setattr(batch.logging, "shutdown", lambda: None)
    processor = FakeProcessor(fail_at=0)
    broker = Broker(processor.log)
    run(BatchStep(processor, broker.send), broker, messages(1))
    assert codes == [EXIT_BATCH_FAILED]


def test_the_state_written_is_awaited_after_the_flush_and_a_failure_there_exits() -> None:
    processor = FakeProcessor({0: [out("a")]})
    broker = Broker(processor.log)

    async def written() -> None:
        processor.log.append("written")

    run(BatchStep(processor, broker.send, [].append, written), broker, messages(1))
    assert processor.log == ["process 0", "send a", "ack a", "flush", "written"]

    async def refused() -> None:
        raise RuntimeError("not enough replicas")

    processor = FakeProcessor({0: [out("a")]})
    broker = Broker(processor.log)
    exits: list[int] = []
    run(BatchStep(processor, broker.send, exits.append, refused), broker, messages(1))
    assert processor.log[-2:] == ["flush", "discard"]
    assert exits == [EXIT_BATCH_FAILED]
