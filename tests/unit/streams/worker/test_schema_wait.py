"""The wait for writer schemas before a batch (streams/worker/schema_wait.py): it waits with
backoff while the registry cannot be asked, says so on /readyz and in a gauge, splits a batch
whose new ids exceed the budget into parts without losing or reordering any message, and any
failure of it exits the worker (the batch step's contract) instead of letting Faust ack the batch."""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Any

from ebbtide.runtime.endpoints import Readiness
from ebbtide.runtime.metrics import SCHEMA_REGISTRY_WAITING
from ebbtide.schemas import InvalidMessage
from ebbtide.schemas.wire import RegistryUnavailable
from ebbtide.streams.worker.batch import EXIT_BATCH_FAILED, BatchStep
from ebbtide.streams.worker.routing import Out
from ebbtide.streams.worker.schema_wait import NEW_IDS_PER_PART, READY_CHECK, SchemaWait, process
from tests.unit.streams.worker.fakes import FakeProcessor

TOPIC = "ebbtide.events"


@dataclass(frozen=True)
class Msg:
    topic: str
    value: bytes | None
    offset: int = 0
    partition: int = 0
    key: bytes | None = None


def framed(schema_id: int, offset: int = 0, topic: str = TOPIC) -> Msg:
    return Msg(topic, b"\x00" + struct.pack(">I", schema_id) + b"\x02", offset)


class Lookup:
    """Ids below 100 are known, others unknown; the first ``down`` lookups fail as an unreachable
    registry's; ``broken`` raises something else (a bug, an answer nobody sorted)."""

    def __init__(self, down: int = 0, broken: BaseException | None = None) -> None:
        self.down = down
        self.broken = broken
        self.asked: list[int] = []
        self.decided: set[int] = set()

    def writer(self, schema_id: int) -> Any:
        self.asked.append(schema_id)
        if self.broken is not None:
            raise self.broken
        if self.down > 0:
            self.down -= 1
            raise RegistryUnavailable("the schema registry at http://test cannot be reached (ConnectError)")
        self.decided.add(schema_id)
        if schema_id >= 100:
            raise InvalidMessage(f"lifecycle_event: unknown schema id {schema_id} (the registry has none)")
        return {}

    def cached(self, schema_id: int) -> bool:
        return schema_id in self.decided


def exported() -> float:
    """The gauge's value as a scrape reads it."""
    value: float = SCHEMA_REGISTRY_WAITING.collect()[0].samples[0].value
    return value


async def collect(wait: SchemaWait, batch: list[Msg]) -> list[list[Msg]]:
    return [part async for part in wait.parts(batch)]


def test_a_batch_waits_with_backoff_and_says_so_while_the_registry_is_down() -> None:
    lookup = Lookup(down=3)
    readiness = Readiness()
    now = [0.0]
    seen: list[tuple[float, float, bool]] = []  # (backoff, gauge, ready) at each retry

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        seen.append((seconds, exported(), readiness.state()[0]))

    wait = SchemaWait(lookup, TOPIC, sleep, clock=lambda: now[0], readiness=readiness)
    assert readiness.state()[0] and exported() == 0
    batch = [
        framed(3),
        framed(109),  # unknown: decided (refused), no reason to wait on it
        Msg(TOPIC, b"\x00\x01"),  # truncated: the processor dead-letters it
        Msg(TOPIC, b"\xc3\x01" + b"\x00" * 9),  # single-object: nothing to fetch
        framed(5, topic="ebbtide.clock"),  # another topic: not an event
    ]
    assert asyncio.run(collect(wait, batch)) == [batch]  # one part, every message, in order
    assert len(seen) == 3  # three failed lookups, each waited out (the backoff: the next test)
    assert all(not ready for _, _, ready in seen)  # /readyz: not ready while it waits
    assert all(gauge > 0 for _, gauge, _ in seen) and seen[-1][1] > seen[0][1]  # the wait grows
    assert lookup.decided == {3, 109} and 5 not in lookup.asked
    ready, holding, _ = readiness.state()
    assert ready and holding[READY_CHECK] == "not waiting" and exported() == 0


