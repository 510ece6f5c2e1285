"""The ledger of deletions: which row deletions Ebbtide made, and which rows came back.

Ebbtide's deletions are the sinks' tracking rows (``ebbtide_sink.applied_commands``,
:mod:`sinks.base.tracking`): a command's effect and its tracking row commit in one transaction,
and only a sink writes tracking rows, in transactions that run nothing but its commands' table
actions. A deleted row's change event carries its transaction's id (``source.txId``, the 32-bit
xid); a tracking row keeps its transaction's top-level id with the epoch (column ``xact``,
``pg_current_xact_id()``: the same inside the savepoint each command of a batch with a failed
statement runs in, where ``xmin`` is the subtransaction's). The deletion is Ebbtide's if that
transaction wrote a DELETED tracking row of the row's store and of a category whose table actions
delete rows of its table. The change's xid gets the epoch of the newest one the server has given
(:func:`full_xact_id`), so a tracking row 2^32 transactions older never matches. (The receipts'
record keys are sealed with the subject's data key, which is often shredded by the time the change
is read, so the transaction is the evidence, not the key.) Any other deletion is outside Ebbtide.

The translator keeps what it saw in ``ebbtide_cdc.deleted_keys`` (the captured database; one row
per record key deleted, whether by Ebbtide): an insert of a key Ebbtide deleted is a restored row.
Not the key itself: its HMAC-SHA256 under a random key of this database (``ebbtide_cdc.ledger_key``),
since telling a restored row only needs equality; and the deleted row's event time, so a restored
row is announced as old as it was and its deadline stays where it was. That time is the one the
row was announced with (``ebbtide_cdc.announced``: one row per announced record, its hashed key
and event time, moved to the deletion when the row goes), else its delete's time column. The look-up reads
the tracking table whole (it has no index on ``xact``): one query per deleted row's category, fine
for the tracking tables of a service's own database, a cost to watch for a very large one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.base.tracking import TRACKING_TABLE

SCHEMA = "ebbtide_cdc"
TABLE = f"{SCHEMA}.deleted_keys"
KEY_TABLE = f"{SCHEMA}.ledger_key"
ANNOUNCED = f"{SCHEMA}.announced"
OLD_TABLE = f"{SCHEMA}.deletions"  # before keys were hashed: migrated, then dropped
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {KEY_TABLE} (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    key  bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {TABLE} (
    store       text NOT NULL,
    category    text NOT NULL,
    key_hash    bytea NOT NULL,
    by_ebbtide  boolean NOT NULL,
    lsn         bigint NOT NULL,
    deleted_at  timestamptz NOT NULL,
    written_at  timestamptz,
    PRIMARY KEY (store, category, key_hash)
);
CREATE TABLE IF NOT EXISTS {ANNOUNCED} (
    store       text NOT NULL,
    category    text NOT NULL,
    key_hash    bytea NOT NULL,
    written_at  timestamptz NOT NULL,
    PRIMARY KEY (store, category, key_hash)
);
"""
_XID = 2**32


@dataclass(frozen=True)
class Ledger:
    """The ledger of one database: its HMAC key."""

    key: bytes

    def hashed(self, record_key: str) -> bytes:
        return hmac.new(self.key, record_key.encode(), hashlib.sha256).digest()


