"""The sink's least-privilege role on the real database: it can do what the map says, and the
database refuses it everything else."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest
from psycopg2 import sql

from ebbtide.cli import main
from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks.base.errors import SinkSetupError
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.roles import RoleError, grant_sink_role
from ebbtide.sinks.postgres.sink import PostgresSink
from ebbtide.sinks.postgres.table_map import load_table_map, map_path
from tests.integration.sinks.postgres.test_postgres_sink import command, count
from tests.support import TopicReader, admin_dsn, signed_command, worker_signer


def as_role(dsn: str, role: str, password: str) -> str:
    parts = urlparse(dsn)
    return urlunparse(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def loaded(database: str) -> str:
    demo_db.load(database, build(customers=5, seed=3))
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE staff_notes (note_id bigint PRIMARY KEY, customer_id bigint, note text)")
        cur.execute("INSERT INTO staff_notes VALUES (1, 1, 'called')")
    conn.close()
    return database


@pytest.fixture
def role(loaded: str, stack: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """A fresh role name and password; the role is dropped after the test (it is cluster-wide)."""
    name, password = f"ebbtide_sink_t_{secrets.token_hex(5)}", secrets.token_hex(16)
    yield name, password
    with psycopg2.connect(admin_dsn(loaded)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        if cur.fetchone():
            cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    conn.close()
    admin = psycopg2.connect(admin_dsn(stack[1]))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    admin.close()


def grant(dsn: str, name: str, password: str | None, *stores: str) -> list[str]:
    """``grant_sink_role`` on ``dsn``'s database, as the administrator (the application role may
    not create roles)."""
    conn = psycopg2.connect(admin_dsn(dsn))
    try:
        return grant_sink_role(
            conn, [load_table_map(map_path(s)) for s in stores], name, login=True, password=password
        )
    finally:
        conn.close()


def refused(dsn: str, statement: str) -> str:
    """The error the database gives for ``statement`` (fails the test if it is allowed)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege) as error:
            cur.execute(statement)
    finally:
        conn.close()
    return str(error.value).splitlines()[0]


def test_as_the_role_the_sink_deletes_and_anonymises_what_the_map_says(
    loaded: str, role: tuple[str, str]
) -> None:
    name, password = role
    statements = grant(loaded, name, password, "customer_db")
    assert f"CREATE ROLE \"{name}\" LOGIN PASSWORD '***'" in statements
    assert password not in "\n".join(statements)
    assert f'GRANT DELETE ON "public"."customers" TO "{name}"' in statements
    assert (
        f'GRANT UPDATE ("ordered_from_ip", "contact_email", "customer_id") ON "public"."orders" TO "{name}"'
        in statements
    )
    assert f'GRANT SELECT ("customer_id") ON "public"."orders" TO "{name}"' in statements
    dsn = as_role(loaded, name, password)
    conn = psycopg2.connect(dsn)
    ensure_tracking(conn)  # exists: the role need not (and may not) create it
    executor = PostgresExecutor(load_table_map())
    executor.check(conn)
    orders = count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 1")
    with conn, conn.cursor() as cur:
        done = executor.execute_batch(
            cur, [command("client", "1"), command("correspondence", "2"), command("marketing", "1")]
        )
    conn.close()
    assert [d.receipt["outcome"] for d in done] == ["DELETED", "DELETED", "DELETED"]
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 1") == 0
    assert (
        count(loaded, "SELECT count(*) FROM orders WHERE customer_id IS NULL AND contact_email IS NULL")
        == orders
    )
    assert count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 3


def test_the_role_may_do_nothing_else(loaded: str, role: tuple[str, str]) -> None:
    name, password = role
    grant(loaded, name, password, "customer_db")
    dsn = as_role(loaded, name, password)
    assert refused(dsn, "DELETE FROM staff_notes") == "permission denied for table staff_notes"
    assert refused(dsn, "UPDATE orders SET kind = 'x'") == "permission denied for table orders"
    assert refused(dsn, "UPDATE customers SET name = 'x'") == "permission denied for table customers"
    assert refused(dsn, "SELECT name FROM customers") == "permission denied for table customers"
    assert refused(dsn, "DELETE FROM billing.invoices") == "permission denied for schema billing"
    assert refused(dsn, "DELETE FROM ebbtide_sink.applied_commands") == (
        "permission denied for table applied_commands"
    )
    assert refused(dsn, "CREATE TABLE public.mine (x int)") == "permission denied for schema public"
    assert count(loaded, "SELECT count(*) FROM staff_notes") == 1


