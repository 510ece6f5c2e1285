"""Table actions of the PostgreSQL sink on the real database: anonymise, children before parents,
several tables per command, and the map checks at sink start."""

from __future__ import annotations

import threading
from typing import Any

import psycopg2
import pytest

from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.receipts import Executed
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.postgres.check import check_table_map
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.sink import PostgresSink
from ebbtide.sinks.postgres.table_map import (
    TableMap,
    TableMapError,
    load_table_map,
    map_path,
    parse_table_map,
)
from tests.integration.sinks.postgres.test_postgres_sink import command, count


@pytest.fixture
def loaded(database: str) -> str:
    demo_db.load(database, build(customers=5, seed=3))
    conn = psycopg2.connect(database)
    ensure_tracking(conn)
    conn.close()
    return database


def shop_map(*actions: dict[str, Any], category: str = "client", store: str = "customer_db") -> TableMap:
    return parse_table_map({"store": store, "categories": {category: list(actions)}}, "test.toml")


ORDERS = {
    "table": "orders",
    "key_column": "customer_id",
    "action": "anonymise",
    "columns": ["ordered_from_ip", "contact_email"],
    "replace": {"contact_email": "erased@example.invalid"},
}
SERVICES = {"table": "services", "key_column": "customer_id", "action": "delete"}
CUSTOMERS = {"table": "customers", "key_column": "customer_id", "action": "delete"}


def run(dsn: str, executor: PostgresExecutor, *commands: dict[str, Any]) -> list[Executed]:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        check_table_map(cur, executor.table_map)
        done = executor.execute_batch(cur, list(commands))
    conn.close()
    return done


def test_anonymise_keeps_the_rows_blanks_the_columns_and_touches_nothing_twice(loaded: str) -> None:
    executor = PostgresExecutor(shop_map(ORDERS))
    orders = count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 4")
    assert orders >= 2
    first, repeat, other = (
        run(loaded, executor, command("client", "4"))[0],
        run(loaded, executor, command("client", "4"))[0],  # the same command again
        run(loaded, executor, command("client", "4", command_id="another-command"))[0],
    )
    assert (first.receipt["outcome"], first.receipt["rows"]) == ("ANONYMISED", orders)
    assert count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 4") == orders  # rows stay
    assert (
        count(
            loaded,
            "SELECT count(*) FROM orders WHERE customer_id = 4 "
            "AND ordered_from_ip IS NULL AND contact_email = 'erased@example.invalid'",
        )
        == orders
    )
    assert count(loaded, "SELECT count(*) FROM orders WHERE ordered_from_ip IS NOT NULL") > 0  # others kept
    assert repeat.repeated and repeat.encoded == first.encoded
    # A new command finds the rows blank already: nothing touched, nothing to report.
    assert (other.receipt["outcome"], other.receipt["rows"], other.repeated) == ("NOT_FOUND", 0, False)


def test_a_delete_that_removes_rows_makes_the_receipt_deleted_and_rows_add_up(loaded: str) -> None:
    unlinked = {**ORDERS, "columns": ["ordered_from_ip", "contact_email", "customer_id"]}
    executor = PostgresExecutor(shop_map(SERVICES, unlinked, CUSTOMERS))
    services = count(loaded, "SELECT count(*) FROM services WHERE customer_id = 4")
    orders = count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 4")
    batch = [command("client", "4"), command("client", "999"), command("client", "5")]
    five = sum(
        count(loaded, f"SELECT count(*) FROM {t} WHERE customer_id = 5") for t in ("services", "orders")
    )
    done = run(loaded, executor, *batch)
    assert [(d.receipt["outcome"], d.receipt["rows"]) for d in done] == [
        ("DELETED", services + orders + 1),
        ("NOT_FOUND", 0),
        ("DELETED", five + 1),
    ]
    stored = count(loaded, "SELECT sum(rows) FROM ebbtide_sink.applied_commands")
    assert stored == services + orders + five + 2


