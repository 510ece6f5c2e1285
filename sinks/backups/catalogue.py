"""Backups of hosted data: a catalogue of immutable backups and what deleting a record means there.

Hosted customer data is backed up hourly and daily (seed 003 Vedlegg 1), and deleting it
includes the backups (seed 003 §13). A backup is immutable: a record in it cannot be removed, it
is gone when the backup expires and is purged. So the backup sink answers a deletion command
with outcome EXPIRES, ``executed_at`` = the expiry of the last backup holding the record, and a
reason the certificate shows; NOT_FOUND when no live backup holds it.

The catalogue lives in PostgreSQL schema ``backups``:

- ``catalogue``: one row per backup (taken, expires, purged);
- ``contents``: the records (category, record key) each unpurged backup holds;
- ``erasures``: the restore suppression list. A record erased while backups still hold it must
  be deleted again if one of those backups is ever restored: :func:`restore_suppression` gives
  the keys to re-delete, and a restore procedure runs it before the restored data is used.

:func:`take_backup` and :func:`purge_expired` are what the backup system calls (the demo and the
tests stand in for it); ``ebbtide backups purge|list`` run them by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg2.extensions import connection as Connection
from psycopg2.extras import execute_values

from ebbtide.sinks.backups import CATEGORY as CATEGORY  # re-exported: the module names its records
from ebbtide.sinks.backups import STORE as STORE
from ebbtide.sinks.base.tracked import ensure_tables

log = logging.getLogger(__name__)

SCHEMA = "backups"

CATALOGUE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.catalogue (
    backup_id   text PRIMARY KEY,
    taken_at    timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > taken_at),
    purged_at   timestamptz
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.contents (
    backup_id   text NOT NULL REFERENCES {SCHEMA}.catalogue (backup_id),
    category    text NOT NULL,
    record_key  text NOT NULL,
    PRIMARY KEY (backup_id, category, record_key)
);
CREATE INDEX IF NOT EXISTS contents_by_record ON {SCHEMA}.contents (category, record_key);
CREATE TABLE IF NOT EXISTS {SCHEMA}.erasures (
    command_id    text PRIMARY KEY,
    category      text NOT NULL,
    record_key    text NOT NULL,
    requested_at  timestamptz NOT NULL,
    until         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS erasures_by_record ON {SCHEMA}.erasures (category, record_key);
"""


class BackupError(ValueError):
    """A catalogue operation that cannot be done as asked (unknown or purged backup...)."""


@dataclass(frozen=True)
class Backup:
    backup_id: str
    taken_at: datetime
    expires_at: datetime
    purged_at: datetime | None
    records: int  # records it holds (0 once purged: its contents are forgotten)


@dataclass(frozen=True)
class Purged:
    backups: list[str]  # ids of the backups purged now
    records: int  # contents rows removed with them
    erasures: int  # suppression entries no longer needed (no unpurged backup holds the record)


def create_catalogue(conn: Connection) -> None:
    """Create the ``backups`` schema and its tables if missing; commits."""
    ensure_tables(conn, [f"{SCHEMA}.catalogue", f"{SCHEMA}.contents", f"{SCHEMA}.erasures"], CATALOGUE_DDL)


def take_backup(
    conn: Connection,
    backup_id: str,
    taken_at: datetime,
    expires_at: datetime,
    records: Iterable[tuple[str, str]],
) -> int:
    """Catalogue a backup taken at ``taken_at``, kept until ``expires_at``, holding ``records``
    ((category, record key) pairs). Commits; returns the number of records.

    A record already erased (a backup taken between the erasure command and the deletion in the
    primary store) keeps its suppression entry until this backup is gone too; that is logged,
    as the receipt already sent named an earlier end."""
    if taken_at.tzinfo is None or expires_at.tzinfo is None:
        raise BackupError("taken_at and expires_at must carry a time zone")
    if expires_at <= taken_at:
        raise BackupError(f"backup {backup_id}: expires_at must be after taken_at")
    held = sorted(set(records))
    with conn, conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {SCHEMA}.catalogue (backup_id, taken_at, expires_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (backup_id) DO NOTHING RETURNING backup_id",
            (backup_id, taken_at, expires_at),
        )
        if cur.fetchone() is None:
            raise BackupError(f"backup {backup_id} is already in the catalogue")
        execute_values(
            cur,
            f"INSERT INTO {SCHEMA}.contents (backup_id, category, record_key) VALUES %s",
            [(backup_id, category, key) for category, key in held],
            page_size=1000,
        )
        cur.execute(
            f"UPDATE {SCHEMA}.erasures e SET until = %s FROM {SCHEMA}.contents t "
            "WHERE t.backup_id = %s AND t.category = e.category AND t.record_key = e.record_key "
            "AND e.until < %s",
            (expires_at, backup_id, expires_at),
        )
        late = cur.rowcount
    if late:
        log.warning(
            "backup %s holds %d record(s) already erased; they stay on the restore suppression list "
            "until it expires",
            backup_id,
            late,
        )
    return len(held)