def ensure_ledger(cur: Cursor) -> Ledger:
    """Create the translator's tables if missing (one translator at a time), with the ledger's
    key, and move a ledger of clear keys (an older version's) into hashed ones."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('ebbtide-cdc-setup'))")
    cur.execute(DDL)
    cur.execute(
        f"INSERT INTO {KEY_TABLE} (key) VALUES (%s) ON CONFLICT (one) DO NOTHING",
        (secrets.token_bytes(32),),
    )
    cur.execute(f"SELECT key FROM {KEY_TABLE}")
    found = cur.fetchone()
    assert found is not None  # inserted just above if it was missing
    ledger = Ledger(bytes(found[0]))
    cur.execute("SELECT to_regclass(%s)", (OLD_TABLE,))
    old = cur.fetchone()
    if old is not None and old[0] is not None:
        cur.execute(f"SELECT store, category, record_key, by_ebbtide, lsn, deleted_at FROM {OLD_TABLE}")
        for store, category, key, by_ebbtide, lsn, when in cur.fetchall():
            record_deletion(cur, ledger, store, category, key, by_ebbtide, lsn, when, None)
        cur.execute(f"DROP TABLE {OLD_TABLE}")
    return ledger


def full_xact_id(cur: Cursor, tx_id: int) -> int:
    """The epoch-extended id of the transaction whose 32-bit xid is ``tx_id``: the newest id with
    those low bits the server has given (a change is read long before 2^31 more transactions)."""
    cur.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    row = cur.fetchone()
    assert row is not None
    newest = int(row[0])
    full = (newest - newest % _XID) + tx_id % _XID
    return full - _XID if full >= newest else full


def deleted_by_ebbtide(cur: Cursor, tx_id: int, store: str, categories: list[str]) -> bool:
    """Whether the transaction ``tx_id`` is a sink's that executed a deletion command of ``store``
    and one of ``categories`` (it wrote a DELETED tracking row); False if there is no tracking
    table. A tracking row written before the column ``xact`` was added is matched by its xmin."""
    cur.execute(
        "SELECT to_regclass(%s), EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attname = 'xact' AND NOT attisdropped)",
        (TRACKING_TABLE, TRACKING_TABLE),
    )
    row = cur.fetchone()
    if row is None or row[0] is None:
        return False
    which = "xmin::text::bigint = %(xid)s"
    if row[1]:
        which = f"(xact = %(full)s OR (xact IS NULL AND {which}))"
    cur.execute(
        f"SELECT EXISTS (SELECT 1 FROM {TRACKING_TABLE} WHERE {which} AND store = %(store)s "
        "AND category = ANY(%(categories)s) AND outcome = 'DELETED')",
        {
            "xid": tx_id % _XID,
            "full": full_xact_id(cur, tx_id),
            "store": store,
            "categories": categories,
        },
    )
    found = cur.fetchone()
    return bool(found and found[0])


def record_deletion(
    cur: Cursor,
    ledger: Ledger,
    store: str,
    category: str,
    key: str,
    by_ebbtide: bool,
    lsn: int,
    when: datetime,
    written: datetime | None,
) -> None:
    """Remember a deleted row: its hashed key, whether Ebbtide deleted it, and its event time if
    known (``written``)."""
    cur.execute(
        f"INSERT INTO {TABLE} (store, category, key_hash, by_ebbtide, lsn, deleted_at, written_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store, category, key_hash) DO UPDATE "
        "SET by_ebbtide = EXCLUDED.by_ebbtide, lsn = EXCLUDED.lsn, deleted_at = EXCLUDED.deleted_at, "
        "written_at = EXCLUDED.written_at",
        (store, category, ledger.hashed(key), by_ebbtide, lsn, when, written),
    )


@dataclass(frozen=True)
class Restored:
    """An insert of a key Ebbtide deleted: the deleted row's event time, if the ledger knows it."""

    written: datetime | None


def restored(cur: Cursor, ledger: Ledger, store: str, category: str, key: str) -> Restored | None:
    """Whether an insert of ``key`` brings back a row Ebbtide deleted (None if not)."""
    cur.execute(
        f"SELECT by_ebbtide, written_at FROM {TABLE} WHERE store = %s AND category = %s AND key_hash = %s",
        (store, category, ledger.hashed(key)),
    )
    row = cur.fetchone()
    return Restored(row[1]) if row is not None and row[0] else None


def forget(cur: Cursor, ledger: Ledger, store: str, category: str, key: str) -> None:
    """The row exists again: the ledger forgets its deletion (the same insert read twice is
    flagged once, in the transaction that announced it)."""
    cur.execute(
        f"DELETE FROM {TABLE} WHERE store = %s AND category = %s AND key_hash = %s",
        (store, category, ledger.hashed(key)),
    )


def announced(cur: Cursor, ledger: Ledger, store: str, category: str, key: str, written: datetime) -> None:
    """Remember the event time a row was announced with; the first one stays (as the engine keeps
    a record's earliest announcement)."""
    cur.execute(
        f"INSERT INTO {ANNOUNCED} (store, category, key_hash, written_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (store, category, key_hash) DO NOTHING",
        (store, category, ledger.hashed(key), written),
    )


def take_written(cur: Cursor, ledger: Ledger, store: str, category: str, key: str) -> datetime | None:
    """The event time a deleted row was announced with, if it was; forgotten with the row."""
    cur.execute(
        f"DELETE FROM {ANNOUNCED} WHERE store = %s AND category = %s AND key_hash = %s RETURNING written_at",
        (store, category, ledger.hashed(key)),
    )
    row = cur.fetchone()
    return None if row is None else row[0]
