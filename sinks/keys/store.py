"""The key store: each subject's current data key, in one PostgreSQL table with its own role.

``ebbtide_keys.subject_keys`` holds one row per subject that has a live key: its key id and the
32 random bytes of the key. Publishers get-or-create a subject's key (:meth:`KeyStore.current`);
sinks and the tools that show values read a key by the id a token names (:meth:`KeyStore.find`).
Shredding a key is deleting its row (:meth:`KeyStore.shred`): a subject that comes back later
gets a new key under a new id, and the tokens of the old one open nowhere.

Why a table and not a compacted topic: a row is gone from the live table at once and from the
table's files at the next VACUUM, while a compacted topic keeps a deleted key's record until the
log cleaner runs and a tombstone for ``delete.retention.ms`` more; and a key must be found by id at
once, which a table's index does and a topic does not.

Backups: the key store must be backed up on its own (not in the stores' backups), with a
retention no longer than the time shredding may take to be final, and **restoring one must not
bring a shredded key back**: ``ebbtide_keys.shredded`` keeps the id (never the key) of every key
destroyed, and :func:`restored` deletes from a restored table every key listed there. The list is
tiny and holds nothing personal (subject ids and key ids), so it is kept in every backup and
merged (union) when restoring.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from typing import Any

import psycopg2
import psycopg2.errors

from ebbtide.runtime.tokens import KEY_BYTES, DataKey, Shredded, TokenError

SCHEMA = "ebbtide_keys"
TABLE = f"{SCHEMA}.subject_keys"
SHREDDED = f"{SCHEMA}.shredded"

KEYS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    subject_id  text PRIMARY KEY,
    key_id      text NOT NULL UNIQUE,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SHREDDED} (
    key_id      text PRIMARY KEY,
    subject_id  text NOT NULL,
    shredded_at timestamptz NOT NULL DEFAULT now()
);
"""


class KeyStoreUnavailable(RuntimeError):
    """The key store's database cannot be reached: retry later (nothing is published or deleted)."""


