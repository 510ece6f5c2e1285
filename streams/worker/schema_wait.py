"""Before a batch is processed, the writer schema of each Confluent-framed event in it is fetched
from the schema registry (in a thread, off the event loop), so the processor, which decodes
synchronously, finds every one in the cache and never waits on the network.

While the registry cannot be reached (down, timing out, answering 5xx), the batch waits: it is
tried again after 1 s, then twice as long each time up to 30 s, with a warning each time. Its
events are good, only unreadable for now: dead-lettering them would lose them, and skipping them
would apply later events of the same subjects first. An id the registry answers it does not have,
or whose schema does not resolve against ours, is no reason to wait: the processor dead-letters
that event with the reason. (Should the processor still meet an id not fetched here, its lookup
goes to the registry itself; if that fails, the batch fails and the worker exits to replay it.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from ebbtide.runtime.settings import Settings
from ebbtide.schemas import LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.registry import RegistrySchemas
from ebbtide.schemas.wire import RegistryUnavailable, WriterSchemas, confluent_schema_id
from ebbtide.streams.worker.batch import Message

FIRST_RETRY = 1.0
MAX_RETRY = 30.0
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
    """Awaited with a batch's messages before the batch step; returns them once every
    Confluent-framed event of ``topic`` in them has its writer schema decided (known or refused).
    Without a registry it returns them at once (the processor dead-letters such events)."""

    def __init__(
        self,
        registry: CachedSchemas | None,
        topic: str,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self.topic = topic
        self.sleep = sleep

    async def __call__(self, batch: Iterable[Message]) -> list[Message]:
        messages = list(batch)
        if self.registry is None:
            return messages
        wanted: set[int] = set()
        for message in messages:
            if message.topic != self.topic:
                continue
            try:
                schema_id = confluent_schema_id(message.value)
            except InvalidMessage:
                continue  # a truncated header: the processor dead-letters it
            if schema_id is not None and not self.registry.cached(schema_id):
                wanted.add(schema_id)
        for schema_id in sorted(wanted):
            await self._fetch(self.registry, schema_id)
        return messages

    async def _fetch(self, registry: CachedSchemas, schema_id: int) -> None:
        delay = FIRST_RETRY
        while True:
            try:
                await asyncio.to_thread(registry.writer, schema_id)
                return
            except InvalidMessage:
                return  # remembered as refused; the processor dead-letters its events
            except RegistryUnavailable as exc:
                log.warning(
                    "%s; the batch with events of schema id %d waits, trying again in %.0fs",
                    exc.reason,
                    schema_id,
                    delay,
                )
            await self.sleep(delay)
            delay = min(delay * 2, MAX_RETRY)
