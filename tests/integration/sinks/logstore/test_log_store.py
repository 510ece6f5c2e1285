"""The log-store sink (day partitions of logs.access_log) against the real database and broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.logstore.executor import LogStoreExecutor
from ebbtide.sinks.logstore.partitions import (
    ZONE,
    announcements,
    append_rows,
    create_day_partition,
    list_partitions,
    partition_name,
)
from ebbtide.tools.client import to_record
from tests.support import commands_and_receipts, deletion_command, sink_thread

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
LINES = {DAYS[0]: 2, DAYS[1]: 3, DAYS[2]: 1}


def command(key: str, command_id: str | None = None, category: str = "auto_collected") -> dict[str, Any]:
    return deletion_command(
        "log_store",
        category,
        key,
        command_id=command_id or f"cmd-logs-{key}",
        subject="logs:access_log",
        rule_id="logs",
        deadline=datetime(2026, 5, 31, tzinfo=UTC),
        issued_at=datetime(2026, 6, 1, tzinfo=UTC),
    )


def log_lines(day: date, count: int) -> list[tuple[datetime, str, str, str]]:
    """Synthetic access-log lines of one (Oslo) day: documentation addresses only."""
    start = datetime(day.year, day.month, day.day, tzinfo=ZONE)
    return [
        (
            start + timedelta(hours=23, minutes=59, seconds=i)
            if i == count - 1
            else start + timedelta(hours=i),
            "web-1",
            f"203.0.113.{i + 1}",
            f'203.0.113.{i + 1} - user{i}@example.org "GET /panel HTTP/1.1" 200',
        )
        for i in range(count)
    ]


@pytest.fixture
def logs(database: str) -> str:
    conn = psycopg2.connect(database)
    for day, count in LINES.items():
        create_day_partition(conn, day)
        append_rows(conn, log_lines(day, count))
    conn.close()
    return database


@pytest.fixture
def executor(logs: str) -> Iterator[LogStoreExecutor]:
    made = LogStoreExecutor(logs, clock=lambda: NOW)
    yield made
    made.close()


def partitions(dsn: str) -> dict[str, int]:
    conn = psycopg2.connect(dsn)
    try:
        return {p.name: p.rows for p in list_partitions(conn)}
    finally:
        conn.close()


def scalar(dsn: str, query: str) -> Any:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        row = cur.fetchone()
    conn.close()
    assert row is not None
    return row[0]


def test_partitions_hold_their_day_and_are_listed_oldest_first(logs: str) -> None:
    assert partitions(logs) == {"access_log_20260301": 2, "access_log_20260302": 3, "access_log_20260303": 1}
    # Days are Oslo days: 2 March 00:00 there (23:00Z on 1 March) belongs to 2 March, and the
    # last line of 1 March (23:59 there, 22:59Z) to 1 March.
    assert (
        scalar(logs, "SELECT count(*) FROM logs.access_log_20260302 WHERE logged_at < '2026-03-02 00:00Z'")
        == 1
    )
    assert (
        scalar(logs, "SELECT count(*) FROM logs.access_log_20260301 WHERE logged_at >= '2026-03-01 22:00Z'")
        == 1
    )


def test_dropping_a_partition_removes_exactly_that_day(logs: str, executor: LogStoreExecutor) -> None:
    (done,) = executor.execute([command("access_log_20260302")])
    receipt = done.receipt
    assert (receipt["outcome"], receipt["rows"], receipt["reason"]) == ("DELETED", 3, None)
    assert receipt["executed_at"] == NOW and not done.repeated
    assert partitions(logs) == {"access_log_20260301": 2, "access_log_20260303": 1}
    assert scalar(logs, "SELECT to_regclass('logs.access_log_20260302')") is None
    assert scalar(logs, "SELECT count(*) FROM logs.access_log") == 3
    assert scalar(logs, "SELECT count(*) FROM logs.access_log WHERE logged_at::date = '2026-03-02'") == 0
    assert scalar(logs, "SELECT rows FROM ebbtide_sink.applied_commands") == 3


def test_a_partition_that_does_not_exist_is_not_found(logs: str, executor: LogStoreExecutor) -> None:
    (done,) = executor.execute([command("access_log_20260228")])
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("NOT_FOUND", 0)
    assert len(partitions(logs)) == 3
    assert scalar(logs, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 1


@pytest.mark.parametrize(
    ("key", "category", "reason"),
    [
        ("access_log", "auto_collected", "not a day partition of logs.access_log"),
        ("access_log_20260231", "auto_collected", "not a day partition"),  # no such date
        ("access_log_2026030", "auto_collected", "not a day partition"),
        ("access_log_20260301 ", "auto_collected", "not a day partition"),
        ("access_log_20260301; DROP TABLE logs.access_log", "auto_collected", "not a day partition"),
        ("logs.access_log_20260301", "auto_collected", "not a day partition"),
        ("ACCESS_LOG_20260301", "auto_collected", "not a day partition"),
        ("customers", "auto_collected", "not a day partition"),
        ("access_log_20260301", "client", "holds only auto_collected records, not client"),
    ],
)
def test_a_key_that_is_not_a_partition_name_fails_and_nothing_is_dropped(
    logs: str, executor: LogStoreExecutor, key: str, category: str, reason: str
) -> None:
    (done,) = executor.execute([command(key, category=category)])
    assert done.receipt["outcome"] == "FAILED"
    assert reason in done.receipt["reason"]
    assert partitions(logs) == {"access_log_20260301": 2, "access_log_20260302": 3, "access_log_20260303": 1}
    assert scalar(logs, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 0  # stays retryable


def test_a_table_of_that_name_that_is_not_a_partition_is_not_dropped(
    logs: str, executor: LogStoreExecutor
) -> None:
    with psycopg2.connect(logs) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE logs.access_log_20250101 (note text)")
    conn.close()
    (done,) = executor.execute([command("access_log_20250101")])
    assert done.receipt["outcome"] == "FAILED"
    assert "is not a partition of logs.access_log; not dropped" in done.receipt["reason"]
    assert scalar(logs, "SELECT to_regclass('logs.access_log_20250101')") is not None


def test_a_repeated_command_gets_the_same_receipt_and_drops_nothing_more(
    logs: str, executor: LogStoreExecutor
) -> None:
    (first,) = executor.execute([command("access_log_20260301")])
    conn = psycopg2.connect(logs)
    create_day_partition(conn, DAYS[0])  # late lines of that day arrive after the drop
    append_rows(conn, log_lines(DAYS[0], 1))
    conn.close()
    again, twice = executor.execute([command("access_log_20260301"), command("access_log_20260301")])
    assert again.repeated and twice.repeated
    assert again.encoded == first.encoded == twice.encoded
    assert partitions(logs)["access_log_20260301"] == 1
    # Another command for the same day (a new deadline) does drop the re-created partition.
    (other,) = executor.execute([command("access_log_20260301", command_id="cmd-logs-again")])
    assert (other.receipt["outcome"], other.receipt["rows"]) == ("DELETED", 1)


def test_announcements_are_valid_record_written_events_starting_their_oslo_day(logs: str) -> None:
    conn = psycopg2.connect(logs)
    events = announcements(conn)
    again = announcements(conn)
    conn.close()
    assert events == again  # deterministic ids: announcing twice is a no-op for the pipeline
    assert [e["payload"]["record_key"] for e in events] == [partition_name(d) for d in DAYS]
    first = to_record(events[0])  # what `ebbtide publish` and EventPublisher accept
    assert first["subject_id"] == "logs:access_log:20260301"  # a subject per day: no state grows
    assert first["event_time"] == datetime(2026, 2, 28, 23, tzinfo=UTC)  # 1 March 00:00 in Oslo
    assert first["payload"] == (
        "io.ebbtide.events.RecordWritten",
        {"store": "log_store", "category": "AUTO_COLLECTED", "record_key": "access_log_20260301"},
    )
    assert len({e["event_id"] for e in events}) == 3


@pytest.fixture
def running_sink(settings: Settings, logs: str) -> Iterator[threading.Event]:
    with sink_thread(settings, LogStoreExecutor(logs, stop=threading.Event())) as stop:
        yield stop


def test_the_sink_drops_partitions_for_commands_and_publishes_receipts(
    settings: Settings, logs: str, running_sink: threading.Event
) -> None:
    commands = [command("access_log_20260301"), command("access_log_x"), command("access_log_20260301")]
    got = commands_and_receipts(settings, "log_store", commands)
    assert [(r["record_key"], r["outcome"], r["rows"]) for r in got] == [
        ("access_log_20260301", "DELETED", 2),
        ("access_log_x", "FAILED", 0),
        ("access_log_20260301", "DELETED", 2),
    ]
    assert partitions(logs) == {"access_log_20260302": 3, "access_log_20260303": 1}
