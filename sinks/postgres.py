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

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from ebbtide import metrics
from ebbtide.authenticity import MessageSigner
from sinks.mapping import StoreMap, StoreMapError, TableAction, format_value
from sinks.receipts import Executed, decode_receipt, executed

log = logging.getLogger(__name__)
WRONG_SUBJECT = "wrong_subject"  # the kind label of ebbtide_security_events_total

TRACKING_SCHEMA = "ebbtide_sink"
TRACKING_TABLE = f"{TRACKING_SCHEMA}.applied_commands"

TRACKING_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {TRACKING_SCHEMA};
CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (
    command_id  text PRIMARY KEY,
    store       text NOT NULL,
    category    text NOT NULL,
    outcome     text NOT NULL,
    rows        integer NOT NULL,
    receipt     bytea NOT NULL,
    applied_at  timestamptz NOT NULL
);
"""

# Errors that say "this command cannot be executed as given", as opposed to "the database is
# unreachable" (OperationalError, InterfaceError), which abort the batch for a retry.
COMMAND_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.ProgrammingError)


class SinkSetupError(RuntimeError):
    """The database is not set up for the sink (and the sink may not set it up itself)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_store_map(cur: Cursor, store_map: StoreMap) -> None:
    """Check the map against the database: every table and column exists, a column blanked to NULL
    may be NULL, and no table is listed after a table it references by a foreign key (children
    before parents, or the parent's delete fails). Raises :class:`StoreMapError` naming the field.
    Reads only the catalog, so the sink's least-privilege role can run it."""
    source = store_map.source
    for category, actions in store_map.categories.items():
        oids: list[int] = []
        for i, action in enumerate(actions):
            where = f"{source}: categories.{category}[{i}]"
            cur.execute("SELECT to_regclass(%s)::oid", (action.qualified,))
            row = cur.fetchone()
            if row is None or row[0] is None:
                raise StoreMapError(f"{where}.table: no table {action.qualified} in the database")
            oids.append(int(row[0]))
            cur.execute(
                "SELECT attname, attnotnull FROM pg_attribute "
                "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
                (oids[-1],),
            )
            not_null = dict(cur.fetchall())
            named = [
                ("key_column", action.key_column),
                *(("columns", c) for c in action.columns),
                ("subject_column", action.subject_column),
                ("ref_column", action.ref_column),
                ("time_column", action.time_column),
            ]
            for field, column in named:
                if column is not None and column not in not_null:
                    raise StoreMapError(f"{where}.{field}: no column {column} in {action.qualified}")
            for column in action.columns:
                if not_null[column] and action.value_of(column) is None:
                    raise StoreMapError(
                        f"{where}.columns: {action.qualified}.{column} is NOT NULL; "
                        f'give it a replacement value (replace = {{ {column} = "..." }})'
                    )
        cur.execute(
            "SELECT conname, conrelid, confrelid FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = ANY(%s::oid[]) AND confrelid = ANY(%s::oid[]) AND conrelid <> confrelid "
            "ORDER BY conname",
            (oids, oids),
        )
        for name, child_oid, parent_oid in cur.fetchall():
            child, parent = oids.index(int(child_oid)), oids.index(int(parent_oid))
            if child > parent:
                raise StoreMapError(
                    f"{source}: categories.{category}: {actions[child].qualified} (action {child}) "
                    f"references {actions[parent].qualified} (action {parent}) by foreign key {name}; "
                    f"list it before {actions[parent].qualified} (children before parents)"
                )


