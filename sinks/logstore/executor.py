"""The log-store executor: a deletion command for a day of logs drops that day's partition."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.base.tracked import Outcome, Refused, TrackedExecutor
from ebbtide.sinks.logstore.partitions import (
    CATEGORY,
    SCHEMA,
    STORE,
    TABLE,
    attached_partitions,
    create_log_table,
    partition_day,
)


class LogStoreExecutor(TrackedExecutor):
    """Answers a command for a day of logs by detaching and dropping its partition.

    DELETED with ``rows`` = the lines the partition held; NOT_FOUND if there is no such
    partition (already dropped); FAILED, dropping nothing, if the key is not a partition name
    of ``logs.access_log`` or a table of that name exists but is not attached to it."""

    store = STORE

    def setup(self, conn: Connection) -> None:
        create_log_table(conn)

    def check(self, command: dict[str, Any]) -> str | None:
        problem = super().check(command)
        if problem is None and command["category"] != CATEGORY:
            problem = f"the log store holds only {CATEGORY} records, not {command['category']}"
        if problem is None and partition_day(command["record_key"]) is None:
            problem = f"record key is not a day partition of {SCHEMA}.{TABLE} (expected {TABLE}_YYYYMMDD)"
        return problem

    def apply(self, cur: Cursor, command: dict[str, Any]) -> Outcome | Refused:
        name = command["record_key"]
        partition = sql.Identifier(SCHEMA, name)
        # Lock the parent first, as inserts do (parent, then partition): no deadlock with the shipper.
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(SCHEMA, TABLE)))
        if name not in attached_partitions(cur):
            cur.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{name}",))
            row = cur.fetchone()
            if row is not None and row[0] is not None:
                return Refused(
                    f"{SCHEMA}.{name} exists but is not a partition of {SCHEMA}.{TABLE}; not dropped"
                )
            return Outcome("NOT_FOUND", 0, None, self.clock())
        cur.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(SCHEMA, TABLE), partition)
        )
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(partition))
        counted = cur.fetchone()
        cur.execute(sql.SQL("DROP TABLE {}").format(partition))
        return Outcome("DELETED", int(counted[0]) if counted else 0, None, self.clock())
