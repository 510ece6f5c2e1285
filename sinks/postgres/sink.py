"""The sink of one PostgreSQL store: the generic loop driving the table-map executor, one
database transaction per batch.

A batch's receipts are published only after its transaction committed, and a receipt must
never name a deletion a crash of PostgreSQL could undo: the sink's connection never commits with
``synchronous_commit = off``. Where the server, database or role turned it off for speed, the
sink sets it ``on`` for its connection (a commit returns once its WAL is flushed) and logs that
it did; any other setting (``local``, ``remote_write``, ``remote_apply``) is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from psycopg2.extensions import connection as Connection

from ebbtide.runtime import authenticity
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.loop import CommandSink
from ebbtide.sinks.base.receipts import Executed
from ebbtide.sinks.base.tracking import Connected
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.table_map import TableMap

log = logging.getLogger(__name__)


class PostgresBatch(Connected):
    """The PostgreSQL executor as a :class:`BatchExecutor`: one transaction per batch."""

    def __init__(self, table_map: TableMap, dsn: str, stop: threading.Event) -> None:
        self.store = table_map.store
        self.executor = PostgresExecutor(table_map)
        super().__init__(dsn, stop)
        self.executor.check(self.conn)  # tables, columns, children before parents: refuse a bad map

    def setup(self, conn: Connection) -> None:
        """On every (re)connect: commits durable before their receipts are sent (module docstring)."""
        with conn, conn.cursor() as cur:
            cur.execute("SHOW synchronous_commit")
            row = cur.fetchone()
            if row is not None and row[0] == "off":
                cur.execute("SET synchronous_commit = on")
                log.warning(
                    "store %s: synchronous_commit is off for this connection; the sink sets it on, "
                    "so that no receipt is sent for a deletion a crash could undo",
                    self.store,
                )

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
