"""The key store's executor: a command for a subject's data key destroys it (key shredding).

The worker orders a key destroyed once none of its subject's copies is left (``KEY_SHREDDED``,
streams/engine/shredding.py): a command to the store ``keys``, category ``key``, whose record key
is the key id. DELETED (1 row) when the key was there, NOT_FOUND when it is gone already (a
command seen again: the effect is the same). The receipt is signed like every store's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.sinks.base.receipts import Executed, executed
from ebbtide.sinks.keys.store import KeyStore, KeyStoreUnavailable
from ebbtide.streams.engine.shredding import KEY_CATEGORY, KEY_STORE


class KeyShredder:
    """Answers commands of the store ``keys`` by deleting the key from the key store."""

    store = KEY_STORE
    transient: tuple[type[BaseException], ...] = (KeyStoreUnavailable,)

    def __init__(self, keys: KeyStore, clock: Callable[[], datetime] | None = None) -> None:
        self.keys = keys
        self.clock = clock or (lambda: datetime.now(UTC))
        self.receipt_signer: MessageSigner | None = None

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[Executed]:
        out = []
        for command in commands:
            if command["category"] != KEY_CATEGORY:
                reason = f"the key store holds only {KEY_CATEGORY} records, not {command['category']}"
                out.append(self._answer(command, "FAILED", 0, reason, dead_letter=reason))
                continue
            rows = self.keys.shred(command["subject_id"], command["record_key"])
            out.append(self._answer(command, "DELETED" if rows else "NOT_FOUND", rows, None))
        return out

    def _answer(
        self,
        command: dict[str, Any],
        outcome: str,
        rows: int,
        reason: str | None,
        dead_letter: str | None = None,
    ) -> Executed:
        return executed(
            command, outcome, rows, reason, self.clock(), dead_letter=dead_letter, signer=self.receipt_signer
        )

    def recover(self) -> None:
        self.keys.close()

    def close(self) -> None:
        self.keys.close()
