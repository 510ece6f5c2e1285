"""PostgreSQL deletion executor: per command, its category's table actions (delete or anonymise,
children before parents) and a tracking row, all in the caller's transaction.

A command's effect and its tracking row commit together, so a command seen again (after a
crash before the offset commit, or a re-send) changes nothing more and gets the same receipt.

Before anything is deleted or anonymised, the rows a command's record key matches in every table
whose map action names a ``subject_column`` must belong to the command's subject (the column's
value through ``subject_format``). A command whose key matches another subject's rows is refused:
a FAILED receipt naming the table (never the key or a value), nothing of it applied, and
``ebbtide_security_events_total{source="commands",kind="wrong_subject"}``. A signed command
proves who sent it, not that its key is its subject's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from ebbtide.runtime import metrics
from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.sinks.base.receipts import Executed, decode_receipt, executed
from ebbtide.sinks.base.tracking import COMMAND_ERRORS, TRACKING_TABLE, utc_now
from ebbtide.sinks.postgres.check import check_table_map
from ebbtide.sinks.postgres.statements import Statements
from ebbtide.sinks.postgres.table_map import TableAction, TableMap, format_value

log = logging.getLogger(__name__)
WRONG_SUBJECT = "wrong_subject"  # the kind label of ebbtide_security_events_total


class PostgresExecutor:
    """Executes DeleteRecord commands for one store inside a caller's transaction.

    Per command, the actions of its category in order; the receipt says DELETED if a delete
    removed rows, ANONYMISED if only anonymise actions touched rows, NOT_FOUND if nothing was
    touched, with ``rows`` the rows touched in all tables."""

    receipt_signer: MessageSigner | None = None  # set by the sink loop; the stored receipt is signed

    def __init__(self, table_map: TableMap, clock: Callable[[], datetime] = utc_now) -> None:
        self.table_map = table_map
        self.clock = clock
        self._sql = Statements()

    def check(self, conn: Connection) -> None:
        """:func:`~sinks.postgres.check.check_table_map` on ``conn`` (at sink start)."""
        with conn, conn.cursor() as cur:
            check_table_map(cur, self.table_map)

    def execute_batch(self, cur: Cursor, commands: list[dict[str, Any]]) -> list[Executed]:
        """Execute commands in order, with the effect and receipts of :meth:`execute` on each,
        in a few statements: one look-up of repeats, one statement per table action and
        category, one INSERT of tracking rows. A category whose statements fail falls back to
        one command at a time."""
        results: list[Executed | None] = [None] * len(commands)
        cur.execute(
            f"SELECT command_id, receipt FROM {TRACKING_TABLE} WHERE command_id = ANY(%s)",
            (list({c["command_id"] for c in commands}),),
        )
        applied = {command_id: bytes(receipt) for command_id, receipt in cur.fetchall()}
        first: dict[str, int] = {}
        groups: dict[str, list[int]] = {}
        for i, command in enumerate(commands):
            command_id = command["command_id"]
            if command_id in applied:
                results[i] = Executed(decode_receipt(applied[command_id]), applied[command_id], True)
            elif command_id not in first:
                first[command_id] = i
                problem = self._problem(command)
                if problem:
                    results[i] = self._failed(command, problem)
                else:
                    groups.setdefault(command["category"], []).append(i)
        executed_at = self.clock()
        for category, indices in groups.items():
            done = self._apply_many(cur, category, [commands[i] for i in indices], executed_at)
            for i, result in zip(indices, done, strict=True):
                results[i] = result
        for i, command in enumerate(commands):  # later copies of a command in the same batch
            if results[i] is None:
                earlier = results[first[command["command_id"]]]
                assert earlier is not None
                results[i] = Executed(earlier.receipt, earlier.encoded, repeated=True)
        return [r for r in results if r is not None]

    def _apply_many(
        self, cur: Cursor, category: str, commands: list[dict[str, Any]], executed_at: datetime
    ) -> list[Executed]:
        cur.execute("SAVEPOINT ebbtide_batch")
        try:
            # Whose rows each key matches, before anything is touched: a refused command applies nothing.
            wrong = self._wrong_subjects(cur, category, commands)
            keys = [c["record_key"] for i, c in enumerate(commands) if i not in wrong]
            touched = [(a, self._run(cur, a, keys)) for a in self.table_map.actions(category)] if keys else []
        except COMMAND_ERRORS:
            cur.execute("ROLLBACK TO SAVEPOINT ebbtide_batch")
            return [self.execute(cur, c) for c in commands]  # finds the bad one, executes the rest
        cur.execute("RELEASE SAVEPOINT ebbtide_batch")
        results: list[Executed] = []
        applied: list[tuple[dict[str, Any], Executed]] = []
        for i, command in enumerate(commands):
            if i in wrong:
                results.append(self._refused(command, wrong[i]))
                continue
            # A key's rows count for its first command; a later one for the same key finds none.
            counts = [(action, rows.pop(command["record_key"], 0)) for action, rows in touched]
            results.append(self._done(command, counts, executed_at))
            applied.append((command, results[-1]))
        if not applied:
            return results
        inserted = execute_values(
            cur,
            f"INSERT INTO {TRACKING_TABLE} "
            "(command_id, store, category, outcome, rows, receipt, applied_at) VALUES %s "
            "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            [self._tracking_row(c, done) for c, done in applied],
            page_size=len(applied),
            fetch=True,
        )
        if len(inserted) < len(applied):  # another sink applied some first (a rebalance race)
            done_cmds = [c for c, _ in applied]
            stored = iter(
                self._stored_receipts(cur, done_cmds, [d for _, d in applied], {r[0] for r in inserted})
            )
            results = [r if i in wrong else next(stored) for i, r in enumerate(results)]
        return results

    def _wrong_subjects(self, cur: Cursor, category: str, commands: list[dict[str, Any]]) -> dict[int, str]:
        """The commands (by index) whose record key matches rows of another subject than their
        own, in a table whose action names a ``subject_column``, with the reason (the table, never
        the key or a value). A row whose subject is NULL or does not fit ``subject_format``
        belongs to no one: it is not the command's subject's either."""
        wrong: dict[int, str] = {}
        for action in self.table_map.actions(category):
            if action.subject_column is None:
                continue
            cur.execute(self._sql.subject(cur, action), ([c["record_key"] for c in commands],))
            owners: dict[str, set[Any]] = {}
            for key, owner in cur.fetchall():
                owners.setdefault(key, set()).add(owner)
            for i, command in enumerate(commands):
                if i in wrong:
                    continue
                if any(
                    not _belongs(action, o, command["subject_id"])
                    for o in owners.get(command["record_key"], ())
                ):
                    wrong[i] = (
                        f"refused: the record key matches rows of another subject in {action.table} "
                        f"(by {action.subject_column}); nothing was deleted or anonymised"
                    )
        return wrong

    def _refused(self, command: dict[str, Any], reason: str) -> Executed:
        """A command whose key is not its subject's: FAILED, untracked, counted as a security event."""
        metrics.SECURITY_EVENTS.labels("commands", WRONG_SUBJECT).inc()
        log.error("refused a command for store %s: %s", self.table_map.store, reason)
        return self._failed(command, reason)

    def _done(
        self, command: dict[str, Any], counts: list[tuple[TableAction, int]], executed_at: datetime
    ) -> Executed:
        deleted = sum(n for action, n in counts if action.deletes)
        rows = sum(n for _, n in counts)
        outcome = "DELETED" if deleted else "ANONYMISED" if rows else "NOT_FOUND"
        return executed(command, outcome, rows, None, executed_at, signer=self.receipt_signer)

    def _run(self, cur: Cursor, action: TableAction, keys: list[str]) -> Counter[str]:
        """One table action for every key at once; rows touched per key."""
        cur.execute(self._sql.action(cur, action), (keys,))
        return Counter(row[0] for row in cur.fetchall())

    def _stored_receipts(
        self, cur: Cursor, commands: list[dict[str, Any]], out: list[Executed], inserted: set[str]
    ) -> list[Executed]:
        """Replace our receipts by the stored ones where another sink's tracking row won."""
        lost = [c["command_id"] for c in commands if c["command_id"] not in inserted]
        cur.execute(
            f"SELECT command_id, receipt FROM {TRACKING_TABLE} WHERE command_id = ANY(%s)",
            (lost,),
        )
        stored = {command_id: bytes(receipt) for command_id, receipt in cur.fetchall()}
        return [
            Executed(decode_receipt(stored[c["command_id"]]), stored[c["command_id"]], True)
            if c["command_id"] in stored and c["command_id"] not in inserted
            else done
            for c, done in zip(commands, out, strict=True)
        ]

    def _problem(self, command: dict[str, Any]) -> str | None:
        store = self.table_map.store
        if command["store"] != store:
            return f"command for store {command['store']} sent to {store}"
        if not self.table_map.actions(command["category"]):
            return f"store map of {store} has no table for category {command['category']}"
        return None

    @staticmethod
    def _tracking_row(command: dict[str, Any], done: Executed) -> tuple[Any, ...]:
        receipt = done.receipt
        return (
            command["command_id"],
            command["store"],
            command["category"],
            receipt["outcome"],
            receipt["rows"],
            psycopg2.Binary(done.encoded),
            receipt["executed_at"],
        )

    def execute(self, cur: Cursor, command: dict[str, Any]) -> Executed:
        """One command on its own, in a savepoint: a key the database refuses (e.g. not a number
        for a bigint column) gives a FAILED receipt and leaves the transaction usable."""
        cur.execute(f"SELECT receipt FROM {TRACKING_TABLE} WHERE command_id = %s", (command["command_id"],))
        row = cur.fetchone()
        if row is not None:
            encoded = bytes(row[0])
            return Executed(decode_receipt(encoded), encoded, repeated=True)
        problem = self._problem(command)
        if problem:
            return self._failed(command, problem)
        cur.execute("SAVEPOINT ebbtide_command")
        try:
            wrong = self._wrong_subjects(cur, command["category"], [command])
        except COMMAND_ERRORS as exc:  # the first table with a subject column refused the key
            cur.execute("ROLLBACK TO SAVEPOINT ebbtide_command")
            checked = next(a.table for a in self.table_map.actions(command["category"]) if a.subject_column)
            return self._failed(command, f"{type(exc).__name__} checking the subject in {checked}")
        if wrong:
            cur.execute("RELEASE SAVEPOINT ebbtide_command")
            return self._refused(command, wrong[0])
        counts: list[tuple[TableAction, int]] = []
        for action in self.table_map.actions(command["category"]):
            try:
                counts.append((action, sum(self._run(cur, action, [command["record_key"]]).values())))
            except COMMAND_ERRORS as exc:
                cur.execute("ROLLBACK TO SAVEPOINT ebbtide_command")
                verb = "deleting from" if action.deletes else "anonymising"
                return self._failed(command, f"{type(exc).__name__} {verb} {action.table}")
        done = self._done(command, counts, self.clock())
        cur.execute(
            f"INSERT INTO {TRACKING_TABLE} "
            "(command_id, store, category, outcome, rows, receipt, applied_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
            self._tracking_row(command, done),
        )
        won = cur.fetchone() is not None
        cur.execute("RELEASE SAVEPOINT ebbtide_command")
        return done if won else self._stored_receipts(cur, [command], [done], set())[0]

    def _failed(self, command: dict[str, Any], reason: str) -> Executed:
        # Not tracked: a failed command stays executable, so a re-issue can still succeed.
        return executed(command, "FAILED", 0, reason, self.clock(), signer=self.receipt_signer)


def _belongs(action: TableAction, owner: Any, subject_id: str) -> bool:
    """Whether a row whose subject column holds ``owner`` may be touched for ``subject_id``: it is
    that subject's (per the map's format), or no one's (NULL: e.g. a link blanked by an earlier
    anonymisation, which belongs to no other subject; refusing it would only stop deletions)."""
    if owner is None:
        return True
    try:
        return format_value(action.subject_format, owner, action.table) == subject_id
    except ValueError:
        return False
