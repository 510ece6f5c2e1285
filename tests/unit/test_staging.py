"""Staged writes: visible at once to the processor, applied to the table only on flush."""

from __future__ import annotations

from streams.staging import StagedTable


def test_writes_are_visible_before_flush_but_not_in_the_table() -> None:
    table: dict[str, int] = {"a": 1}
    staged = StagedTable(table)
    staged["b"] = 2
    del staged["a"]
    assert staged.get("b") == 2 and staged.get("a") is None
    assert table == {"a": 1}
    staged.flush()
    assert table == {"b": 2}


def test_flush_applies_writes_in_the_order_they_were_last_made() -> None:
    seen: list[str] = []

    class Recording(dict[str, int]):
        def __setitem__(self, key: str, value: int) -> None:
            seen.append(key)
            super().__setitem__(key, value)

    staged = StagedTable(Recording())
    staged["s:1"] = 1
    staged["p:0"] = 1
    staged["s:1"] = 2
    staged.flush()
    assert seen == ["p:0", "s:1"]


def test_discard_forgets_staged_writes() -> None:
    table: dict[str, int] = {}
    staged = StagedTable(table)
    staged["x"] = 1
    staged.discard()
    assert staged.flush() == 0 and table == {}
