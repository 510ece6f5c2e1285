"""Showing sealed values to those allowed to see them (the demo's checks, ``explain``, exports):
a token opens with its subject's key while the key exists, and reads ``shredded`` once it does
not (:mod:`ebbtide.runtime.tokens`)."""

from __future__ import annotations

import re
from typing import Any

from ebbtide.runtime.tokens import SHREDDED, DataKey, Shredded, is_token, key_id_of
from ebbtide.sinks.base.opening import KeyFinder
from ebbtide.tools.sealing import Keys


def reveal(subject_id: str, value: str, keys: KeyFinder) -> str:
    """``value`` opened if it is a token (``shredded`` if its key is gone); else as it is. A
    token that does not open with its key (changed, forged) raises TokenError."""
    if not is_token(value):
        return value
    key_id = key_id_of(value)
    assert key_id is not None
    try:
        return keys.find(subject_id, key_id).open(value)
    except Shredded:
        return SHREDDED


_TOKEN_IN_TEXT = re.compile(r"enc:v1:[0-9a-f]{16}:[A-Za-z0-9_-]+(?:\.[a-z0-9-]{2,63})?")


def reveal_text(subject_id: str, text: str, keys: KeyFinder) -> str:
    """``text`` (a rendered report, JSON) with every token of the subject in it revealed."""
    return _TOKEN_IN_TEXT.sub(lambda m: reveal(subject_id, m.group(0), keys), text)


def reveal_record_id(subject_id: str, record_id: str, keys: KeyFinder) -> str:
    """``store/category/key`` with its key revealed."""
    parts = record_id.split("/", 2)
    if len(parts) != 3:
        return record_id
    return "/".join((parts[0], parts[1], reveal(subject_id, parts[2], keys)))


def revealed_decision(decision: dict[str, Any], keys: KeyFinder) -> dict[str, Any]:
    """A decoded decision with its record id revealed."""
    return {**decision, "record": reveal_record_id(decision["subject_id"], decision["record"], keys)}


class RememberedKeys:
    """A publisher's keys that it also remembers (in memory, for this process only): the demo
    plays the backend services, so it checks the pipeline's outcome against its own stores with
    the keys it sealed with, also those the pipeline has shredded since. A real publisher has no
    reason to keep one."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._seen: dict[tuple[str, str], DataKey] = {}

    def current(self, subject_id: str) -> DataKey:
        key = self.keys.current(subject_id)
        self._seen[(subject_id, key.key_id)] = key
        return key

    def find(self, subject_id: str, key_id: str) -> DataKey:
        key = self._seen.get((subject_id, key_id))
        if key is None:
            raise Shredded(f"key {key_id} is not one this process sealed with")
        return key

    def close(self) -> None:
        close = getattr(self.keys, "close", None)
        if close is not None:
            close()
