"""The sink contract (:mod:`tests.integration.sinks.contract`) for every shipped kind, each
against its real store: PostgreSQL for the postgres, log-store and backups sinks, the vendor
stand-in for the HTTP sink."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg2
import pytest

from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.backups import catalogue
from ebbtide.sinks.http.vendors import tuned
from ebbtide.sinks.logstore import partitions
from tests.integration.sinks.contract import Running, SinkContract

# Keys the contract's records get in the log store: one day partition each.
_DAYS = {"rep-1": 1, "tr-1": 2, "tr-2": 3, "tr-3": 4, "un-1": 5, "se-1": 6, "se-2": 7}

# A table map of its own: the contract is the loop's and the kind's, not the demo schema's.
_TABLE_MAP = """
store = "contract_db"

[[categories.client]]
table = "contract.records"
key_column = "record_key"
action = "delete"
"""


def _sql(dsn: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def _drop_connection(dsn: str, store: str) -> None:
    """End the sink's database session, as a restarted database would: its next batch fails."""
    ended = _sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND datname = current_database()",
        f"ebbtide-sink-{store}",
    )
    assert ended and all(row[0] for row in ended), f"no session of the {store} sink to end"


class TestPostgresContract(SinkContract):
    kind = "postgres"
    store = "contract_db"
    category = "client"

    @pytest.fixture
    def store_ready(self, settings: Settings, database: str, tmp_path: Path) -> Iterator[None]:
        _sql(database, "CREATE SCHEMA contract; CREATE TABLE contract.records (record_key text PRIMARY KEY)")
        self.dsn = database
        self.map = tmp_path / "contract_db.toml"
        self.map.write_text(_TABLE_MAP, encoding="utf-8")
        yield

    def args(self) -> argparse.Namespace:
        return argparse.Namespace(map=str(self.map))

    def seed(self, key: str) -> None:
        _sql(self.dsn, "INSERT INTO contract.records VALUES (%s)", key)

    def done(self, key: str) -> bool:
        return not _sql(self.dsn, "SELECT 1 FROM contract.records WHERE record_key = %s", key)

    def break_once(self, running: Running) -> None:
        _drop_connection(self.dsn, self.store)


class TestHttpContract(SinkContract):
    kind = "http"
    store = "support_desk"
    category = "client"

    @pytest.fixture
    def store_ready(
        self, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[None]:
        self.standin = VendorStandIn()
        monkeypatch.setenv("EBBTIDE_VENDOR_URL", self.standin.start())
        # One failed call opens the breaker (the transient error); a short pause, then a probe.
        fast = {"timeout": 0.5, "backoff_base": 0.01, "backoff_max": 0.05}
        self.config = tmp_path / "vendors.toml"
        self.config.write_text(tuned({**fast, "breaker_threshold": 1, "breaker_open_seconds": 0.3}))
        try:
            yield
        finally:
            self.standin.stop()

    def args(self) -> argparse.Namespace:
        return argparse.Namespace(config=str(self.config), stores=self.store, metrics_port=None)

    def seed(self, key: str) -> None:
        self.standin.seed(self.store, self.category, key)

    def done(self, key: str) -> bool:
        return key not in self.standin.keys(self.store, self.category)

    def break_once(self, running: Running) -> None:
        self.standin.set_mode(self.store, "down", count=1)


class TestLogStoreContract(SinkContract):
    kind = "logstore"
    store = partitions.STORE
    category = partitions.CATEGORY

    @pytest.fixture
    def store_ready(self, settings: Settings, database: str) -> Iterator[None]:
        self.dsn = database
        yield

    def command(self, key: str, command_id: str, subject: str = "cust-00001") -> dict[str, object]:
        day = date(2026, 3, _DAYS[key])
        return super().command(partitions.partition_name(day), command_id, partitions.day_subject(day))

    def seed(self, key: str) -> None:
        conn = psycopg2.connect(self.dsn)
        try:
            day = date(2026, 3, _DAYS[key])
            partitions.create_day_partition(conn, day)
            noon = datetime(2026, 3, _DAYS[key], 12, tzinfo=UTC)
            partitions.append_rows(conn, [(noon, "web1", "192.0.2.7", "GET / 200")])
        finally:
            conn.close()

    def done(self, key: str) -> bool:
        name = partitions.partition_name(date(2026, 3, _DAYS[key]))
        return not _sql(self.dsn, "SELECT to_regclass(%s)", f"{partitions.SCHEMA}.{name}")[0][0]

    def break_once(self, running: Running) -> None:
        _drop_connection(self.dsn, self.store)


class TestBackupsContract(SinkContract):
    kind = "backups"
    store = catalogue.STORE
    category = catalogue.CATEGORY
    outcome = "EXPIRES"  # a backup is immutable: the record goes when the last copy expires

    @pytest.fixture
    def store_ready(self, settings: Settings, database: str) -> Iterator[None]:
        self.dsn = database
        yield

    def seed(self, key: str) -> None:
        conn = psycopg2.connect(self.dsn)
        try:  # live when the command is issued (2025-01-02)
            taken, expires = datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)
            catalogue.take_backup(conn, f"backup-{key}", taken, expires, [(self.category, key)])
        finally:
            conn.close()

    def done(self, key: str) -> bool:
        """The erasure is on the restore suppression list (the copies stay until they expire)."""
        return bool(_sql(self.dsn, f"SELECT 1 FROM {catalogue.SCHEMA}.erasures WHERE record_key = %s", key))

    def break_once(self, running: Running) -> None:
        _drop_connection(self.dsn, self.store)