def test_the_order_of_actions_matters_and_a_parent_listed_first_is_refused_at_start(
    loaded: str, settings: Settings
) -> None:
    wrong = shop_map(CUSTOMERS, SERVICES)  # the parent before the child that references it
    with pytest.raises(TableMapError) as error:
        run(loaded, PostgresExecutor(wrong), command("client", "1"))
    assert str(error.value) == (
        "test.toml: categories.client: public.services (action 1) references public.customers (action 0) "
        "by foreign key services_customer_id_fkey; list it before public.customers (children before parents)"
    )
    # Why: executed in that order, the parent's delete is refused by the foreign key.
    conn = psycopg2.connect(loaded)
    with conn, conn.cursor() as cur:
        (done,) = PostgresExecutor(wrong).execute_batch(cur, [command("client", "1")])
    conn.close()
    assert done.receipt["outcome"] == "FAILED"
    assert done.receipt["reason"] == "ForeignKeyViolation deleting from customers"
    assert count(loaded, "SELECT count(*) FROM services WHERE customer_id = 1") > 0  # nothing half-done
    # The sink refuses to start with such a map.
    with pytest.raises(TableMapError, match="children before parents"):
        PostgresSink(settings, wrong, loaded, stop=threading.Event())


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({**CUSTOMERS, "table": "clients"}, "test.toml: categories.client[0].table: no table public.clients"),
        (
            {**CUSTOMERS, "key_column": "id"},
            "categories.client[0].key_column: no column id in public.customers",
        ),
        (
            {**ORDERS, "columns": ["ip"], "replace": {}},
            "categories.client[0].columns: no column ip in public.orders",
        ),
        ({**CUSTOMERS, "time_column": "created"}, "categories.client[0].time_column: no column created in"),
        (
            {**ORDERS, "table": "customers", "columns": ["email"], "replace": {}},
            "categories.client[0].columns: public.customers.email is NOT NULL; give it a replacement value",
        ),
    ],
)
def test_a_map_that_does_not_fit_the_database_names_the_field(
    loaded: str, action: dict[str, Any], message: str
) -> None:
    conn = psycopg2.connect(loaded)
    with conn, conn.cursor() as cur, pytest.raises(TableMapError) as error:
        check_table_map(cur, shop_map(action))
    conn.close()
    assert message in str(error.value)


def test_the_shipped_maps_fit_the_demo_database(loaded: str) -> None:
    conn = psycopg2.connect(loaded)
    with conn, conn.cursor() as cur:
        for store in ("customer_db", "billing_db"):
            check_table_map(cur, load_table_map(map_path(store)))
    conn.close()


def test_deleting_an_invoice_unlinks_its_payments_which_stay_on_their_own_clock(loaded: str) -> None:
    executor = PostgresExecutor(load_table_map(map_path("billing_db")))
    payments = count(loaded, "SELECT count(*) FROM billing.payments WHERE invoice_id = 1")
    assert payments == 1
    invoice = {**command("invoice", "1"), "store": "billing_db"}
    (done,) = run(loaded, executor, invoice)
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("DELETED", 2)  # invoice + unlinked payment
    assert count(loaded, "SELECT count(*) FROM billing.invoices WHERE invoice_id = 1") == 0
    assert (
        count(loaded, "SELECT count(*) FROM billing.payments WHERE payment_id = 1 AND invoice_id IS NULL")
        == 1
    )
    payment = {**command("payment", "1"), "store": "billing_db"}
    (done,) = run(loaded, executor, payment)
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("DELETED", 1)
    assert count(loaded, "SELECT count(*) FROM billing.payments WHERE payment_id = 1") == 0


def test_a_domain_contact_is_deleted_on_its_own_and_the_customer_stays(loaded: str) -> None:
    with psycopg2.connect(loaded) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO domain_contacts VALUES "
            "(9071, 1, 'example.no', 'A', 'a@example.invalid', NULL, '2020-01-01')"
        )
    conn.close()
    executor = PostgresExecutor(load_table_map(map_path("customer_db")))
    before = count(loaded, "SELECT count(*) FROM domain_contacts")
    (done,) = run(loaded, executor, command("domain_contact", "9071"))
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("DELETED", 1)
    assert count(loaded, "SELECT count(*) FROM domain_contacts") == before - 1
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 1") == 1
