"""The sink of one PostgreSQL store: the generic loop driving the table-map executor, one
database transaction per batch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ebbtide.runtime import authenticity
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.loop import CommandSink
from ebbtide.sinks.base.receipts import Executed
from ebbtide.sinks.base.tracking import Connected
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.table_map import TableMap


class PostgresBatch(Connected):
    """The PostgreSQL executor as a :class:`BatchExecutor`: one transaction per batch."""

    def __init__(self, table_map: TableMap, dsn: str, stop: threading.Event) -> None:
        self.store = table_map.store
        self.executor = PostgresExecutor(table_map)
        super().__init__(dsn, stop)
        self.executor.check(self.conn)  # tables, columns, children before parents: refuse a bad map

    @property
    def receipt_signer(self) -> authenticity.MessageSigner | None:
        return self.executor.receipt_signer

    @receipt_signer.setter
    def receipt_signer(self, signer: authenticity.MessageSigner | None) -> None:
        self.executor.receipt_signer = signer

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[Executed]:
        with self.conn, self.conn.cursor() as cur:
            return self.executor.execute_batch(cur, list(commands))


class PostgresSink(CommandSink):
    """The sink of a PostgreSQL store: :class:`CommandSink` driving a :class:`PostgresBatch`."""

    def __init__(
        self,
        settings: Settings,
        table_map: TableMap,
        dsn: str,
        stop: threading.Event | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        stop = stop or threading.Event()
        self.table_map = table_map
        super().__init__(settings, PostgresBatch(table_map, dsn, stop), stop, on_batch)
