"""The ledger of deletions on the real PostgreSQL: a deletion a sink made in its savepoint (the
path every command of a batch with a failed statement takes) is Ebbtide's; one by hand is not;
a tracking table made before the column ``xact`` gets it; keys are kept as HMACs."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg2
from psycopg2.extensions import connection as Connection

from ebbtide.cdc import ledger
from ebbtide.sinks.base.tracking import TRACKING_TABLE, ensure_tracking
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.table_map import parse_table_map
from tests.support import deletion_command

PEOPLE = parse_table_map(
    {"store": "s", "categories": {"client": [{"table": "people", "key_column": "id", "action": "delete"}]}},
    "test.toml",
)


def xid(conn: Connection) -> int:
    """The 32-bit id of the open transaction, as Debezium reports it (``source.txId``)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_xact_id()::text::bigint % (2^32)::bigint")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def ours(conn: Connection, tx_id: int) -> bool:
    with conn, conn.cursor() as cur:
        return ledger.deleted_by_ebbtide(cur, tx_id, "s", ["client"])


def test_a_deletion_in_the_sinks_savepoint_is_ebbtides_and_one_by_hand_is_not(database: str) -> None:
    conn = psycopg2.connect(database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE people (id bigint PRIMARY KEY); INSERT INTO people VALUES (1), (2)")
        ensure_tracking(conn)
        with conn, conn.cursor() as cur:
            done = PostgresExecutor(PEOPLE).execute(
                cur, deletion_command("s", "client", "1", command_id="c1")
            )
            sink_tx = xid(conn)
            cur.execute(f"SELECT xmin::text::bigint, xact FROM {TRACKING_TABLE} WHERE command_id = 'c1'")
            xmin, xact = cur.fetchone()  # type: ignore[misc]
        assert done.receipt["outcome"] == "DELETED"
        assert xmin != sink_tx  # the savepoint's subtransaction: what matching on xmin missed
        assert xact % 2**32 == sink_tx
        assert ours(conn, sink_tx)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM people WHERE id = 2")
            by_hand = xid(conn)
        assert not ours(conn, by_hand)
    finally:
        conn.close()


def test_a_tracking_table_without_xact_gets_it_and_its_older_rows_match_by_xmin(database: str) -> None:
    conn = psycopg2.connect(database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"CREATE SCHEMA ebbtide_sink; CREATE TABLE {TRACKING_TABLE} (command_id text PRIMARY KEY, "
                "store text NOT NULL, category text NOT NULL, outcome text NOT NULL, rows integer NOT NULL, "
                "receipt bytea NOT NULL, applied_at timestamptz NOT NULL)"
            )
            cur.execute(
                f"INSERT INTO {TRACKING_TABLE} VALUES ('old', 's', 'client', 'DELETED', 1, '', now())"
            )
            old_tx = xid(conn)
        ensure_tracking(conn)
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT xact FROM {TRACKING_TABLE}")
            assert cur.fetchall() == [(None,)]  # not the migration's own id
            cur.execute(
                f"INSERT INTO {TRACKING_TABLE} (command_id, store, category, outcome, rows, receipt, "
                "applied_at) VALUES ('new', 's', 'client', 'DELETED', 1, '', now())"
            )
            new_tx = xid(conn)
        assert ours(conn, old_tx) and ours(conn, new_tx)
        assert not ours(conn, new_tx + 1)
    finally:
        conn.close()


def test_the_ledger_keeps_keyed_hashes_and_moves_an_older_ledger_of_clear_keys(database: str) -> None:
    conn = psycopg2.connect(database)
    when = datetime(2024, 1, 1, tzinfo=UTC)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "CREATE SCHEMA ebbtide_cdc; CREATE TABLE ebbtide_cdc.deletions (store text, category text, "
                "record_key text, by_ebbtide boolean, lsn bigint, deleted_at timestamptz, "
                "PRIMARY KEY (store, category, record_key))"
            )
            cur.execute(
                "INSERT INTO ebbtide_cdc.deletions VALUES ('s', 'client', 'k-1', true, 5, %s)", (when,)
            )
            book = ledger.ensure_ledger(cur)
            cur.execute("SELECT to_regclass('ebbtide_cdc.deletions')")
            assert cur.fetchone() == (None,)
            written = datetime(2019, 1, 10, tzinfo=UTC)
            ledger.record_deletion(cur, book, "s", "client", "k-2", False, 6, when, written)
            cur.execute(f"SELECT key_hash FROM {ledger.TABLE} ORDER BY lsn")
            assert [bytes(r[0]) for r in cur.fetchall()] == [book.hashed("k-1"), book.hashed("k-2")]
            cur.execute(f"SELECT count(*) FROM {ledger.TABLE} WHERE key_hash::text LIKE '%%k-%%'")
            assert cur.fetchone() == (0,)
            back = ledger.restored(cur, book, "s", "client", "k-1")
            assert back is not None and back.written is None
            assert ledger.restored(cur, book, "s", "client", "k-2") is None  # deleted outside
            again = ledger.ensure_ledger(cur)
        assert again == book  # one key per database, kept
    finally:
        conn.close()
