"""Before a batch is processed, the writer schema of each Confluent-framed event in it is fetched
from the schema registry (in threads, off the event loop), so the processor, which decodes
synchronously, finds every one in the cache and never waits on the network.

New ids are looked up :data:`LOOKUPS_AT_ONCE` at a time, and at most :data:`NEW_IDS_PER_PART` per
part of the batch: the batch goes to the batch step in parts, in order, each part's new ids
fetched before it is processed. A flood of events with fresh ids (each costs one request) thus
still costs its requests, but in parallel, and the events before them are processed and durable
first; nothing is skipped or dead-lettered for it.

While the registry cannot be asked (down, timing out, answering 5xx, or 401/403/408/429), the
batch waits: it is tried again after 1 s, then twice as long each time up to 30 s, with a warning
each time. Its events are good, only unreadable for now: dead-lettering them would lose them, and
skipping them would apply later events of the same subjects first. While it waits, the gauge
``ebbtide_schema_registry_waiting_seconds`` says for how long and the worker's /readyz check
``schema_registry`` is not ready. An id the registry has not (404), refuses (any other 4xx), or
whose schema does not resolve against ours is no reason to wait: the processor dead-letters that
event with the reason. (Should the processor still meet an id not fetched here, its lookup goes
to the registry itself; if that fails, the batch fails and the worker exits to replay it.)

:func:`process` runs the wait and the step under the step's failure contract: any failure of the
wait (cancellation included) exits the worker (``BatchStep.crash``) before Faust acks the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol

from ebbtide.runtime.endpoints import READINESS, Readiness
from ebbtide.runtime.metrics import SCHEMA_REGISTRY_WAITING
from ebbtide.runtime.settings import Settings
from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.registry import RegistrySchemas
from ebbtide.schemas.wire import RegistryUnavailable, WriterSchemas, confluent_schema_id
from ebbtide.streams.worker.batch import BatchStep, Message

FIRST_RETRY = 1.0
MAX_RETRY = 30.0
NEW_IDS_PER_PART = 16  # new schema ids fetched before the events read so far are processed
LOOKUPS_AT_ONCE = 4  # registry requests in flight at once
READY_CHECK = "schema_registry"  # the worker's /readyz check while a batch waits on the registry
log = logging.getLogger(__name__)


class CachedSchemas(WriterSchemas, Protocol):
    """Writer schemas that say which ids need no request (``RegistrySchemas``)."""

    def cached(self, schema_id: int) -> bool: ...


def registry_schemas(settings: Settings) -> RegistrySchemas | None:
    """The writer schemas of Confluent-framed events, from EBBTIDE_SCHEMA_REGISTRY_URL (None: unset)."""
    if not settings.schema_registry_url:
        return None
    return RegistrySchemas(settings.schema_registry_url, codec_for(LIFECYCLE_EVENT))


class SchemaWait:
    """Splits a batch's messages into parts (:meth:`parts`), each handed on once every
    Confluent-framed event of ``topic`` in it has its writer schema decided (known or refused).
    Without a registry the batch is one part at once (the processor dead-letters such events)."""

    def __init__(
        self,
        registry: CachedSchemas | None,
        topic: str,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        readiness: Readiness = READINESS,
    ) -> None:
        self.registry = registry
        self.topic = topic
        self.sleep = sleep
        self.clock = clock
        self.readiness = readiness
        self._since: float | None = None  # when the current wait on the registry began
        if registry is not None:
            readiness.ready(READY_CHECK, "not waiting")
            SCHEMA_REGISTRY_WAITING.set_function(self.waited)

    def waited(self) -> float:
        """Seconds the current batch has waited on the registry (0: not waiting)."""
        since = self._since
        return 0.0 if since is None else self.clock() - since

    async def parts(self, batch: Iterable[Message]) -> AsyncIterator[list[Message]]:
        """``batch``'s messages in order, in parts of at most :data:`NEW_IDS_PER_PART` new ids,
        each yielded once every id in it is decided."""
        messages = list(batch)
        start = 0
        ids: set[int] = set()  # the part's schema ids
        new: set[int] = set()  # of those, the ones not decided when met
        for index, message in enumerate(messages):
            schema_id = self._schema_id(message)
            if schema_id is None or schema_id in ids:
                continue
            if self.registry is not None and not self.registry.cached(schema_id):
                if len(new) == NEW_IDS_PER_PART:
                    await self._decide(ids)
                    yield messages[start:index]
                    start, ids, new = index, set(), set()
                new.add(schema_id)
            ids.add(schema_id)
        await self._decide(ids)
        yield messages[start:]

    def _schema_id(self, message: Message) -> int | None:
        """The schema id of a Confluent-framed event of ``topic``, else None."""
        if self.registry is None or message.topic != self.topic:
            return None
        try:
            return confluent_schema_id(message.value)
        except InvalidMessage:
            return None  # a truncated header: the processor dead-letters it

    async def _decide(self, wanted: set[int]) -> None:
        """Fetch those of ``wanted`` not decided, :data:`LOOKUPS_AT_ONCE` at a time, until each
        is (again if its refusal expired while others were waited for)."""
        registry = self.registry
        if registry is None:
            return
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        try:
            while pending := sorted(i for i in wanted if not registry.cached(i)):
                async with asyncio.TaskGroup() as group:
                    for schema_id in pending:
                        group.create_task(self._fetch(registry, schema_id, gate))
        finally:
            if self._since is not None:
                self._since = None
                self.readiness.ready(READY_CHECK, "not waiting")

    async def _fetch(self, registry: CachedSchemas, schema_id: int, gate: asyncio.Semaphore) -> None:
        delay = FIRST_RETRY
        while True:
            try:
                async with gate:
                    await asyncio.to_thread(registry.writer, schema_id)
                return
            except InvalidMessage:
                return  # remembered as refused; the processor dead-letters its events
            except RegistryUnavailable as exc:
                if self._since is None:
                    self._since = self.clock()
                self.readiness.waiting(READY_CHECK, f"a batch waits on the schema registry: {exc.reason}")
                log.warning(
                    "%s; the batch with events of schema id %d waits, trying again in %.0fs",
                    exc.reason,
                    schema_id,
                    delay,
                )
            await self.sleep(delay)
            delay = min(delay * 2, MAX_RETRY)


async def process(wait: SchemaWait, step: BatchStep, batch: Iterable[Message]) -> None:
    """``batch`` through ``wait`` and ``step``, part by part, under the step's failure contract:
    any failure of the wait, cancellation included, is the batch's (``step.crash``: the worker
    exits before Faust acks the batch, which is replayed after the restart)."""
    try:
        async for part in wait.parts(batch):
            await step(part)
    except BaseException as exc:
        step.crash(exc)
