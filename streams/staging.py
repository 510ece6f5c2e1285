"""Staged table writes: read-your-writes now, applied to the real table later, in order.

The lifecycle agent stages every table write of a message, sends the message's output and
waits for the broker to acknowledge it, and only then applies the writes. All writes of a
partition go to one changelog partition, so after a crash a prefix of them survives: a
subject is never durably "deletion ordered" unless its command is already on the broker.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

_DELETED = object()


class StagedTable(MutableMapping[str, Any]):
    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self._staged: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._staged:
            value = self._staged[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self.table[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        self._staged.pop(key, None)  # re-insert: keep the order of last writes
        self._staged[key] = value

    def __delitem__(self, key: str) -> None:
        self._staged.pop(key, None)
        self._staged[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        staged = {k for k, v in self._staged.items() if v is not _DELETED}
        yield from staged
        yield from (k for k in self.table if k not in self._staged)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def keys_in_table(self) -> Iterator[str]:
        """Keys of the underlying table only (for rebuilding in-memory indexes)."""
        return iter(list(self.table.keys()))

    def flush(self) -> int:
        """Apply the staged writes to the table, in the order they were last made."""
        count = len(self._staged)
        for key, value in self._staged.items():
            if value is _DELETED:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        self._staged.clear()
        return count

    def discard(self) -> None:
        self._staged.clear()
