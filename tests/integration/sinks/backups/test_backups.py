"""The backup sink (catalogue, EXPIRES receipts, restore suppression) against the real database and broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest

from ebbtide import cli
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.backups.catalogue import (
    BackupError,
    create_catalogue,
    list_backups,
    purge_expired,
    restore_suppression,
    take_backup,
)
from ebbtide.sinks.backups.executor import BackupsExecutor
from tests.support import commands_and_receipts, deletion_command, sink_thread

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)  # the executor's clock (NOT_FOUND receipts)
JAN_1, JAN_2 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC), datetime(2026, 1, 2, 2, 0, tzinfo=UTC)
FEB_1, MAR_1 = datetime(2026, 2, 1, 2, 0, tzinfo=UTC), datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def command(
    key: str, issued_at: datetime = datetime(2026, 1, 15, tzinfo=UTC), command_id: str | None = None
) -> dict[str, Any]:
    return deletion_command(
        "hosting_backups",
        "hosted",
        key,
        command_id=command_id or f"cmd-hosted-{key}-{issued_at:%Y%m%d}",
        subject="cust-00007",
        rule_id="processor",
        deadline=issued_at,
        issued_at=issued_at,
    )


@pytest.fixture
def conn(database: str) -> Iterator[Any]:
    """The catalogue with two daily backups: site-1 in both, site-2 in the first only."""
    made = psycopg2.connect(database)
    create_catalogue(made)
    take_backup(made, "daily-20260101", JAN_1, FEB_1, [("hosted", "site-1"), ("hosted", "site-2")])
    take_backup(made, "daily-20260102", JAN_2, MAR_1, [("hosted", "site-1")])
    yield made
    made.close()


@pytest.fixture
def executor(database: str, conn: Any) -> Iterator[BackupsExecutor]:
    made = BackupsExecutor(database, clock=lambda: NOW)
    yield made
    made.close()


def erasures(conn: Any) -> list[tuple[str, str, datetime]]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT command_id, record_key, until FROM backups.erasures ORDER BY command_id")
        return list(cur.fetchall())


def test_a_record_in_two_backups_expires_with_the_later_one(conn: Any, executor: BackupsExecutor) -> None:
    (done,) = executor.execute([command("site-1")])
    receipt = done.receipt
    assert (receipt["outcome"], receipt["rows"], receipt["executed_at"]) == ("EXPIRES", 2, MAR_1)
    assert receipt["reason"] == (
        "held in 2 backups; gone when the last expires on 2026-03-01 "
        "(backups are immutable; restores re-delete it)"
    )
    assert erasures(conn) == [("cmd-hosted-site-1-20260115", "site-1", MAR_1)]


def test_restoring_a_backup_re_deletes_the_records_erased_from_it(
    conn: Any, executor: BackupsExecutor
) -> None:
    assert restore_suppression(conn, "daily-20260101") == []
    executor.execute([command("site-1")])
    assert restore_suppression(conn, "daily-20260101") == [("hosted", "site-1")]  # not site-2
    assert restore_suppression(conn, "daily-20260102") == [("hosted", "site-1")]
    with pytest.raises(BackupError, match="no backup weekly-1 in the catalogue"):
        restore_suppression(conn, "weekly-1")


def test_once_both_backups_are_purged_a_new_command_is_not_found(
    conn: Any, executor: BackupsExecutor
) -> None:
    executor.execute([command("site-1")])
    first = purge_expired(conn, FEB_1)
    assert (first.backups, first.records, first.erasures) == (["daily-20260101"], 2, 0)
    (later,) = executor.execute([command("site-1", issued_at=datetime(2026, 2, 10, tzinfo=UTC))])
    assert (later.receipt["outcome"], later.receipt["rows"], later.receipt["executed_at"]) == (
        "EXPIRES",
        1,
        MAR_1,
    )
    assert later.receipt["reason"].startswith("held in 1 backup; gone when the last expires on 2026-03-01")
    second = purge_expired(conn, MAR_1)
    assert (second.backups, second.records, second.erasures) == (["daily-20260102"], 1, 2)
    assert purge_expired(conn, MAR_1).backups == []  # nothing left to purge
    (gone,) = executor.execute([command("site-1", issued_at=datetime(2026, 3, 2, tzinfo=UTC))])
    assert (gone.receipt["outcome"], gone.receipt["rows"], gone.receipt["reason"]) == ("NOT_FOUND", 0, None)
    assert gone.receipt["executed_at"] == NOW
    with pytest.raises(BackupError, match="was purged on 2026-03-01; it cannot be restored"):
        restore_suppression(conn, "daily-20260102")
    assert [(b.backup_id, b.purged_at, b.records) for b in list_backups(conn)] == [
        ("daily-20260101", FEB_1, 0),
        ("daily-20260102", MAR_1, 0),
    ]


def test_a_backup_expired_at_the_command_time_does_not_count(conn: Any, executor: BackupsExecutor) -> None:
    (done,) = executor.execute([command("site-2", issued_at=datetime(2026, 2, 10, tzinfo=UTC))])
    assert (done.receipt["outcome"], done.receipt["executed_at"]) == ("NOT_FOUND", NOW)


def test_a_record_in_no_backup_is_not_found(conn: Any, executor: BackupsExecutor) -> None:
    (done,) = executor.execute([command("site-99")])
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("NOT_FOUND", 0)


def test_a_repeated_command_gets_the_same_receipt(conn: Any, executor: BackupsExecutor) -> None:
    (first,) = executor.execute([command("site-1")])
    take_backup(
        conn, "daily-20260103", datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), []
    )
    again, twice = executor.execute([command("site-1"), command("site-1")])
    assert again.repeated and twice.repeated
    assert again.encoded == first.encoded == twice.encoded
    assert len(erasures(conn)) == 1


def test_a_backup_taken_after_the_erasure_keeps_the_record_suppressed_until_it_expires(
    conn: Any, executor: BackupsExecutor
) -> None:
    """The primary store may delete the record after the backup sink answered: a backup in between
    still holds it, and must not bring it back on a restore."""
    executor.execute([command("site-1")])
    late_expiry = datetime(2026, 4, 16, tzinfo=UTC)
    take_backup(
        conn, "daily-20260116", datetime(2026, 1, 16, tzinfo=UTC), late_expiry, [("hosted", "site-1")]
    )
    assert erasures(conn)[0][2] == late_expiry
    assert restore_suppression(conn, "daily-20260116") == [("hosted", "site-1")]
    assert purge_expired(conn, MAR_1).erasures == 0  # still held by the late backup
    assert restore_suppression(conn, "daily-20260116") == [("hosted", "site-1")]


def test_the_catalogue_refuses_impossible_backups(conn: Any) -> None:
    with pytest.raises(BackupError, match="already in the catalogue"):
        take_backup(conn, "daily-20260101", JAN_1, FEB_1, [])
    with pytest.raises(BackupError, match="expires_at must be after taken_at"):
        take_backup(conn, "broken", FEB_1, JAN_1, [])


def test_a_command_for_another_store_fails(conn: Any, executor: BackupsExecutor) -> None:
    (done,) = executor.execute([{**command("site-1"), "store": "customer_db"}])
    assert done.receipt["outcome"] == "FAILED"
    assert done.receipt["reason"] == "command for store customer_db sent to hosting_backups"
    assert erasures(conn) == []


def test_the_cli_lists_and_purges(
    database: str, conn: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EBBTIDE_PG_DSN", database)
    assert cli.main(["backups", "list", "--now", "2026-02-15T00:00:00Z"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].split() == [
        "daily-20260101",
        "2026-01-01",
        "02:00",
        "2026-02-01",
        "02:00",
        "2",
        "expired",
    ]
    assert listed[2].split()[-2:] == ["1", "live"]
    assert cli.main(["backups", "purge", "--now", "2026-02-15T00:00:00Z"]) == 0
    assert (
        "purged 1 backup(s) expired at 2026-02-15T00:00:00+00:00: daily-20260101" in capsys.readouterr().out
    )
    assert [b.purged_at for b in list_backups(conn)] == [datetime(2026, 2, 15, tzinfo=UTC), None]


@pytest.fixture
def running_sink(settings: Settings, database: str, conn: Any) -> Iterator[threading.Event]:
    with sink_thread(settings, BackupsExecutor(database, stop=threading.Event())) as stop:
        yield stop


def test_the_sink_answers_commands_with_expiry_receipts(
    settings: Settings, conn: Any, running_sink: threading.Event
) -> None:
    got = commands_and_receipts(
        settings, "hosting_backups", [command("site-1"), command("site-2"), command("site-3")]
    )
    assert [(r["record_key"], r["outcome"], r["rows"]) for r in got] == [
        ("site-1", "EXPIRES", 2),
        ("site-2", "EXPIRES", 1),
        ("site-3", "NOT_FOUND", 0),
    ]
    assert [r["executed_at"] for r in got[:2]] == [MAR_1, FEB_1]
    assert [key for _, key, _ in erasures(conn)] == ["site-1", "site-2", "site-3"]
