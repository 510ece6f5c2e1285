"""The batch step: the one place a batch's effects become durable, in this order.

1. every message of the batch goes through the processor (its state writes are staged, its
   output returned), and then the processor says what ends the batch (chain checkpoints);
2. every output is sent, and the broker's acknowledgement of each is awaited;
3. only then are the staged state writes applied: the state never says a command was sent
   before the command is on the broker;
4. and the broker's acknowledgement of those writes (the table's changelog) is awaited, so the
   batch is never acked, nor its offsets committed, before its state is durable. Faust's commit
   flushes its producer buffer first, but that flush gives up once no message has left the buffer
   for 0.1 s (a busy event loop): the commit could run ahead of the changelog, and the next owner
   of the partition would recover a state without the batch's writes, past its events.

Faust commits the batch's offsets after the step returns (an explicit last step). If any of it
fails, the worker exits at once, before Faust acks and commits a batch whose output or state is
not durable: ``take_events`` acks a batch even when its body raised, and a stopping app commits
acked offsets, which would skip events whose effect was lost. Exiting keeps the last committed
offsets, so the restarted worker replays the batch (idempotently).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from ebbtide.streams.worker.routing import Out

EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: restart me
log = logging.getLogger(__name__)


class Message(Protocol):
    """What the step reads of a consumed message (a Faust ``Message``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Processor(Protocol):
    """What the step needs of the processor (``LifecycleProcessor``)."""

    def on_message(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> list[Out]: ...

    def end_batch(self) -> list[Out]: ...

    def flush(self) -> int: ...

    def discard(self) -> None: ...


# Hands one message to the producer; the awaitable it returns is done once the broker acks it.
Send = Callable[[Out], Awaitable[Awaitable[Any]]]
# Done once the broker has every state write the flush made (the table's changelog messages).
Written = Callable[[], Awaitable[None]]


def exit_now(code: int) -> None:
    """Leave the process at once: no cleanup that could ack or commit anything."""
    logging.shutdown()
    os._exit(code)


class BatchStep:
    """The step the lifecycle agent runs for each batch it takes (see the module docstring)."""

    def __init__(
        self,
        processor: Processor,
        send: Send,
        exit: Callable[[int], None] | None = None,
        written: Written | None = None,
    ) -> None:
        """``exit`` leaves the process with a code (default: :func:`exit_now`); ``written`` (if
        given) is awaited after the flush, until the broker has the state it wrote."""
        self.processor = processor
        self.send = send
        self.exit = exit
        self.written = written

    async def __call__(self, messages: Iterable[Message]) -> None:
        """Process, send and await, then flush; on any failure, :meth:`crash`."""
        try:
            outs: list[Out] = []
            for message in messages:
                outs += self.processor.on_message(
                    message.topic, message.partition, message.offset, message.key, message.value
                )
            outs += self.processor.end_batch()  # the chain checkpoints due, sent with the rest
            if outs:
                pending = [await self.send(o) for o in outs]
                await asyncio.gather(*pending)
            self.processor.flush()
            if self.written is not None:
                await self.written()
        except BaseException as exc:
            self.crash(exc)

    def crash(self, exc: BaseException) -> None:
        """Drop the batch's staged state and exit (EXIT_BATCH_FAILED), so it is replayed."""
        self.processor.discard()
        log.critical("lifecycle batch failed (%s); exiting so the batch is replayed", type(exc).__name__)
        (self.exit or exit_now)(EXIT_BATCH_FAILED)