def purge_expired(conn: Connection, now: datetime) -> Purged:
    """Purge every backup expired at ``now``: mark it purged and forget its contents; drop the
    suppression entries whose records no unpurged backup holds any more. Commits."""
    if now.tzinfo is None:
        raise BackupError("now must carry a time zone")
    with conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {SCHEMA}.catalogue SET purged_at = %s "
            "WHERE purged_at IS NULL AND expires_at <= %s RETURNING backup_id",
            (now, now),
        )
        purged = sorted(str(backup_id) for (backup_id,) in cur.fetchall())
        cur.execute(f"DELETE FROM {SCHEMA}.contents WHERE backup_id = ANY(%s)", (purged,))
        records = cur.rowcount
        cur.execute(
            f"DELETE FROM {SCHEMA}.erasures e WHERE e.until <= %s AND NOT EXISTS ("
            f"SELECT 1 FROM {SCHEMA}.contents t "
            "WHERE t.category = e.category AND t.record_key = e.record_key)",
            (now,),
        )
        erasures = cur.rowcount
    return Purged(purged, records, erasures)


def list_backups(conn: Connection) -> list[Backup]:
    """Every backup of the catalogue, oldest first, with the number of records it holds."""
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT c.backup_id, c.taken_at, c.expires_at, c.purged_at, count(t.record_key) "
            f"FROM {SCHEMA}.catalogue c LEFT JOIN {SCHEMA}.contents t USING (backup_id) "
            "GROUP BY c.backup_id ORDER BY c.taken_at, c.backup_id"
        )
        return [Backup(str(b), taken, expires, purged, int(n)) for b, taken, expires, purged, n in cur]


def restore_suppression(conn: Connection, backup_id: str) -> list[tuple[str, str]]:
    """The records (category, record key) to delete again after restoring ``backup_id``: those it
    holds that have an erasure on the suppression list (erased after the backup was taken, or
    before the primary store had deleted them). Raises :class:`BackupError` for an unknown or
    purged backup."""
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT purged_at FROM {SCHEMA}.catalogue WHERE backup_id = %s", (backup_id,))
        row = cur.fetchone()
        if row is None:
            raise BackupError(f"no backup {backup_id} in the catalogue")
        if row[0] is not None:
            raise BackupError(
                f"backup {backup_id} was purged on {row[0].astimezone(UTC):%Y-%m-%d}; it cannot be restored"
            )
        cur.execute(
            f"SELECT DISTINCT t.category, t.record_key FROM {SCHEMA}.contents t "
            f"JOIN {SCHEMA}.erasures e ON e.category = t.category AND e.record_key = t.record_key "
            "WHERE t.backup_id = %s ORDER BY 1, 2",
            (backup_id,),
        )
        return [(str(category), str(key)) for category, key in cur.fetchall()]


def admin(dsn: str, action: str, now: datetime) -> list[str]:
    """``ebbtide backups list|purge``: the lines to print (creates the catalogue if missing)."""
    import psycopg2

    conn = psycopg2.connect(dsn, application_name="ebbtide-backups")
    try:
        create_catalogue(conn)
        if action == "purge":
            done = purge_expired(conn, now)
            return [
                f"purged {len(done.backups)} backup(s) expired at {now.isoformat()}"
                + (f": {', '.join(done.backups)}" if done.backups else ""),
                f"forgot {done.records} content record(s); "
                f"{done.erasures} suppression entr{'y' if done.erasures == 1 else 'ies'} no longer needed",
            ]
        if action != "list":
            raise BackupError(f"unknown action {action!r}")
        lines = [f"{'backup':<28} {'taken':<16} {'expires':<16} {'records':>8}  status"]
        for b in list_backups(conn):
            status = (
                f"purged {b.purged_at.astimezone(UTC):%Y-%m-%d}"
                if b.purged_at
                else ("expired" if b.expires_at <= now else "live")
            )
            lines.append(
                f"{b.backup_id:<28} {b.taken_at.astimezone(UTC):%Y-%m-%d %H:%M} "
                f"{b.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} {b.records:>8}  {status}"
            )
        return lines
    finally:
        conn.close()
