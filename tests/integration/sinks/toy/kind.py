"""The ``toy`` kind: one store whose records live in memory, answered like any other store."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.kind import SinkGroup, SinkKind, one_process, one_store
from ebbtide.sinks.base.loop import CommandSink
from ebbtide.sinks.base.receipts import Executed, executed

STORE = "toy_store"
CATEGORY = "client"
RECORDS: dict[str, set[str]] = {}  # the store: its record keys, by category


class ToyUnavailable(Exception):
    """The toy store cannot be reached now (the test said so): the loop takes the batch again."""


class ToyExecutor:
    """A :class:`~sinks.base.executor.BatchExecutor` over :data:`RECORDS`. It keeps the receipt
    it sent per command id (its "tracking table"), so a repeated command gets it back as sent."""

    store = STORE
    transient: tuple[type[BaseException], ...] = (ToyUnavailable,)
    receipt_signer: MessageSigner | None = None

    def __init__(self) -> None:
        self.answered: dict[str, Executed] = {}
        self.unavailable = 0  # batches still to refuse with ToyUnavailable

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[Executed]:
        if self.unavailable:
            self.unavailable -= 1
            raise ToyUnavailable("the toy store is down")
        out: list[Executed] = []
        for command in commands:
            earlier = self.answered.get(command["command_id"])
            if earlier is not None:
                out.append(Executed(earlier.receipt, earlier.encoded, repeated=True))
                continue
            held = RECORDS.setdefault(command["category"], set())
            found = command["record_key"] in held
            held.discard(command["record_key"])
            done = executed(
                command,
                "DELETED" if found else "NOT_FOUND",
                int(found),
                None,
                datetime.now(UTC),
                signer=self.receipt_signer,
            )
            self.answered[command["command_id"]] = done
            out.append(done)
        return out

    def recover(self) -> None:
        """Nothing to reconnect: the next batch is tried as it comes."""

    def close(self) -> None:
        self.answered.clear()


def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    return SinkGroup([CommandSink(settings, ToyExecutor(), stop=stop)], stop)


KIND = SinkKind(
    name="toy",
    doc="records in memory (tests only)",
    build=build,
    covers=one_store("toy", STORE, CATEGORY),
    processes=one_process("toy sink", "toy"),
    code="tests/integration/sinks/toy/",
)
