"""The backups executor: a record in immutable backups is answered EXPIRES, when the last backup
holding it expires, and put on the restore suppression list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.backups import STORE
from ebbtide.sinks.backups.catalogue import SCHEMA, create_catalogue
from ebbtide.sinks.base.tracked import Outcome, TrackedExecutor


def expiry_reason(backups: int, last_expiry: datetime) -> str:
    """The receipt's reason for EXPIRES: counts and a date, nothing about the record."""
    held = "1 backup" if backups == 1 else f"{backups} backups"
    return (
        f"held in {held}; gone when the last expires on {last_expiry.astimezone(UTC):%Y-%m-%d} "
        "(backups are immutable; restores re-delete it)"
    )


class BackupsExecutor(TrackedExecutor):
    """Answers a deletion command for a record of hosted data in the backups.

    The live backups holding the record (not purged, not expired at the command's ``issued_at``,
    the pipeline's time): EXPIRES, ``rows`` = how many, ``executed_at`` = the latest expiry
    among them. None: NOT_FOUND. Either way the erasure goes on the restore suppression list
    (a backup taken before the primary store deleted the record may still hold it)."""

    store = STORE

    def setup(self, conn: Connection) -> None:
        create_catalogue(conn)

    def apply(self, cur: Cursor, command: dict[str, Any]) -> Outcome:
        issued_at: datetime = command["issued_at"]
        cur.execute(
            f"SELECT count(*), max(c.expires_at) FROM {SCHEMA}.contents t "
            f"JOIN {SCHEMA}.catalogue c USING (backup_id) "
            "WHERE t.category = %s AND t.record_key = %s AND c.purged_at IS NULL AND c.expires_at > %s",
            (command["category"], command["record_key"], issued_at),
        )
        row = cur.fetchone()
        held, last = (int(row[0]), row[1]) if row is not None else (0, None)
        cur.execute(
            f"INSERT INTO {SCHEMA}.erasures (command_id, category, record_key, requested_at, until) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (command_id) DO NOTHING",
            (command["command_id"], command["category"], command["record_key"], issued_at, last or issued_at),
        )
        if held == 0 or last is None:
            return Outcome("NOT_FOUND", 0, None, self.clock())
        return Outcome("EXPIRES", held, expiry_reason(held, last), last)
