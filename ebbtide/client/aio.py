"""The asyncio publisher (aiokafka): typed events, or their JSON form, onto the events topic.

It validates, seals, signs and encodes exactly as :class:`ebbtide.client.EventPublisher` does
(:class:`ebbtide.client.outgoing.Outgoing`); only the sending is asynchronous. The key store is a
blocking PostgreSQL client, so sealing runs on one thread of the publisher's own, off the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from ebbtide.client.events import LifecycleEvent
from ebbtide.client.outgoing import Outgoing, PublishFailed
from ebbtide.client.sealing import Keys
from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.runtime.kafka import DELIVERY_TIMEOUT, async_producer
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy

TIMED_OUT = "KafkaTimeoutError"  # the reason of a send not acknowledged in time, as kafka-python names it
CLOSE_TIMEOUT = 5.0  # seconds the producer is given to stop once what it was sent is settled


class AsyncEventPublisher:
    """Publishes lifecycle events keyed by subject from asyncio code::

        async with AsyncEventPublisher(settings) as publisher:
            await publisher.publish(event)

    The same checks and the same bounded delivery as the sync :class:`EventPublisher`:
    :meth:`publish` raises :class:`InvalidEvent` for what the worker would dead-letter;
    :meth:`flush` (also :meth:`close` and leaving the ``async with`` block) waits ``timeout``
    seconds at most for the broker's acknowledgements and raises :class:`PublishFailed` naming how
    many did not come; once one has failed, the next publish sends nothing more and raises it.
    :meth:`start` (entering the block) raises ``aiokafka.errors.KafkaError`` or TimeoutError if no
    broker answers within ``timeout`` seconds."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy | None = None,
        timeout: float = DELIVERY_TIMEOUT,
        hold_signer: MessageSigner | None = None,
        keys: Keys | None = None,
    ) -> None:
        self.outgoing = Outgoing(settings, policy, hold_signer, keys)
        self.settings = settings
        self.timeout = timeout
        self._producer: Any = None
        self._pending: list[asyncio.Future[Any]] = []
        self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ebbtide-sealing")
        self._closed = False

    async def start(self) -> None:
        """Connect to the brokers (``timeout`` seconds at most)."""
        self._producer = async_producer(self.settings, self.timeout)
        try:
            await asyncio.wait_for(self._producer.start(), self.timeout)
        except BaseException:
            await self.abort()
            raise

    async def publish(self, event: LifecycleEvent | dict[str, Any]) -> None:
        """Validate one event (typed, or its JSON form) and send it; raises :class:`InvalidEvent`,
        :class:`PublishFailed` if an earlier one failed or this one cannot be queued."""
        await self.publish_record(self.outgoing.record(event))

    async def publish_record(self, record: dict[str, Any]) -> None:
        """Send one Avro record, sealed and signed (:meth:`Outgoing.message`)."""
        if self._producer is None:
            raise RuntimeError("the publisher is not started (await start(), or use async with)")
        loop = asyncio.get_running_loop()
        key, value = await loop.run_in_executor(self._sealer, self.outgoing.message, record)
        if any(f.done() and (f.cancelled() or f.exception()) for f in self._pending):
            failure = await self._settle()  # the broker refused or dropped one: stop sending
            if failure is not None:
                raise failure
        try:
            send = self._producer.send(self.outgoing.topic, value=value, key=key)
            future = await asyncio.wait_for(send, self.timeout)
        except (KafkaError, TimeoutError) as exc:  # not queued: settle what was sent before it
            failure = await self._settle(exc)
            assert failure is not None
            raise failure from None
        self._pending.append(future)

    async def flush(self) -> None:
        """Wait (``timeout`` s at most) until the broker has acknowledged every event sent; raise
        :class:`PublishFailed` naming how many were not."""
        failure = await self._settle()
        if failure is not None:
            raise failure

    async def _settle(self, refused: BaseException | None = None) -> PublishFailed | None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.wait(pending, timeout=self.timeout)
        failures = [(i, reason) for i, f in enumerate(pending) if (reason := _reason(f)) is not None]
        if refused is not None:
            reason = TIMED_OUT if isinstance(refused, TimeoutError) else type(refused).__name__
            failures.append((len(pending), reason))
        if not failures:
            return None
        first, reason = failures[0]
        extra = 0 if refused is None else 1
        return PublishFailed(len(failures), len(pending) + extra, first, str(reason), self.timeout)

    async def close(self) -> None:
        """Flush (raising :class:`PublishFailed`), then stop the producer within a bounded time."""
        try:
            await self.flush()
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Stop without waiting for what was not acknowledged yet (it may or may not arrive)."""
        if self._closed:
            return
        self._closed = True
        self._pending = []
        try:
            if self._producer is not None:
                await asyncio.wait_for(self._producer.stop(), CLOSE_TIMEOUT)
        except (KafkaError, TimeoutError):
            pass  # given up: what it still held is reported by flush, or was never asked for
        finally:
            self._sealer.shutdown(wait=True)
            self.outgoing.close()

    async def __aenter__(self) -> AsyncEventPublisher:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.close()
        else:  # an error is on its way out: do not hide it behind a flush
            await self.abort()


def _reason(future: asyncio.Future[Any]) -> str | None:
    """Why ``future`` (a send) was not acknowledged, or None if it was."""
    if not future.done():
        return TIMED_OUT
    if future.cancelled():
        return "CancelledError"
    error = future.exception()
    return None if error is None else type(error).__name__
