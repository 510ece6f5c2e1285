"""The log store: server logs in a PostgreSQL table partitioned by day; retention drops partitions.

Collected logs (web and mail server access logs: times, IP addresses, e-mail addresses in the
lines) live in ``logs.access_log``, partitioned by range of ``logged_at``, one partition per day
in the policy's time zone (Norwegian days: :data:`ZONE`), named ``logs.access_log_YYYYMMDD``.
Deleting log lines one by one does not scale; dropping a whole day does, so the unit of
retention is the partition, and logs go by age for everyone alike: the log shipper announces each
day as one record (:func:`announcements`; a system subject of its own per day,
:func:`day_subject`, so no subject's state grows with the years; store :data:`STORE`, category
:data:`CATEGORY`, record key the partition name), the policy stamps it (90 days after the day
ends) and the sink answers the deletion command by detaching and dropping that partition: one
receipt per dropped day. A day holds every customer's lines, so no one person's erasure drops it
(the logs rule restricts them instead, and the answer says until when they are kept).

The sink drops nothing but a partition of ``logs.access_log`` whose name is exactly
``access_log_YYYYMMDD`` of a real date: any other key is answered FAILED and nothing is touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from ebbtide.sinks.base.tracked import ensure_tables
from ebbtide.sinks.logstore import CATEGORY as CATEGORY  # re-exported: the module names its records
from ebbtide.sinks.logstore import STORE as STORE
from ebbtide.streams.policy import calendar

SCHEMA = "logs"
TABLE = "access_log"
SUBJECT = f"{SCHEMA}:{TABLE}"  # the prefix of the system subjects the shipper announces days under
PRODUCER = "log-shipper"
_PARTITION = re.compile(rf"{TABLE}_(\d{{8}})")
# The days of the partitions are local days of the policy's time zone (the shipped policy's).
ZONE = calendar.zone(calendar.DEFAULT_ZONE)

TABLE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
    logged_at  timestamptz NOT NULL,
    host       text NOT NULL,
    client_ip  inet,
    line       text NOT NULL
) PARTITION BY RANGE (logged_at);
"""


@dataclass(frozen=True)
class LogPartition:
    name: str  # e.g. access_log_20260301, in schema logs
    day: date  # the local day it holds: [day 00:00, next day 00:00) in the policy's time zone
    rows: int


def partition_name(day: date) -> str:
    return f"{TABLE}_{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The day of a partition name, or None unless it is exactly ``access_log_YYYYMMDD`` of a real date."""
    match = _PARTITION.fullmatch(name)
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return None
    return day if partition_name(day) == name else None


def day_bounds(day: date, zone: tzinfo = ZONE) -> tuple[datetime, datetime]:
    """[start, end) of a local day (23 or 25 hours across a daylight saving change), the range
    of its partition."""
    start = calendar.to_datetime(calendar.start_of_day(day, zone), zone)
    end = calendar.to_datetime(calendar.start_of_day(day + timedelta(days=1), zone), zone)
    return start, end


def create_log_table(conn: Connection) -> None:
    """Create ``logs.access_log`` (partitioned by day) if missing; commits."""
    ensure_tables(conn, [f"{SCHEMA}.{TABLE}"], TABLE_DDL)


def create_day_partition(conn: Connection, day: date, zone: tzinfo = ZONE) -> str:
    """Create the partition of ``day`` if missing (and the table); commits; returns its name."""
    name = partition_name(day)
    start, end = day_bounds(day, zone)
    create_log_table(conn)
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM (%s) TO (%s)").format(
                sql.Identifier(SCHEMA, name), sql.Identifier(SCHEMA, TABLE)
            ),
            (start, end),
        )
    return name


def append_rows(conn: Connection, rows: Iterable[tuple[datetime, str, str | None, str]]) -> int:
    """Append log lines ``(logged_at, host, client_ip, line)``; their days' partitions must exist
    (:func:`create_day_partition`). Commits; returns the number of lines."""
    batch = list(rows)
    with conn, conn.cursor() as cur:
        execute_values(
            cur,
            f"INSERT INTO {SCHEMA}.{TABLE} (logged_at, host, client_ip, line) VALUES %s",
            batch,
            template="(%s, %s, %s::inet, %s)",
            page_size=1000,
        )
    return len(batch)


def attached_partitions(cur: Cursor) -> list[str]:
    """Names of the partitions attached to ``logs.access_log`` (none if the table does not exist)."""
    cur.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{TABLE}",))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return []
    cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        (f"{SCHEMA}.{TABLE}",),
    )
    return [str(name) for (name,) in cur.fetchall()]


def list_partitions(conn: Connection) -> list[LogPartition]:
    """The day partitions of ``logs.access_log``, oldest first, with their row counts."""
    out: list[LogPartition] = []
    with conn, conn.cursor() as cur:
        for name in attached_partitions(cur):
            day = partition_day(name)
            if day is None:  # a partition someone added by hand; not one of ours
                continue
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, name)))
            counted = cur.fetchone()
            out.append(LogPartition(name, day, int(counted[0]) if counted else 0))
    return sorted(out, key=lambda p: p.day)


def day_subject(day: date) -> str:
    """The system subject a day's partition is announced under (``logs:access_log:20260301``):
    one per day, settled when the day is dropped, so no subject's state grows day after day."""
    return f"{SUBJECT}:{day:%Y%m%d}"


def announcement(day: date, producer: str = PRODUCER, zone: tzinfo = ZONE) -> dict[str, Any]:
    """The RecordWritten event (JSON form, as ``EventPublisher.publish`` takes it) announcing a
    day's partition. Its event time is the start of the day; the logs rule counts its period from
    the end of that day (anchor ``end_of_day``), so every line is kept at least as long as the
    policy says. The event id is deterministic: announcing a day again is a no-op for the
    pipeline."""
    name = partition_name(day)
    start, _ = day_bounds(day, zone)
    return {
        "event_id": f"{SUBJECT}:{name}:written",
        "type": "RecordWritten",
        "subject_id": day_subject(day),
        "event_time": start.isoformat(),
        "producer": producer,
        "payload": {"store": STORE, "category": CATEGORY, "record_key": name},
    }


def announcements(conn: Connection, producer: str = PRODUCER) -> list[dict[str, Any]]:
    """The announcements of every existing day partition, oldest first (the caller publishes them)."""
    return [announcement(p.day, producer) for p in list_partitions(conn)]