class PostgresExecutor:
    """Executes DeleteRecord commands for one store inside a caller's transaction.

    Per command, the actions of its category in order; the receipt says DELETED if a delete
    removed rows, ANONYMISED if only anonymise actions touched rows, NOT_FOUND if nothing was
    touched, with ``rows`` the rows touched in all tables."""

    receipt_signer: MessageSigner | None = None  # set by the sink loop; the stored receipt is signed

    def __init__(self, store_map: StoreMap, clock: Callable[[], datetime] = utc_now) -> None:
        self.store_map = store_map
        self.clock = clock
        self._key_types: dict[tuple[str, str], str] = {}
        self._statements: dict[tuple[str, str], sql.Composed] = {}

    @staticmethod
    def ensure_tracking(conn: Connection) -> None:
        """Create the tracking table if it is missing (it is, when the sink runs as a
        least-privilege role, created by ``ebbtide sink-role``)."""
        with conn, conn.cursor() as cur:
            # Sinks starting together would race on CREATE ... IF NOT EXISTS (a unique violation
            # in the catalog): one at a time, until this transaction ends.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('ebbtide-sink-setup'))")
            cur.execute("SELECT to_regclass(%s)", (TRACKING_TABLE,))
            row = cur.fetchone()
            if row is not None and row[0] is not None:
                return
            try:
                cur.execute(TRACKING_DDL)
            except psycopg2.errors.InsufficientPrivilege:
                raise SinkSetupError(
                    f"no table {TRACKING_TABLE} and no right to create it: run `ebbtide sink-role` "
                    "as an administrator, which creates it and grants the sink's role access"
                ) from None

    def check(self, conn: Connection) -> None:
        """:func:`check_store_map` on ``conn`` (at sink start)."""
        with conn, conn.cursor() as cur:
            check_store_map(cur, self.store_map)

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
            touched = [(a, self._run(cur, a, keys)) for a in self.store_map.actions(category)] if keys else []
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
        for action in self.store_map.actions(category):
            if action.subject_column is None:
                continue
            cur.execute(self._subject_statement(cur, action), ([c["record_key"] for c in commands],))
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

    def _subject_statement(self, cur: Cursor, action: TableAction) -> sql.Composed:
        """``SELECT key, subject`` of the rows the distinct keys of a text array match."""
        cached = self._statements.get((action.category, f"subject:{action.qualified}"))
        if cached is not None:
            return cached
        statement = sql.SQL(
            "WITH keys AS (SELECT DISTINCT k FROM unnest(%s::text[]) AS k) "
            "SELECT keys.k, t.{subject} FROM {table} AS t JOIN keys ON t.{key} = keys.k::{type}"
        ).format(
            subject=sql.Identifier(str(action.subject_column)),
            table=sql.Identifier(action.schema, action.name),
            key=sql.Identifier(action.key_column),
            type=sql.SQL(self._key_type(cur, action.qualified, action.key_column)),
        )
        self._statements[(action.category, f"subject:{action.qualified}")] = statement
        return statement

    def _refused(self, command: dict[str, Any], reason: str) -> Executed:
        """A command whose key is not its subject's: FAILED, untracked, counted as a security event."""
        metrics.SECURITY_EVENTS.labels("commands", WRONG_SUBJECT).inc()
        log.error("refused a command for store %s: %s", self.store_map.store, reason)
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
        cur.execute(self._statement(cur, action), (keys,))
        return Counter(row[0] for row in cur.fetchall())

    def _statement(self, cur: Cursor, action: TableAction) -> sql.Composed:
        """``DELETE ... USING`` or ``UPDATE ... FROM`` the distinct keys of a text array, cast to the
        key column's type (so the column is compared without a cast and its index is used).
        An anonymise touches only rows not blank already (a second run changes and counts nothing)
        when the connection may read the blanked columns; a role that may only overwrite them
        (``ebbtide sink-role``) updates and counts every row of the key."""
        cached = self._statements.get((action.category, action.qualified))
        if cached is not None:
            return cached
        table = sql.Identifier(action.schema, action.name)
        key = sql.Identifier(action.key_column)
        keys = sql.SQL("WITH keys AS (SELECT DISTINCT k FROM unnest(%s::text[]) AS k) ")
        match = sql.SQL("t.{key} = keys.k::{type}").format(
            key=key, type=sql.SQL(self._key_type(cur, action.qualified, action.key_column))
        )
        if action.deletes:
            statement = keys + sql.SQL(
                "DELETE FROM {table} AS t USING keys WHERE {match} RETURNING keys.k"
            ).format(table=table, match=match)
        else:
            values = [(sql.Identifier(c), sql.Literal(action.value_of(c))) for c in action.columns]
            statement = keys + sql.SQL("UPDATE {table} AS t SET {sets} FROM keys WHERE {match}").format(
                table=table,
                sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(c, v) for c, v in values),
                match=match,
            )
            if self._may_read(cur, action.qualified, action.columns):
                statement += sql.SQL(" AND ({changes})").format(
                    changes=sql.SQL(" OR ").join(
                        sql.SQL("t.{} IS DISTINCT FROM {}").format(c, v) for c, v in values
                    )
                )
            statement += sql.SQL(" RETURNING keys.k")
        self._statements[(action.category, action.qualified)] = statement
        return statement

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

    @staticmethod
    def _may_read(cur: Cursor, table: str, columns: Sequence[str]) -> bool:
        """Whether this connection may read ``columns`` (the least-privilege role of ``ebbtide
        sink-role`` may only overwrite the columns it blanks: then every matching row is updated
        and counted, blank already or not)."""
        cur.execute(
            "SELECT bool_and(has_column_privilege(%s, c, 'SELECT')) FROM unnest(%s::text[]) AS c",
            (table, list(columns)),
        )
        row = cur.fetchone()
        return bool(row and row[0])

    def _key_type(self, cur: Cursor, table: str, column: str) -> str:
        """The SQL type of a key column, from the catalog (cached), to compare keys without casts on it."""
        cached = self._key_types.get((table, column))
        if cached is None:
            cur.execute(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped",
                (table, column),
            )
            row = cur.fetchone()
            if row is None:
                raise psycopg2.ProgrammingError(f"no column {column} in {table}")
            cached = self._key_types[(table, column)] = str(row[0])
        return cached

    def _problem(self, command: dict[str, Any]) -> str | None:
        store = self.store_map.store
        if command["store"] != store:
            return f"command for store {command['store']} sent to {store}"
        if not self.store_map.actions(command["category"]):
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
            checked = next(a.table for a in self.store_map.actions(command["category"]) if a.subject_column)
            return self._failed(command, f"{type(exc).__name__} checking the subject in {checked}")
        if wrong:
            cur.execute("RELEASE SAVEPOINT ebbtide_command")
            return self._refused(command, wrong[0])
        counts: list[tuple[TableAction, int]] = []
        for action in self.store_map.actions(command["category"]):
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


# The database is unreachable (as opposed to "this command cannot be executed"): the sink loop
# takes the batch again after reconnecting.
TRANSIENT: tuple[type[BaseException], ...] = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Connected:
    """The one PostgreSQL connection of a sink's executor: opened with the tracking table ready
    (and the store's own tables, :meth:`setup`), opened again after the database went away."""

    store: str = ""
    transient: tuple[type[BaseException], ...] = TRANSIENT

    def __init__(self, dsn: str, stop: threading.Event) -> None:
        self.dsn = dsn
        self.stop = stop
        self.conn = self._connect()

    def setup(self, conn: Connection) -> None:
        """Create the store's tables if missing (on every (re)connect); none by default."""

    def _connect(self) -> Connection:
        conn = psycopg2.connect(self.dsn, application_name=f"ebbtide-sink-{self.store}")
        PostgresExecutor.ensure_tracking(conn)
        self.setup(conn)
        return conn

    def recover(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()
        while not self.stop.is_set():
            try:
                self.conn = self._connect()
                return
            except TRANSIENT:
                self.stop.wait(1.0)

    def close(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()
