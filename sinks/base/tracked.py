"""A :class:`~sinks.base.executor.BatchExecutor` over PostgreSQL for stores that are not plain rows.

The log store (drop a day's partition) and the backup catalogue (record when the last copy
expires) answer a command with more than one DELETE, so each command runs in its own
transaction: an advisory lock on its id (two sinks in a rebalance never apply one command
twice), a look-up of the tracking row of :mod:`sinks.base.tracking` (a command seen again gets the
receipt stored the first time), the store's effect, and the tracking row, committed together.
A command the store refuses (FAILED) is not tracked, so a re-issue can still succeed, as in the
PostgreSQL sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.sinks.base.errors import StoreSetupError
from ebbtide.sinks.base.receipts import Executed, decode_receipt, executed
from ebbtide.sinks.base.tracking import COMMAND_ERRORS, TRACKING_SCHEMA, Connected, utc_now

# First key of the advisory locks the tracked sinks take on a command id (the second key is
# the hash of the id); a constant of its own so other advisory locks of the database do not mix.
_LOCK_SPACE = 0x0EB7_1DE


@dataclass(frozen=True)
class Outcome:
    """What the store did with one command; becomes its receipt."""

    outcome: str
    rows: int
    reason: str | None
    executed_at: datetime


@dataclass(frozen=True)
class Refused:
    """The store cannot execute the command as given (answered FAILED, not tracked)."""

    reason: str


def ensure_tables(conn: Connection, tables: Sequence[str], ddl: str) -> None:
    """Run ``ddl`` (idempotent CREATE ... IF NOT EXISTS) unless every one of ``tables`` exists;
    commits. A sink running as a role without CREATE rights works on tables made for it."""
    with conn, conn.cursor() as cur:
        # One sink at a time: concurrent CREATE ... IF NOT EXISTS can fail in the catalog.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ebbtide-sink-setup'))")
        cur.execute("SELECT count(to_regclass(t)) FROM unnest(%s::text[]) AS t", (list(tables),))
        row = cur.fetchone()
        if row is not None and row[0] == len(tables):
            return
        try:
            cur.execute(ddl)
        except psycopg2.errors.InsufficientPrivilege:
            raise StoreSetupError(
                f"missing table(s) among {', '.join(tables)} and no right to create them: "
                "create them as an administrator"
            ) from None


class TrackedExecutor(Connected):
    """Base of the log-store and backup executors: one connection, one transaction per command.

    Subclasses set ``store``, create their tables in :meth:`setup` and implement :meth:`apply`,
    which runs inside the command's transaction (after the repeat check) and returns an
    :class:`Outcome` to track or a :class:`Refused` to answer FAILED with no effect."""

    receipt_signer: MessageSigner | None = None  # set by the sink loop; the stored receipt is signed

    def __init__(
        self, dsn: str, *, stop: threading.Event | None = None, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.clock = clock
        super().__init__(dsn, stop or threading.Event())

    # -- what a store defines (and setup, its tables) ------------------------------------------

    def check(self, command: dict[str, Any]) -> str | None:
        """Why the command cannot be for this store, before touching the database; None if it can."""
        if command["store"] != self.store:
            return f"command for store {command['store']} sent to {self.store}"
        return None

    def apply(self, cur: Cursor, command: dict[str, Any]) -> Outcome | Refused:
        raise NotImplementedError

    # -- BatchExecutor -------------------------------------------------------------------------

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[Executed]:
        answered: dict[str, Executed] = {}
        out: list[Executed] = []
        for command in commands:
            earlier = answered.get(command["command_id"])
            if earlier is not None:  # the same command twice in one batch
                out.append(Executed(earlier.receipt, earlier.encoded, repeated=True))
                continue
            done = self.execute_one(command)
            answered[command["command_id"]] = done
            out.append(done)
        return out

    def execute_one(self, command: dict[str, Any]) -> Executed:
        problem = self.check(command)
        if problem is not None:
            return self._failed(command, problem)
        try:
            with self.conn, self.conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, command["command_id"])
                )
                cur.execute(
                    f"SELECT receipt FROM {TRACKING_SCHEMA}.applied_commands WHERE command_id = %s",
                    (command["command_id"],),
                )
                row = cur.fetchone()
                if row is not None:
                    encoded = bytes(row[0])
                    return Executed(decode_receipt(encoded), encoded, repeated=True)
                result = self.apply(cur, command)
                if isinstance(result, Refused):
                    self.conn.rollback()  # whatever apply looked at, nothing of it stays
                    return self._failed(command, result.reason)
                done = executed(
                    command,
                    result.outcome,
                    result.rows,
                    result.reason,
                    result.executed_at,
                    signer=self.receipt_signer,
                )
                cur.execute(
                    f"INSERT INTO {TRACKING_SCHEMA}.applied_commands "
                    "(command_id, store, category, outcome, rows, receipt, applied_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        command["command_id"],
                        command["store"],
                        command["category"],
                        result.outcome,
                        result.rows,
                        psycopg2.Binary(done.encoded),
                        self.clock(),
                    ),
                )
                return done
        except COMMAND_ERRORS as exc:  # rolled back by the connection's context manager
            return self._failed(command, f"{type(exc).__name__} in store {self.store}")

    def _failed(self, command: dict[str, Any], reason: str) -> Executed:
        return executed(command, "FAILED", 0, reason, self.clock(), signer=self.receipt_signer)
