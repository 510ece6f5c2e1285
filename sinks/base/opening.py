"""Opening a command's sealed record key before its store executes it.

A deletion command carries the record key as the event announced it: sealed with the subject's
data key (:mod:`ebbtide.runtime.tokens`). The sink loop opens it here, for every kind of store,
with the key from the key store (:mod:`ebbtide.sinks.keys.store`), and gives the executor the
command with the plain key; the token stays in ``sealed_key`` so the receipt (and the tracking
row that keeps it) names the record as the worker does, never in clear. A key that is not a token
(an event sent before sealing, or by a producer that does not seal) is used as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from ebbtide.runtime.tokens import DataKey, TokenError, is_token, key_id_of

SEALED_KEY = "sealed_key"


class KeyFinder(Protocol):
    def find(self, subject_id: str, key_id: str) -> DataKey: ...


@runtime_checkable
class Prefetching(Protocol):
    """A key finder that can read many keys in one go (the key store)."""

    def prefetch(self, wanted: Iterable[tuple[str, str]]) -> None: ...


def prefetch(commands: Sequence[dict[str, Any]], keys: KeyFinder) -> None:
    """Let ``keys`` read the keys of every sealed record key of ``commands`` at once, when it
    can: then :func:`opened` of each needs no round trip to the key store."""
    if isinstance(keys, Prefetching):
        wanted = (
            (c["subject_id"], key_id_of(c["record_key"])) for c in commands if is_token(c["record_key"])
        )
        keys.prefetch((subject, key_id) for subject, key_id in wanted if key_id is not None)


def opened(command: dict[str, Any], keys: KeyFinder) -> dict[str, Any]:
    """``command`` with its record key opened; :class:`~ebbtide.runtime.tokens.TokenError`
    (:class:`~ebbtide.runtime.tokens.Shredded` if its key is destroyed) if it cannot be."""
    token = command["record_key"]
    if not is_token(token):
        return command
    key_id = key_id_of(token)
    assert key_id is not None
    plain = keys.find(command["subject_id"], key_id).open(token)
    return {**command, "record_key": plain, SEALED_KEY: token}


__all__ = ["SEALED_KEY", "KeyFinder", "TokenError", "opened", "prefetch"]
