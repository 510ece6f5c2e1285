"""The demo customer database (schema public, store customer_db) and billing database (schema
billing, store billing_db), in one PostgreSQL database the project started: schema and rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg2
from psycopg2.extras import execute_values

from ebbtide.demo.scenario import Scenario
from ebbtide.sinks.backups import catalogue as backups
from ebbtide.sinks.base.tracking import TRACKING_SCHEMA
from ebbtide.sinks.logstore import partitions as logstore

SCHEMA = f"""
DROP TABLE IF EXISTS orders, services, domain_contacts, ssl_contacts, invoices, support_tickets,
    newsletter_subscriptions, customers CASCADE;
DROP SCHEMA IF EXISTS logs CASCADE;
DROP SCHEMA IF EXISTS backups CASCADE;
DROP SCHEMA IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS {TRACKING_SCHEMA} CASCADE;
CREATE TABLE customers (
    customer_id   bigint PRIMARY KEY,
    name          text NOT NULL,
    email         text NOT NULL,
    phone         text NOT NULL,
    address       text NOT NULL,
    registered_at timestamptz NOT NULL
);
-- Part of the client record, deleted with it: the store map deletes a customer's services
-- before the customer (no ON DELETE CASCADE: the map says what goes, the database enforces it).
CREATE TABLE services (
    service_id   bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers,
    kind         text NOT NULL,
    ordered_at   timestamptz NOT NULL,
    cancelled_at timestamptz
);
-- Orders stay as the bookkeeping trail. When the client record is deleted, the store map blanks
-- the personal columns (IP, contact email) and the link to the customer, before the customer.
CREATE TABLE orders (
    order_id        bigint PRIMARY KEY,
    customer_id     bigint REFERENCES customers,
    kind            text NOT NULL,
    ordered_at      timestamptz NOT NULL,
    ordered_from_ip inet,
    contact_email   text
);
-- Registrant contacts of the customer's domains, as sent to the registries. They follow the
-- domain's rule (kept while the domain is registered), not the account's: no foreign key.
CREATE TABLE domain_contacts (
    contact_id  bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    domain      text NOT NULL,
    name        text NOT NULL,
    email       text NOT NULL,
    national_id text,
    created_at  timestamptz NOT NULL
);
-- The contact of an SSL certificate's applicant (sent to the SSL vendor); the ref is the
-- certificate id, whose validity end (or revocation) the certificate rule follows.
CREATE TABLE ssl_contacts (
    contact_id     bigint PRIMARY KEY,
    customer_id    bigint NOT NULL,
    certificate_id text NOT NULL,
    name           text NOT NULL,
    email          text NOT NULL,
    created_at     timestamptz NOT NULL
);
-- Support keeps its own copy of the customer id (no foreign key): tickets follow their own
-- retention rule, independent of the customer row.
CREATE TABLE support_tickets (
    ticket_id   bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE newsletter_subscriptions (
    subscription_id bigint PRIMARY KEY,
    customer_id     bigint NOT NULL,
    email           text NOT NULL,
    subscribed_at   timestamptz NOT NULL,
    purpose         text NOT NULL DEFAULT 'newsletter'
);
-- The billing store (billing_db in the pipeline, sinks/postgres/maps/billing_db.toml), in the same database.
-- Invoices keep the billing name and address as printed: bookkeeping data with its own 5-year
-- rule, so no foreign key to customers (it would block deleting the customer).
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (
    invoice_id      bigint PRIMARY KEY,
    customer_id     bigint NOT NULL,
    billing_name    text NOT NULL,
    billing_address text NOT NULL,
    amount_nok      integer NOT NULL,
    issued_at       timestamptz NOT NULL
);
CREATE TABLE billing.payments (
    payment_id  bigint PRIMARY KEY,
    invoice_id  bigint REFERENCES billing.invoices,
    customer_id bigint NOT NULL,
    payer_name  text NOT NULL,
    amount_nok  integer NOT NULL,
    paid_at     timestamptz NOT NULL
);
"""

TABLES = (
    "customers",
    "services",
    "orders",
    "domain_contacts",
    "ssl_contacts",
    "support_tickets",
    "newsletter_subscriptions",
    "billing.invoices",
    "billing.payments",
)


# Where each table's rows come from: the scenario's list, and the keys of a row in column order.
ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "customers": ("customers", ("customer_id", "name", "email", "phone", "address", "registered_at")),
    "services": ("services", ("service_id", "customer_id", "kind", "ordered_at", "cancelled_at")),
    "orders": (
        "orders",
        ("order_id", "customer_id", "kind", "ordered_at", "ordered_from_ip", "contact_email"),
    ),
    "domain_contacts": (
        "domains",
        ("contact_id", "customer_id", "domain", "name", "email", "national_id", "created_at"),
    ),
    "ssl_contacts": (
        "certificates",
        ("contact_id", "customer_id", "certificate_id", "name", "email", "created_at"),
    ),
    "support_tickets": ("tickets", ("ticket_id", "customer_id", "subject", "body", "created_at")),
    "newsletter_subscriptions": (
        "subscriptions",
        ("subscription_id", "customer_id", "email", "subscribed_at", "purpose"),
    ),
    "billing.invoices": (
        "invoices",
        ("invoice_id", "customer_id", "billing_name", "billing_address", "amount_nok", "issued_at"),
    ),
    "billing.payments": (
        "payments",
        ("payment_id", "invoice_id", "customer_id", "payer_name", "amount_nok", "paid_at"),
    ),
}


def table_rows(scenario: Scenario) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows (tuples in column order) from the scenario."""
    return {
        table: [tuple(row[key] for key in keys) for row in getattr(scenario, attr)]
        for table, (attr, keys) in ROWS.items()
    }


def load(dsn: str, scenario: Scenario) -> None:
    """(Re)create the demo tables and fill them with the scenario's rows."""
    rows = table_rows(scenario)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
        for table in TABLES:  # parents before children
            if rows[table]:
                execute_values(cur, f"INSERT INTO {table} VALUES %s", rows[table])  # constant names
    conn.close()
    _load_logs_and_backups(dsn, scenario)


def _load_logs_and_backups(dsn: str, scenario: Scenario) -> None:
    """The log store (a partition a day, a line every two hours, documentation IP ranges) and
    the hosting platform's backup catalogue, in the same database."""
    conn = psycopg2.connect(dsn)
    try:
        logstore.create_log_table(conn)
        for day in scenario.log_days:
            logstore.create_day_partition(conn, day)
            logstore.append_rows(conn, log_lines(day))
        backups.create_catalogue(conn)
        for backup_id, taken_at, expires_at, records in scenario.backups():
            backups.take_backup(conn, backup_id, taken_at, expires_at, records)
    finally:
        conn.close()


def log_lines(day: date) -> list[tuple[datetime, str, str, str]]:
    """A line every two hours of the log store's ``day``: a local day of the policy's time zone
    (Oslo), so a line at 00:30 Oslo time (22:30 or 23:30 UTC the day before) is in its partition,
    and a day across a daylight saving change has its 23 or 25 hours."""
    start, end = (bound.astimezone(UTC) for bound in logstore.day_bounds(day))
    lines = []
    moment, n = start, 0
    while moment < end:  # in UTC: real hours, not wall-clock ones
        lines.append((moment, "www", f"198.51.100.{n + 1}", "GET / 200"))
        moment, n = moment + timedelta(hours=2), n + 1
    return lines


def purge_backups(dsn: str, now: datetime) -> backups.Purged:
    """The backup catalogue's own expiry run: every backup expired by ``now`` is purged."""
    conn = psycopg2.connect(dsn)
    try:
        return backups.purge_expired(conn, now)
    finally:
        conn.close()


def other_stores(dsn: str) -> dict[str, int]:
    """Log partitions and unpurged backups, by what they are."""
    conn = psycopg2.connect(dsn)
    try:
        partitions = logstore.list_partitions(conn)
        catalogue = backups.list_backups(conn)
    finally:
        conn.close()
    return {
        "log store: day partitions": len(partitions),
        "backups: not purged": sum(1 for b in catalogue if b.purged_at is None),
    }


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
    """Keys still present, by category, for the tables the demo announces (each category is in
    one store: ``scenario.STORE_OF``)."""
    queries = {
        "client": "SELECT customer_id::text FROM customers",
        "invoice": "SELECT invoice_id::text FROM billing.invoices",
        "payment": "SELECT payment_id::text FROM billing.payments",
        "correspondence": "SELECT ticket_id::text FROM support_tickets",
        "domain_contact": "SELECT contact_id::text FROM domain_contacts",
        "ssl_contact": "SELECT contact_id::text FROM ssl_contacts",
        "marketing": "SELECT subscription_id::text FROM newsletter_subscriptions",
    }
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = {}
        for category, query in queries.items():
            cur.execute(query)
            out[category] = {r[0] for r in cur.fetchall()}
    conn.close()
    return out