def test_one_id_s_backoff_doubles_up_to_its_cap() -> None:
    lookup = Lookup(down=8)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    asyncio.run(collect(SchemaWait(lookup, TOPIC, sleep, readiness=Readiness()), [framed(3)]))
    assert slept == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0] and lookup.asked == [3] * 9


def test_a_batch_with_more_new_ids_than_the_budget_goes_on_in_parts_in_order() -> None:
    lookup = Lookup()
    batch = [framed(i % (NEW_IDS_PER_PART + 5), offset=i) for i in range(2 * NEW_IDS_PER_PART + 10)]
    parts_seen: list[tuple[list[Msg], set[int]]] = []

    async def run() -> None:
        async for part in SchemaWait(lookup, TOPIC, readiness=Readiness()).parts(batch):
            parts_seen.append((part, set(lookup.decided)))

    asyncio.run(run())
    parts = [part for part, _ in parts_seen]
    assert [m for part in parts for m in part] == batch  # nothing lost, skipped or reordered
    assert len(parts) == 2 and all(parts)
    for part, decided in parts_seen:  # each part's ids were decided before it was handed on
        assert {m.value[1:5] for m in part} <= {struct.pack(">I", i) for i in decided}
    assert len(parts_seen[0][1]) == NEW_IDS_PER_PART
    assert sorted(lookup.asked) == list(range(NEW_IDS_PER_PART + 5))  # each id asked once


async def no_send(out: Out) -> Any:
    raise AssertionError("nothing to send")


def step_and_exits() -> tuple[BatchStep, FakeProcessor, list[int]]:
    processor, exits = FakeProcessor(), []
    return BatchStep(processor, no_send, exit=exits.append), processor, exits


def test_an_unexpected_failure_of_the_wait_exits_before_the_batch_is_acked() -> None:
    step, processor, exits = step_and_exits()
    wait = SchemaWait(
        Lookup(broken=AttributeError("'NoneType' object has no attribute 'get'")),
        TOPIC,
        readiness=Readiness(),
    )
    asyncio.run(process(wait, step, [framed(3, offset=1), framed(4, offset=2)]))
    assert exits == [EXIT_BATCH_FAILED] and processor.log == ["discard"]  # nothing processed


def test_a_wait_cancelled_while_the_registry_is_down_exits_too() -> None:
    step, processor, exits = step_and_exits()

    async def run() -> None:
        readiness = Readiness()
        wait = SchemaWait(Lookup(down=10**6), TOPIC, readiness=readiness)
        task = asyncio.create_task(process(wait, step, [framed(3)]))
        deadline = time.monotonic() + 10
        while readiness.state()[0]:  # until the batch waits on the registry
            assert time.monotonic() < deadline, "the batch never waited"
            await asyncio.sleep(0.01)
        task.cancel()
        await task

    asyncio.run(run())
    assert exits == [EXIT_BATCH_FAILED] and processor.log == ["discard"]


def test_without_a_registry_the_batch_goes_to_the_step_at_once() -> None:
    step, processor, exits = step_and_exits()
    batch = [framed(3, offset=1), framed(4, offset=2)]
    asyncio.run(process(SchemaWait(None, TOPIC, readiness=Readiness()), step, batch))
    assert processor.log == ["process 1", "process 2", "flush"] and exits == []


def test_an_id_whose_refusal_expired_while_the_batch_waited_is_asked_again_before_the_part() -> None:
    class Expiring(Lookup):
        def writer(self, schema_id: int) -> Any:
            if schema_id == 3:  # the wait on 3 outlasts 109's refusal
                self.decided.discard(109)
            return super().writer(schema_id)

    lookup = Expiring()
    lookup.decided.add(109)  # refused earlier, still cached when the batch is read
    parts = asyncio.run(collect(SchemaWait(lookup, TOPIC, readiness=Readiness()), [framed(109), framed(3)]))
    assert parts == [[framed(109), framed(3)]]
    assert lookup.asked == [3, 109] and lookup.cached(109)  # decided again before the part went on