class KeyStore:
    """One connection to the key store (``dsn``), made on first use and again after it broke."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._found: dict[tuple[str, str], DataKey] = {}  # (subject, key id) -> key, read before

    def _cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg2.connect(self.dsn, application_name="ebbtide-keys")
            except psycopg2.OperationalError as exc:
                raise KeyStoreUnavailable(f"key store: {type(exc).__name__}") from None
            self._conn.autocommit = True
            self._ready()
        return self._conn.cursor()

    def _ready(self) -> None:
        """Create the tables if missing; a role that may not (least privilege) finds them made."""
        with self._conn.cursor() as cur:
            both = "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL"
            cur.execute(both, (TABLE, SHREDDED))
            if cur.fetchone()[0]:
                return
            try:
                cur.execute(KEYS_DDL)
            except psycopg2.errors.InsufficientPrivilege:
                missing = f"key store: {TABLE} is missing and this role may not create it"
                raise KeyStoreUnavailable(missing) from None

    def _run(self, statement: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._cursor() as cur:
                cur.execute(statement, args)
                return list(cur.fetchall()) if cur.description else []
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self.close()
            raise KeyStoreUnavailable(f"key store: {type(exc).__name__}") from None

    def current(self, subject_id: str) -> DataKey:
        """The subject's live key, made now (random, a new id) if it has none."""
        rows = self._run(f"SELECT key_id, secret FROM {TABLE} WHERE subject_id = %s", (subject_id,))
        if not rows:
            key_id, secret = secrets.token_hex(8), os.urandom(KEY_BYTES)
            rows = self._run(
                f"INSERT INTO {TABLE} (subject_id, key_id, secret) VALUES (%s, %s, %s) "
                "ON CONFLICT (subject_id) DO NOTHING RETURNING key_id, secret",
                (subject_id, key_id, secret),
            ) or self._run(f"SELECT key_id, secret FROM {TABLE} WHERE subject_id = %s", (subject_id,))
        key_id, secret = rows[0]
        return DataKey(subject_id, key_id, bytes(secret))

    def find(self, subject_id: str, key_id: str) -> DataKey:
        """The key ``key_id`` of the subject; :class:`Shredded` if it was destroyed (its id is
        listed as shredded). A key neither here nor listed is :class:`KeyStoreUnavailable`
        (taken again, never answered FAILED) if the store holds no key at all (a store's own
        database given by mistake), else a :class:`TokenError` (a forged token, or a key a restore
        lost: answered FAILED and dead-lettered)."""
        known = self._found.get((subject_id, key_id))
        if known is not None:
            return known
        rows = self._run(
            f"SELECT secret FROM {TABLE} WHERE subject_id = %s AND key_id = %s", (subject_id, key_id)
        )
        if not rows:
            listed = self._run(f"SELECT 1 FROM {SHREDDED} WHERE key_id = %s", (key_id,))
            if listed:
                raise Shredded(f"key {key_id} is shredded")
            if self._run(f"SELECT 1 FROM {TABLE} WHERE key_id = %s", (key_id,)):
                raise TokenError(f"key {key_id} is another subject's")  # answered, not taken again
            if not self._run(f"SELECT 1 FROM {TABLE} LIMIT 1", ()):  # no key at all: not the key store
                raise KeyStoreUnavailable(
                    f"key store: key {key_id} is neither here nor listed as shredded, and this key "
                    "store holds no key (is EBBTIDE_KEYS_DSN the key store the publishers seal with?)"
                )
            # A forged token, or a key a restore lost: answered FAILED and dead-lettered, so one
            # hostile message cannot hold up the sink's other deletions.
            raise TokenError(f"key {key_id} is unknown to the key store")
        key = DataKey(subject_id, key_id, bytes(rows[0][0]))
        if len(self._found) > 10_000:
            self._found.clear()
        self._found[(subject_id, key_id)] = key
        return key

    def prefetch(self, wanted: Iterable[tuple[str, str]]) -> None:
        """Read the keys of many (subject, key id) pairs in one query, so that :meth:`find` of
        each is answered without a round trip (a sink opens a whole batch's record keys). A pair
        not found is left for :meth:`find` to say why (shredded, another subject's, unknown)."""
        missing = list(dict.fromkeys(pair for pair in wanted if pair not in self._found))
        if not missing:
            return
        rows = self._run(
            f"SELECT t.subject_id, t.key_id, t.secret FROM {TABLE} AS t "
            "JOIN unnest(%s::text[], %s::text[]) AS w(subject_id, key_id) "
            "ON t.subject_id = w.subject_id AND t.key_id = w.key_id",
            ([subject for subject, _ in missing], [key_id for _, key_id in missing]),
        )
        if len(self._found) + len(rows) > 10_000:
            self._found.clear()
        for subject_id, key_id, secret in rows:
            self._found[(subject_id, key_id)] = DataKey(subject_id, key_id, bytes(secret))

    def shred(self, subject_id: str, key_id: str) -> int:
        """Destroy the key (1) or find it gone already (0); its id is listed as shredded."""
        self._found.pop((subject_id, key_id), None)
        self._run(
            f"INSERT INTO {SHREDDED} (key_id, subject_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (key_id, subject_id),
        )
        rows = self._run(
            f"DELETE FROM {TABLE} WHERE subject_id = %s AND key_id = %s RETURNING key_id",
            (subject_id, key_id),
        )
        return len(rows)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def restored(store: KeyStore, shredded_elsewhere: Iterable[tuple[str, str]] = ()) -> int:
    """After restoring the key store from a backup: list ``shredded_elsewhere`` (key id, subject)
    as shredded (e.g. from the live list or the KEY_SHREDDED decisions), then delete every key
    listed shredded. The number of keys deleted: resurrected keys, destroyed again."""
    for key_id, subject_id in shredded_elsewhere:
        store._run(
            f"INSERT INTO {SHREDDED} (key_id, subject_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (key_id, subject_id),
        )
    rows = store._run(
        f"DELETE FROM {TABLE} k USING {SHREDDED} s WHERE k.key_id = s.key_id RETURNING k.key_id", ()
    )
    return len(rows)


def grant_keys_role(store: KeyStore, role: str) -> None:
    """Give ``role`` (existing) exactly what the key store's users need: SELECT and INSERT (get or
    create) and DELETE (shred) on the keys table, INSERT and SELECT on the shredded list, USAGE on
    the schema; nothing else in it (``ebbtide_keys`` is revoked from PUBLIC)."""
    from psycopg2 import sql

    name = sql.Identifier(role)
    with store._cursor() as cur:
        cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(SCHEMA)))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), name))
        keys, shredded = (sql.Identifier(*t.split(".")) for t in (TABLE, SHREDDED))
        cur.execute(sql.SQL("REVOKE ALL ON {}, {} FROM {}").format(keys, shredded, name))
        cur.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(keys, name))
        cur.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(shredded, name))


__all__ = ["KEYS_DDL", "KeyStore", "KeyStoreUnavailable", "Shredded", "grant_keys_role", "restored"]
