"""``ebbtide backfill``: announce the records an existing database already holds.

A store that joins the pipeline holds rows nobody announced. For every table action of its store
map with a ``subject_column``, the backfill reads the table (a server-side cursor, in chunks) and
publishes one RecordWritten lifecycle event per row: store and category from the map, record key
the key column as text, subject from ``subject_column`` (through ``subject_format``), ref from
``ref_column`` (through ``ref_format``), event time from ``time_column`` (else the time the
backfill started). Event ids are deterministic, ``backfill:<store>:<category>:<key>``, so
running it again (after a failure, or to be sure) announces nothing twice: the pipeline ignores
an event id it has seen.

All tables are counted and read in one read-only REPEATABLE READ transaction: the totals of the
progress bars are exactly the rows read. Rows whose subject or key is NULL are skipped and
counted. Nothing personal is printed: table names and counts only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any, Protocol

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ
from psycopg2.extensions import connection as Connection
from rich.console import Console

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.tracking import utc_now
from ebbtide.sinks.postgres.check import check_table_map
from ebbtide.sinks.postgres.table_map import TableAction, TableMap, TableMapError, format_value
from ebbtide.tools.progress import progress_bar

PRODUCER = "ebbtide-backfill"
CHUNK = 5000  # rows fetched (and events flushed to the broker) at a time


class Publisher(Protocol):
    """What the backfill needs of :class:`ebbtide.tools.client.EventPublisher`."""

    def publish_record(self, record: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


@dataclass
class TableReport:
    store: str
    action: TableAction
    total: int  # rows at the start (COUNT(*) in the backfill's snapshot)
    events: int = 0  # events published (or, in a dry run, built and validated)
    skipped: int = 0  # rows with a NULL key or subject
    refused: int = 0  # rows no valid event can announce (e.g. a key over the field limit)
    first_refusal: str | None = None  # why the first was refused (names fields, never values)

    @property
    def label(self) -> str:
        return f"{self.store} {self.action.category} {self.action.qualified}"

    def summary(self, dry_run: bool = False) -> str:
        verb = "would publish" if dry_run else "published"
        return (
            f"{self.label}: {self.total} rows, {verb} {self.events} events"
            + (f", skipped {self.skipped} (no key or subject)" if self.skipped else "")
            + (f", refused {self.refused} ({self.first_refusal})" if self.refused else "")
        )


def event_id(store: str, category: str, key: str) -> str:
    return f"backfill:{store}:{category}:{key}"


def sources(store_maps: Sequence[TableMap]) -> list[tuple[str, TableAction]]:
    """(store, action) of every table action that names a subject_column."""
    return [(m.store, a) for m in store_maps for a in m.all_actions() if a.subject_column is not None]


def _event_time(value: Any, where: str, default: datetime) -> datetime:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # timestamp without time zone: UTC
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    raise TableMapError(
        f"{where}: time_column must be a timestamp or date column, not {type(value).__name__}"
    )


class Backfill:
    """One backfill run over ``conn``: :meth:`plan` checks the maps and counts, :meth:`run` reads
    one table and publishes (or only builds, without a publisher) its events."""

    def __init__(
        self,
        conn: Connection,
        store_maps: Sequence[TableMap],
        clock: Callable[[], datetime] = utc_now,
        chunk: int = CHUNK,
    ) -> None:
        self.conn = conn
        self.store_maps = store_maps
        self.started = clock()
        self.chunk = chunk

    def plan(self) -> list[TableReport]:
        """Check every map against the database and count the rows of each table to read."""
        todo = sources(self.store_maps)
        if not todo:
            names = ", ".join(m.source for m in self.store_maps)
            raise TableMapError(f"{names}: no table action has a subject_column; nothing to backfill")
        self.conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        reports = []
        with self.conn.cursor() as cur:
            for store_map in self.store_maps:
                check_table_map(cur, store_map)
            for store, action in todo:
                table = sql.Identifier(action.schema, action.name)
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
                reports.append(TableReport(store, action, int(cur.fetchone()[0])))  # type: ignore[index]
        return reports

    def run(
        self,
        report: TableReport,
        publisher: Publisher | None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> TableReport:
        """Read ``report``'s table and publish one event per row; ``on_chunk(rows)`` after each
        chunk the broker acknowledged."""
        from ebbtide.tools.client import InvalidEvent, to_record

        action = report.action
        where = f"{action.qualified} (store map {report.store}, category {action.category})"
        for rows in self._chunks(action):
            for key, subject, ref, written in rows:
                if key is None or subject is None:
                    report.skipped += 1
                    continue
                event = {
                    "event_id": event_id(report.store, action.category, key),
                    "type": "RecordWritten",
                    "subject_id": format_value(action.subject_format, subject, f"{where}.subject_column"),
                    "event_time": _event_time(written, where, self.started).isoformat(),
                    "producer": PRODUCER,
                    "payload": {
                        "store": report.store,
                        "category": action.category,
                        "record_key": key,
                        "ref": None
                        if ref is None
                        else format_value(action.ref_format, ref, f"{where}.ref_column"),
                    },
                }
                try:
                    record = to_record(event)
                except InvalidEvent as exc:  # this row cannot be announced; the others still are
                    report.refused += 1
                    report.first_refusal = report.first_refusal or str(exc)
                    continue
                if publisher is not None:
                    publisher.publish_record(record)
                report.events += 1
            if publisher is not None:
                publisher.flush()  # raises PublishFailed; the deterministic ids make a re-run safe
            if on_chunk is not None:
                on_chunk(len(rows))
        return report

    def _chunks(self, action: TableAction) -> Iterator[list[tuple[Any, ...]]]:
        def column(name: str | None, as_text: bool = False) -> sql.Composable:
            if name is None:
                return sql.SQL("NULL")
            return sql.SQL("t.{}::text" if as_text else "t.{}").format(sql.Identifier(name))

        query = sql.SQL("SELECT {key}, {subject}, {ref}, {written} FROM {table} AS t").format(
            key=column(action.key_column, as_text=True),
            subject=column(action.subject_column),
            ref=column(action.ref_column),
            written=column(action.time_column),
            table=sql.Identifier(action.schema, action.name),
        )
        with self.conn.cursor(name="ebbtide_backfill") as cur:
            cur.itersize = self.chunk
            cur.execute(query)
            while rows := cur.fetchmany(self.chunk):
                yield rows


def run_backfill(
    settings: Settings,
    dsn: str,
    store_maps: Sequence[TableMap],
    *,
    dry_run: bool = False,
    chunk: int = CHUNK,
    console: Console | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> list[TableReport]:
    """The whole ``ebbtide backfill``: plan, then read and publish every table. On a terminal a
    rich progress bar per table and the summary lines at the end; otherwise a plain summary line
    per table as it is done. Raises TableMapError, psycopg2.Error, ebbtide.tools.client.PublishFailed."""
    from ebbtide.tools.client import EventPublisher

    console = console or Console()
    conn = psycopg2.connect(dsn, application_name="ebbtide-backfill")
    try:
        backfill = Backfill(conn, store_maps, clock, chunk)
        reports = backfill.plan()
        publisher = None if dry_run else EventPublisher(settings)
        try:
            if console.is_terminal:
                with progress_bar(console) as progress:
                    for report in reports:
                        task = progress.add_task(report.label, total=report.total)
                        backfill.run(report, publisher, partial(progress.advance, task))
                for report in reports:
                    console.print(report.summary(dry_run), markup=False, highlight=False, soft_wrap=True)
            else:
                for report in reports:
                    backfill.run(report, publisher)
                    console.print(report.summary(dry_run), markup=False, highlight=False, soft_wrap=True)
        finally:
            if publisher is not None:
                publisher.close()
        conn.rollback()  # read only: end the snapshot
    finally:
        conn.close()
    return reports
