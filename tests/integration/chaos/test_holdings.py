"""The chaos ledger reads what a PostgreSQL store really holds, per the sink's store map."""

from __future__ import annotations

import psycopg2
import pytest

from chaos.ledger import database_holdings
from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.sinks.postgres.table_map import load_table_map, map_path

pytestmark = pytest.mark.integration


def test_a_deleted_row_and_a_blanked_row_are_no_longer_held_and_the_rest_are(database: str) -> None:
    sc = build(customers=6, seed=3)
    demo_db.load(database, sc)
    store_map = load_table_map(map_path("customer_db"))
    before = database_holdings(database, "customer_db", store_map)
    tickets = {("customer_db", "correspondence", str(t["ticket_id"])) for t in sc.tickets}
    clients = {("customer_db", "client", str(c["customer_id"])) for c in sc.customers}
    assert tickets and clients and tickets | clients <= before
    ticket = min(tickets)
    customer = next(o["customer_id"] for o in sc.orders)
    client = ("customer_db", "client", str(customer))
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM support_tickets WHERE ticket_id = %s", (int(ticket[2]),))
        # Half of the client's anonymisation: its orders still point at it, its row is still there.
        cur.execute(
            "UPDATE orders SET ordered_from_ip = NULL, contact_email = NULL WHERE customer_id = %s",
            (customer,),
        )
    conn.close()
    after = database_holdings(database, "customer_db", store_map)
    assert before - after == {ticket}
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # the rest of it, as the sink does
        cur.execute("DELETE FROM services WHERE customer_id = %s", (customer,))
        cur.execute("UPDATE orders SET customer_id = NULL WHERE customer_id = %s", (customer,))
        cur.execute("DELETE FROM customers WHERE customer_id = %s", (customer,))
    conn.close()
    assert before - database_holdings(database, "customer_db", store_map) == {ticket, client}
