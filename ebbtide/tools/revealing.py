"""Showing sealed values to those allowed to see them (the demo's checks, ``explain``, exports):
a token opens with its subject's key while the key exists, and reads ``shredded`` once it does
not (:mod:`ebbtide.runtime.tokens`)."""

from __future__ import annotations

from typing import Any

from ebbtide.runtime.tokens import SHREDDED, Shredded, is_token, key_id_of
from ebbtide.sinks.base.opening import KeyFinder


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


def reveal_record_id(subject_id: str, record_id: str, keys: KeyFinder) -> str:
    """``store/category/key`` with its key revealed."""
    parts = record_id.split("/", 2)
    if len(parts) != 3:
        return record_id
    return "/".join((parts[0], parts[1], reveal(subject_id, parts[2], keys)))


def revealed_decision(decision: dict[str, Any], keys: KeyFinder) -> dict[str, Any]:
    """A decoded decision with its record id revealed."""
    return {**decision, "record": reveal_record_id(decision["subject_id"], decision["record"], keys)}
