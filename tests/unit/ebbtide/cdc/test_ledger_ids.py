"""A change's 32-bit transaction id gets the epoch of the newest id the server has given, so a
tracking row 2^32 transactions older (xid wraparound) never matches it."""

from __future__ import annotations

from typing import Any

import pytest

from ebbtide.cdc.ledger import Ledger, full_xact_id

EPOCH = 2**32


class Cursor:
    def __init__(self, newest: int) -> None:
        self.newest = newest

    def execute(self, sql: str, args: Any = None) -> None:
        assert "pg_current_snapshot" in sql

    def fetchone(self) -> tuple[int]:
        return (self.newest,)


@pytest.mark.parametrize(
    ("newest", "tx_id", "full"),
    [
        (5 * EPOCH + 10, 5, 5 * EPOCH + 5),  # this epoch
        (5 * EPOCH + 10, 4_000_000_000, 4 * EPOCH + 4_000_000_000),  # before the counter wrapped
        (5 * EPOCH + 10, 10, 4 * EPOCH + 10),  # not given yet in this epoch: the last one's
        (5 * EPOCH + 10, 5 * EPOCH + 5, 5 * EPOCH + 5),  # an id reported with its epoch
        (700, 650, 650),  # epoch 0
    ],
)
def test_the_change_id_gets_the_epoch_of_the_newest_id(newest: int, tx_id: int, full: int) -> None:
    assert full_xact_id(Cursor(newest), tx_id) == full  # type: ignore[arg-type]


def test_the_ledger_key_makes_the_hash() -> None:
    one, other = Ledger(b"a" * 32), Ledger(b"b" * 32)
    assert one.hashed("7") == one.hashed("7") != other.hashed("7")
    assert one.hashed("7") != one.hashed("8") and len(one.hashed("7")) == 32
