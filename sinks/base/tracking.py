"""The tracking table of the PostgreSQL-backed sinks, and their one database connection.

A command's effect and its tracking row (``ebbtide_sink.applied_commands``: the command id and
the receipt sent for it) commit in one transaction, so a command seen again (after a crash
before the offset commit, or a re-send) changes nothing more and gets the stored receipt. The
PostgreSQL, log-store and backups sinks share the table; :class:`Connected` is the connection
their executors hold, opened with the table ready and opened again after the database went away.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection

from ebbtide.sinks.base.errors import SinkSetupError

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
    applied_at  timestamptz NOT NULL,
    xact        bigint DEFAULT (pg_current_xact_id()::text::bigint)
);
"""

# The writing transaction's top-level id, epoch included (``pg_current_xact_id``: the same inside a
# savepoint, where ``xmin`` would be the subtransaction's): how ``ebbtide cdc run`` knows a deletion
# is a sink's (ebbtide/cdc/ledger.py). Added to a table made before it; its older rows keep NULL.
TRACKING_MIGRATION = f"""
ALTER TABLE {TRACKING_TABLE} ADD COLUMN IF NOT EXISTS xact bigint;
ALTER TABLE {TRACKING_TABLE} ALTER COLUMN xact SET DEFAULT (pg_current_xact_id()::text::bigint);
"""

# Errors that say "this command cannot be executed as given", as opposed to "the database is
# unreachable" (OperationalError, InterfaceError), which abort the batch for a retry.
COMMAND_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.ProgrammingError)

# The database is unreachable (as opposed to "this command cannot be executed"): the sink loop
# takes the batch again after reconnecting.
TRANSIENT: tuple[type[BaseException], ...] = (psycopg2.OperationalError, psycopg2.InterfaceError)


def utc_now() -> datetime:
    return datetime.now(UTC)


def ensure_tracking(conn: Connection) -> None:
    """Create the tracking table if it is missing (it is, when the sink runs as a
    least-privilege role, created by ``ebbtide sink-role``)."""
    with conn, conn.cursor() as cur:
        # Sinks starting together would race on CREATE ... IF NOT EXISTS (a unique violation
        # in the catalog): one at a time, until this transaction ends.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ebbtide-sink-setup'))")
        cur.execute(
            "SELECT to_regclass(%s), EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attname = 'xact' AND NOT attisdropped)",
            (TRACKING_TABLE, TRACKING_TABLE),
        )
        row = cur.fetchone()
        if row is not None and row[0] is not None and row[1]:
            return
        try:
            cur.execute(TRACKING_DDL if row is None or row[0] is None else TRACKING_MIGRATION)
        except psycopg2.errors.InsufficientPrivilege:
            raise SinkSetupError(
                f"no table {TRACKING_TABLE} (or no column xact) and no right to make it: run "
                "`ebbtide sink-role` as an administrator, which creates it and grants the sink's role access"
            ) from None


class Connected:
    """The one PostgreSQL connection of a sink's executor: opened with the tracking table ready
    (and the store's own tables, :meth:`setup`), opened again after the database went away."""

    store: str = ""
    transient: tuple[type[BaseException], ...] = TRANSIENT

    def __init__(self, dsn: str, stop: threading.Event) -> None:
        self.dsn = dsn
        self.stop = stop
        try:
            self.conn = self._connect()
        except psycopg2.OperationalError as exc:  # e.g. a refused password or TLS certificate
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise SinkSetupError(f"EBBTIDE_PG_DSN: cannot connect to PostgreSQL: {reason}") from None

    def setup(self, conn: Connection) -> None:
        """Create the store's tables if missing (on every (re)connect); none by default."""

    def _connect(self) -> Connection:
        conn = psycopg2.connect(self.dsn, application_name=f"ebbtide-sink-{self.store}")
        ensure_tracking(conn)
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
