"""The key store on the real PostgreSQL: get-or-create, find, shred (a subject that comes back
gets a new key id), a restored backup does not bring a shredded key back, and its role can do
what the key store needs and nothing else."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse, urlunparse

import psycopg2
import psycopg2.errors
import pytest

from ebbtide.runtime.tokens import Shredded, TokenError
from ebbtide.sinks.keys.store import SHREDDED, TABLE, KeyStore, KeyStoreUnavailable, grant_keys_role, restored
from tests.support import admin_dsn


def test_a_subjects_key_is_made_once_found_by_id_and_gone_once_shredded(database: str) -> None:
    keys = KeyStore(database)
    try:
        first = keys.current("cust-1")
        assert keys.current("cust-1") == first and keys.current("cust-2").key_id != first.key_id
        token = first.seal("42")
        assert keys.find("cust-1", first.key_id).open(token) == "42"
        with pytest.raises(TokenError, match="another subject's"):
            keys.find("cust-2", first.key_id)  # another subject's key id: not this subject's key
        with pytest.raises(TokenError, match="unknown to the key store"):
            keys.find("cust-1", "0123456789abcdef")  # never made here: forged, refused, not taken again
        assert keys.shred("cust-1", first.key_id) == 1
        assert keys.shred("cust-1", first.key_id) == 0  # again: gone already
        with pytest.raises(Shredded):
            KeyStore(database).find("cust-1", first.key_id)
        back = keys.current("cust-1")
        assert back.key_id != first.key_id and back.secret != first.secret
    finally:
        keys.close()


def test_prefetched_keys_are_found_without_the_database_and_the_rest_still_say_why(database: str) -> None:
    made = KeyStore(database)
    try:
        live = [made.current(f"cust-{n}") for n in range(1, 4)]
        gone = made.current("cust-9")
        made.shred("cust-9", gone.key_id)
    finally:
        made.close()
    keys = KeyStore(database)
    try:
        keys.prefetch([*((k.subject_id, k.key_id) for k in live), ("cust-9", gone.key_id)])
        keys.dsn = "postgresql://nobody@127.0.0.1:1/none"  # from here on, no query can succeed
        keys.close()
        assert [keys.find(k.subject_id, k.key_id) for k in live] == live  # read by the one query
        with pytest.raises(KeyStoreUnavailable):
            keys.find("cust-9", gone.key_id)  # a shredded key is not cached: find asks (and says why)
    finally:
        keys.close()


def test_a_key_store_with_no_key_at_all_is_the_wrong_one_and_its_sink_waits(database: str) -> None:
    keys = KeyStore(database)
    try:
        with pytest.raises(KeyStoreUnavailable, match="EBBTIDE_KEYS_DSN"):
            keys.find("cust-1", "0123456789abcdef")
    finally:
        keys.close()


def test_a_restored_backup_does_not_bring_a_shredded_key_back(database: str) -> None:
    keys = KeyStore(database)
    try:
        key = keys.current("cust-1")
        keys.current("cust-2")
        keys.shred("cust-1", key.key_id)
        # The backup of yesterday, restored: the shredded key's row is back.
        conn = psycopg2.connect(database)
        with conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (subject_id, key_id, secret) VALUES (%s, %s, %s)",
                ("cust-1", key.key_id, key.secret),
            )
        conn.close()
        assert restored(keys) == 1
        with pytest.raises(Shredded):
            KeyStore(database).find("cust-1", key.key_id)
        assert keys.current("cust-2")  # the others stay
    finally:
        keys.close()


def test_the_key_stores_role_may_get_create_and_shred_keys_and_nothing_else(
    database: str, stack: tuple[str, str]
) -> None:
    role, password = f"keys_t_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = KeyStore(database)  # the database's owner makes the tables and grants on them
    # Roles are the cluster administrator's: connected to another database than the test's, which
    # its owner drops afterwards (it may not end a superuser's session there).
    cluster = psycopg2.connect(admin_dsn(stack[1]))
    cluster.autocommit = True
    try:
        admin.current("cust-0")
        with cluster.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
        with psycopg2.connect(database) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE customers (id int)")
        conn.close()
        grant_keys_role(admin, role)
        parts = urlparse(database)
        as_role = urlunparse(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))
        keys = KeyStore(as_role)
        try:
            key = keys.current("cust-9")
            assert keys.find("cust-9", key.key_id) == key
            assert keys.shred("cust-9", key.key_id) == 1
        finally:
            keys.close()
        other = psycopg2.connect(as_role)
        other.autocommit = True
        try:
            for statement in (
                "SELECT * FROM customers",
                f"UPDATE {TABLE} SET secret = ''::bytea",
                f"DELETE FROM {SHREDDED}",
                "CREATE TABLE public.mine (id int)",
            ):
                with other.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
        finally:
            other.close()
    finally:
        admin.close()
        with psycopg2.connect(database) as conn, conn.cursor() as cur:  # what the owner granted it
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone():
                cur.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA ebbtide_keys FROM {role}")
                cur.execute(f"REVOKE ALL ON SCHEMA ebbtide_keys FROM {role}")
        conn.close()
        with cluster.cursor() as cur:
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        cluster.close()
