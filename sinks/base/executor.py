"""The port every kind of store implements: a batch of commands in, one answer per command out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.sinks.base.receipts import Executed


class BatchExecutor(Protocol):
    """A store's deletion executor as the sink loop drives it.

    ``execute`` answers every command of a batch, in order (one :class:`Executed` each). Raising
    one of ``transient`` means "the store cannot be reached now": nothing of the batch counts,
    the loop calls ``recover`` and takes the same batch again later. Any receipt returned is
    published before the offsets are committed, so a crash replays the batch; executors must be
    idempotent (same command id, same effect)."""

    store: str
    transient: tuple[type[BaseException], ...]
    # Set by the sink loop: the key the executor signs its receipts with before storing them.
    receipt_signer: MessageSigner | None

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[Executed]: ...

    def recover(self) -> None: ...

    def close(self) -> None: ...
