"""Opening a command's sealed record key before its store executes it.

A deletion command carries the record key as the event announced it: sealed with the subject's
data key (:mod:`ebbtide.runtime.tokens`). The sink loop opens it here, for every kind of store,
with the key from the key store (:mod:`ebbtide.sinks.keys.store`), and gives the executor the
command with the plain key; the token stays in ``sealed_key`` so the receipt (and the tracking
row that keeps it) names the record as the worker does, never in clear. A key that is not a token
(an event sent before sealing, or by a producer that does not seal) is used as it is.
"""

from __future__ import annotations

from typing import Any, Protocol

from ebbtide.runtime.tokens import DataKey, TokenError, is_token, key_id_of

SEALED_KEY = "sealed_key"


class KeyFinder(Protocol):
    def find(self, subject_id: str, key_id: str) -> DataKey: ...


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


__all__ = ["SEALED_KEY", "KeyFinder", "TokenError", "opened"]
