"""The ledger of deletions: which row deletions Ebbtide made, and which rows came back.

Ebbtide's deletions are the sinks' tracking rows (``ebbtide_sink.applied_commands``,
:mod:`sinks.base.tracking`): a command's effect and its tracking row commit in one transaction,
and only a sink writes tracking rows, in transactions that run nothing but its commands' table
actions. A deleted row's change event carries its transaction's id (``source.txId``), which is
the ``xmin`` of the tracking rows that transaction wrote: the deletion is Ebbtide's if that
transaction wrote a DELETED tracking row of the row's store and of a category whose table actions
delete rows of its table. (The receipts' record
keys are sealed with the subject's data key, which is often shredded by the time the change is
read, so the transaction is the evidence, not the key.) Any other deletion is outside Ebbtide.

The translator keeps what it saw in ``ebbtide_cdc.deletions`` (the captured database; one row per
record key deleted, whether by Ebbtide): an insert of a key Ebbtide deleted is a restored row.
Record keys only: no other value of the row. The look-up by ``xmin`` reads the tracking table
whole (it has no index on it): one query per deleted row's category, fine for the tracking
tables of a service's own database, a cost to watch for a very large one.
"""

from __future__ import annotations

from datetime import datetime

from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.base.tracking import TRACKING_TABLE

SCHEMA = "ebbtide_cdc"
TABLE = f"{SCHEMA}.deletions"
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    store       text NOT NULL,
    category    text NOT NULL,
    record_key  text NOT NULL,
    by_ebbtide  boolean NOT NULL,
    lsn         bigint NOT NULL,
    deleted_at  timestamptz NOT NULL,
    PRIMARY KEY (store, category, record_key)
);
"""


def ensure_ledger(cur: Cursor) -> None:
    """Create the translator's table if it is missing (one translator at a time)."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('ebbtide-cdc-setup'))")
    cur.execute(DDL)


def deleted_by_ebbtide(cur: Cursor, tx_id: int, store: str, categories: list[str]) -> bool:
    """Whether the transaction ``tx_id`` is a sink's that executed a deletion command of ``store``
    and one of ``categories`` (it wrote a DELETED tracking row); False if there is no tracking
    table."""
    cur.execute("SELECT to_regclass(%s)", (TRACKING_TABLE,))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return False
    cur.execute(
        f"SELECT EXISTS (SELECT 1 FROM {TRACKING_TABLE} "
        "WHERE xmin::text::bigint = %s AND store = %s AND category = ANY(%s) AND outcome = 'DELETED')",
        (tx_id % 2**32, store, categories),
    )
    found = cur.fetchone()
    return bool(found and found[0])


def record_deletion(
    cur: Cursor, store: str, category: str, key: str, by_ebbtide: bool, lsn: int, when: datetime
) -> None:
    cur.execute(
        f"INSERT INTO {TABLE} (store, category, record_key, by_ebbtide, lsn, deleted_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (store, category, record_key) DO UPDATE "
        "SET by_ebbtide = EXCLUDED.by_ebbtide, lsn = EXCLUDED.lsn, deleted_at = EXCLUDED.deleted_at",
        (store, category, key, by_ebbtide, lsn, when),
    )


def take_restored(cur: Cursor, store: str, category: str, key: str) -> bool:
    """Whether an insert of ``key`` brings back a row Ebbtide deleted; the ledger forgets the
    deletion either way (the row exists again), so the same insert read twice is flagged once."""
    cur.execute(
        f"DELETE FROM {TABLE} WHERE store = %s AND category = %s AND record_key = %s RETURNING by_ebbtide",
        (store, category, key),
    )
    row = cur.fetchone()
    return bool(row is not None and row[0])