def test_the_role_overwrites_the_columns_it_blanks_but_may_not_read_them(
    loaded: str, role: tuple[str, str]
) -> None:
    name, password = role
    grant(loaded, name, password, "customer_db")
    dsn = as_role(loaded, name, password)
    for column in ("contact_email", "ordered_from_ip"):  # blanked by the marketing/client actions
        assert refused(dsn, f"SELECT {column} FROM orders") == "permission denied for table orders"
        assert refused(dsn, f"SELECT count(*) FROM orders WHERE {column} IS NULL") == (
            "permission denied for table orders"
        )
    orders = count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 2")
    assert orders >= 1
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        (done,) = PostgresExecutor(load_table_map()).execute_batch(cur, [command("client", "2")])
    conn.close()
    assert done.receipt["outcome"] == "DELETED"
    assert count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 2") == 0
    assert (
        count(loaded, "SELECT count(*) FROM orders WHERE customer_id IS NULL AND contact_email IS NULL")
        >= orders
    )


def test_without_an_administrator_the_role_is_not_made_and_the_error_says_why(
    loaded: str, role: tuple[str, str]
) -> None:
    name, password = role
    conn = psycopg2.connect(loaded)
    with conn.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        (superuser,) = cur.fetchone()  # type: ignore[misc]
    if superuser:
        conn.close()
        pytest.skip("this cluster's application role is still a superuser (made by an older postgres.sh)")
    try:
        with pytest.raises(RoleError, match="administrator"):
            grant_sink_role(conn, [load_table_map()], name, login=True, password=password)
    finally:
        conn.close()


def test_granting_again_for_another_map_takes_the_old_privileges_away(
    loaded: str, role: tuple[str, str]
) -> None:
    name, password = role
    grant(loaded, name, password, "customer_db")
    statements = grant(loaded, name, None, "billing_db")
    assert f'ALTER ROLE "{name}" LOGIN' in statements
    assert f'REVOKE ALL ON TABLE "public"."customers" FROM "{name}"' in statements
    dsn = as_role(loaded, name, password)  # the password is kept when none is given
    assert (
        refused(dsn, "DELETE FROM customers WHERE customer_id = 1") == "permission denied for table customers"
    )
    executor = PostgresExecutor(load_table_map(map_path("billing_db")))
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        (done,) = executor.execute_batch(cur, [{**command("invoice", "2"), "store": "billing_db"}])
    conn.close()
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("DELETED", 2)


def test_without_the_tracking_table_the_role_is_told_what_to_run(loaded: str, role: tuple[str, str]) -> None:
    name, password = role
    grant(loaded, name, password, "customer_db")
    with psycopg2.connect(admin_dsn(loaded)) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE ebbtide_sink.applied_commands")
    conn.close()
    conn = psycopg2.connect(as_role(loaded, name, password))
    with pytest.raises(SinkSetupError, match="run `ebbtide sink-role` as an administrator"):
        ensure_tracking(conn)
    conn.close()


def test_the_cli_prints_the_grants_and_the_sink_runs_as_the_role(
    loaded: str,
    role: tuple[str, str],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, password = role
    monkeypatch.setenv("EBBTIDE_SINK_ROLE_PASSWORD", password)
    code = main(["sink-role", name, "--map", "customer_db", "--admin-dsn", admin_dsn(loaded), "--login"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert f'GRANT DELETE ON "public"."services" TO "{name}";' in out.splitlines()
    assert password not in out
    stop = threading.Event()
    worker_signer(settings)  # the worker key whose .pub the sink verifies commands with
    sink = PostgresSink(settings, load_table_map(), as_role(loaded, name, password), stop=stop)
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    topics = Topics(settings.topic_prefix)
    out_producer = producer(settings)
    cmd: dict[str, Any] = command("client", "3")
    out_producer.send(
        topics.commands("customer_db"),
        key=b"cust-00001",
        value=codec_for(DELETION_COMMAND).encode(signed_command(settings, cmd)),
    )
    out_producer.flush()
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
    try:
        (receipt,) = receipts.wait_for(lambda seen: len(seen) >= 1, 60, "the receipt")
    finally:
        receipts.close()
        stop.set()
        thread.join(30)
    assert receipt.value is not None and receipt.value["outcome"] == "DELETED"
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 3") == 0
