"""The demo customer database: schema and rows, in a PostgreSQL the project started."""

from __future__ import annotations

import psycopg2
from psycopg2.extras import execute_values

from ebbtide.demo.scenario import Scenario
from sinks.postgres import TRACKING_SCHEMA

SCHEMA = f"""
DROP TABLE IF EXISTS services, invoices, support_tickets, newsletter_subscriptions, customers CASCADE;
DROP SCHEMA IF EXISTS {TRACKING_SCHEMA} CASCADE;
CREATE TABLE customers (
    customer_id   bigint PRIMARY KEY,
    name          text NOT NULL,
    email         text NOT NULL,
    phone         text NOT NULL,
    address       text NOT NULL,
    registered_at timestamptz NOT NULL
);
CREATE TABLE services (
    service_id   bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
    kind         text NOT NULL,
    ordered_at   timestamptz NOT NULL,
    cancelled_at timestamptz
);
-- Billing and support keep their own copy of the customer id (no foreign key): they follow
-- their own retention rules, independent of the customer row.
CREATE TABLE invoices (
    invoice_id      bigint PRIMARY KEY,
    customer_id     bigint NOT NULL,
    billing_name    text NOT NULL,
    billing_address text NOT NULL,
    amount_nok      integer NOT NULL,
    issued_at       timestamptz NOT NULL
);
CREATE TABLE newsletter_subscriptions (
    subscription_id bigint PRIMARY KEY,
    customer_id     bigint NOT NULL,
    email           text NOT NULL,
    subscribed_at   timestamptz NOT NULL
);
CREATE TABLE support_tickets (
    ticket_id   bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL
);
"""

TABLES = ("customers", "services", "invoices", "support_tickets", "newsletter_subscriptions")


def load(dsn: str, scenario: Scenario) -> None:
    """(Re)create the demo tables and fill them with the scenario's rows."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
        execute_values(
            cur,
            "INSERT INTO customers VALUES %s",
            [
                (c["customer_id"], c["name"], c["email"], c["phone"], c["address"], c["registered_at"])
                for c in scenario.customers
            ],
        )
        execute_values(
            cur,
            "INSERT INTO services VALUES %s",
            [
                (s["service_id"], s["customer_id"], s["kind"], s["ordered_at"], s["cancelled_at"])
                for s in scenario.services
            ],
        )
        execute_values(
            cur,
            "INSERT INTO invoices VALUES %s",
            [
                (
                    i["invoice_id"],
                    i["customer_id"],
                    i["billing_name"],
                    i["billing_address"],
                    i["amount_nok"],
                    i["issued_at"],
                )
                for i in scenario.invoices
            ],
        )
        execute_values(
            cur,
            "INSERT INTO support_tickets VALUES %s",
            [
                (t["ticket_id"], t["customer_id"], t["subject"], t["body"], t["created_at"])
                for t in scenario.tickets
            ],
        )
        execute_values(
            cur,
            "INSERT INTO newsletter_subscriptions VALUES %s",
            [
                (n["subscription_id"], n["customer_id"], n["email"], n["subscribed_at"])
                for n in scenario.subscriptions
            ],
        )
    conn.close()


def counts(dsn: str) -> dict[str, int]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = {}
        for table in TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")  # table names are constants above
            row = cur.fetchone()
            out[table] = int(row[0]) if row else 0
    conn.close()
    return out


def present_keys(dsn: str) -> dict[str, set[str]]:
    """Keys still present, by category, for the tables the demo announces."""
    queries = {
        "client": "SELECT customer_id::text FROM customers",
        "invoice": "SELECT invoice_id::text FROM invoices",
        "correspondence": "SELECT ticket_id::text FROM support_tickets",
        "marketing": "SELECT subscription_id::text FROM newsletter_subscriptions",
    }
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = {}
        for category, query in queries.items():
            cur.execute(query)
            out[category] = {r[0] for r in cur.fetchall()}
    conn.close()
    return out
