"""Data protection of the local stack deploy/local/*.sh runs (the files under its state dir and
the PostgreSQL cluster's roles and log settings): what the stack holds is not readable by other
users of the host, its log keeps no key of a failed batch, and the pipeline's role is no
superuser."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import psycopg2
import pytest

from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.postgres.executor import PostgresExecutor
from tests.integration.sinks.postgres.test_postgres_actions import SERVICES, shop_map
from tests.support import admin_dsn, demo_database, state_dir
from tests.support import deletion_command as command


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def state(stack: tuple[str, str]) -> Path:
    found = state_dir()
    if not (found / "postgres" / "data").is_dir() or not (found / "kafka").is_dir():
        pytest.skip(f"no local stack in {found} (set EBBTIDE_STATE_DIR to the stack's state dir)")
    return found


def test_the_broker_data_and_log_are_private(state: Path) -> None:
    kafka = state / "kafka"
    assert mode(kafka) == 0o700
    assert mode(kafka / "data") == 0o700
    for name in ("kafka.log", "server.properties", "kafka.pid", "sasl-passwords", "scram-users"):
        assert mode(kafka / name) == 0o600, name
    for secrets_dir in (kafka / "tls", kafka / "users"):  # the SASL_SSL listener's keys, passwords
        assert mode(secrets_dir) == 0o700, secrets_dir
        assert all(mode(f) == 0o600 for f in secrets_dir.iterdir()), secrets_dir
    # What the running broker made since: a topic partition's directory and its segment files.
    # Other tests delete their topics meanwhile: a directory may go between listing and reading.
    checked = 0
    for partition in sorted((kafka / "data").iterdir(), key=_mtime, reverse=True):
        if checked == 20:
            break
        try:
            if not partition.is_dir() or "-delete" in partition.name:
                continue
            files = [f for f in partition.iterdir()]
            assert mode(partition) & 0o077 == 0, partition
            assert all(mode(f) & 0o077 == 0 for f in files), partition
        except FileNotFoundError:
            continue
        checked += 1
    assert checked


def test_the_postgres_log_and_secrets_are_private(state: Path) -> None:
    postgres = state / "postgres"
    for name in (
        "postgres.log",
        "password",
        "admin-password",
        "cdc-password",
        "admin-dsn",
        "tls/ca.key",
        "tls/server.key",
    ):
        assert mode(postgres / name) == 0o600, name


def test_the_application_role_is_no_superuser_and_owns_its_databases(stack: tuple[str, str]) -> None:
    conn = psycopg2.connect(stack[1])
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
            assert cur.fetchone() == (False, False, True, False, False)
            cur.execute(
                "SELECT count(*) FROM pg_database WHERE datname IN ('ebbtide_demo', 'ebbtide_test') "
                "AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            )
            assert cur.fetchone() == (2,)
            cur.execute("SELECT pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER')")
            assert cur.fetchone() == (False,)
    finally:
        conn.close()
    assert admin_dsn(stack[1]) != stack[1]  # the scripts' administrator is another role


def test_the_log_keeps_no_key_of_a_failed_batch_and_the_receipt_still_names_error_and_table(
    state: Path, database: str
) -> None:
    log = state / "postgres" / "postgres.log"
    marker = str(10**12 + secrets.randbelow(10**11))  # a key found nowhere else in the log
    demo_database(
        database,
        f"INSERT INTO customers VALUES ({marker}, 'A', 'a@x', '1', 'x', now()); "
        f"INSERT INTO services VALUES ({marker}, {marker}, 'hosting', now(), NULL)",
    )
    start = log.stat().st_size
    executor = PostgresExecutor(shop_map(SERVICES))
    conn = psycopg2.connect(database)
    ensure_tracking(conn)
    try:
        # A key of the wrong type (the sink's statement fails), and a key still referenced.
        with conn, conn.cursor() as cur:
            failed = executor.execute(cur, command("customer_db", "client", f"x{marker}", command_id="c-bad"))
        with conn, conn.cursor() as cur, pytest.raises(psycopg2.errors.ForeignKeyViolation) as refused:
            cur.execute(f"DELETE FROM customers WHERE customer_id = {marker}")
    finally:
        conn.close()
    assert marker in str(refused.value)  # the client that ran it is told everything
    assert failed.receipt["outcome"] == "FAILED"
    reason = failed.receipt["reason"]
    assert "InvalidTextRepresentation" in reason and "services" in reason and marker not in reason
    assert marker not in log.read_bytes()[start:].decode(errors="replace")
