"""Store maps: the shipped ones load; a bad one is refused with its file and field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ebbtide.sinks.postgres.roles import needed_privileges
from ebbtide.sinks.postgres.table_map import (
    MAP_DIR,
    TableMapError,
    format_value,
    load_table_map,
    map_path,
    parse_table_map,
)


def test_the_customer_map_deletes_children_first_and_keeps_orders_blanked() -> None:
    store_map = load_table_map(map_path("customer_db"))
    assert store_map.store == "customer_db"
    client = store_map.actions("client")
    assert [(a.table, a.action) for a in client] == [
        ("services", "delete"),
        ("orders", "anonymise"),
        ("customers", "delete"),
    ]
    assert client[1].columns == ("ordered_from_ip", "contact_email", "customer_id")
    assert client[1].value_of("contact_email") is None  # NULL
    assert store_map.actions("invoice") == ()  # invoices are in the billing store


def test_the_billing_map_unlinks_payments_before_deleting_their_invoice() -> None:
    store_map = load_table_map(map_path("billing_db"))
    assert store_map.store == "billing_db"
    assert [(a.qualified, a.action, a.columns) for a in store_map.actions("invoice")] == [
        ("billing.payments", "anonymise", ("invoice_id",)),
        ("billing.invoices", "delete", ()),
    ]
    assert store_map.tables() == ["billing.payments", "billing.invoices"]


def test_a_shipped_map_is_found_by_store_id_and_a_path_stays_a_path(tmp_path: Path) -> None:
    assert map_path("billing_db") == MAP_DIR / "billing_db.toml"
    assert map_path(str(tmp_path / "x.toml")) == tmp_path / "x.toml"


def test_the_privileges_a_sink_needs_follow_its_actions() -> None:
    needed = needed_privileges([load_table_map(map_path("customer_db"))])
    orders = needed["public.orders"]
    assert (orders.delete, orders.update) == (False, ["ordered_from_ip", "contact_email", "customer_id"])
    assert orders.select == ["customer_id"]  # the key only: never the columns it blanks
    customers = needed["public.customers"]
    assert (customers.delete, customers.update, customers.select) == (True, [], ["customer_id"])


def doc(*actions: dict[str, Any], category: str = "client") -> dict[str, Any]:
    return {"store": "shop", "categories": {category: list(actions)}}


DELETE = {"table": "customers", "key_column": "id", "action": "delete"}
ANONYMISE = {"table": "orders", "key_column": "customer_id", "action": "anonymise", "columns": ["ip"]}


def test_a_well_formed_document_parses() -> None:
    store_map = parse_table_map(
        doc({**ANONYMISE, "replace": {"ip": "0.0.0.0"}}, {**DELETE, "subject_column": "id"}), "shop.toml"
    )
    orders, customers = store_map.actions("client")
    assert orders.value_of("ip") == "0.0.0.0"
    assert customers.subject_column == "id" and customers.deletes
    assert store_map.source == "shop.toml"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"store": "Shop", "categories": {}}, "shop.toml: store: must be a lower-case identifier"),
        (
            {"store": "shop", "tables": [{"category": "client"}]},
            "shop.toml: tables: the old one-table-per-category format",
        ),
        ({"store": "shop"}, "shop.toml: categories: no [[categories.<category>]] entries"),
        (doc(DELETE, category="clients"), "shop.toml: categories.clients: unknown category"),
        (doc({**DELETE, "action": "drop"}), "shop.toml: categories.client[0].action: 'drop': must be one of"),
        (
            doc(DELETE, {**ANONYMISE, "columns": []}),
            "shop.toml: categories.client[1].columns: an anonymise action must list the columns",
        ),
        (
            doc({**DELETE, "columns": ["name"]}),
            "categories.client[0].columns: a delete action removes whole rows",
        ),
        (
            doc({**ANONYMISE, "replace": {"email": "x"}}),
            "shop.toml: categories.client[0].replace.email: not one of the action's columns",
        ),
        (
            doc({**DELETE, "table": "customers; drop"}),
            "categories.client[0].table: 'customers; drop' is not a",
        ),
        (doc({**DELETE, "key_column": "Id"}), "categories.client[0].key_column: 'Id' is not a plain"),
        (doc({**DELETE, "colums": ["x"]}), "shop.toml: categories.client[0].colums: unknown key"),
        (doc(DELETE, DELETE), "shop.toml: categories.client[1].table: customers is listed twice"),
        (
            doc({**DELETE, "subject_column": "id", "subject_format": "c-{}-{}"}),
            "categories.client[0].subject_format: 'c-{}-{}': must have exactly one {} field",
        ),
        (doc({**DELETE, "ref_format": "inv-{}"}), "categories.client[0].ref_format: needs a ref_column"),
    ],
)
def test_a_bad_map_names_its_file_and_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(TableMapError) as error:
        parse_table_map(document, "shop.toml")
    assert message in str(error.value)


def test_an_unreadable_map_names_its_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("store = ", encoding="utf-8")
    with pytest.raises(TableMapError, match=str(bad)):
        load_table_map(bad)


def test_formats_make_subject_ids_and_refs_and_say_what_does_not_fit() -> None:
    assert format_value("cust-{:05d}", 42, "customers.customer_id") == "cust-00042"
    assert format_value(None, 42, "x") == "42"
    with pytest.raises(ValueError, match=r"customers\.customer_id: 'cust-\{:05d\}' cannot format str"):
        format_value("cust-{:05d}", "abc", "customers.customer_id")
