"""`ebbtide cdc connect`'s database side on the real PostgreSQL: the publication of the mapped
tables, made then kept in step, and a table whose deletes would not carry the key refused."""

from __future__ import annotations

import os

import psycopg2
import pytest

from ebbtide.cdc.changes import Mapping
from ebbtide.cdc.connector import PUBLICATION, prepare_database
from ebbtide.sinks.postgres.table_map import TableMapError, parse_table_map


def mapping(key: str) -> Mapping:
    return Mapping(
        [
            parse_table_map(
                {
                    "store": "s",
                    "categories": {
                        "client": [
                            {"table": "people", "key_column": key, "action": "delete", "subject_column": "id"}
                        ]
                    },
                }
            )
        ]
    )


def published(conn: psycopg2.extensions.connection) -> list[str]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
            (PUBLICATION,),
        )
        return sorted(r[0] for r in cur.fetchall())


def test_the_publication_follows_the_mapping_and_a_key_deletes_do_not_carry_is_refused(database: str) -> None:
    conn = psycopg2.connect(database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE people (id bigint PRIMARY KEY, handle text, other text)")
        prepare_database(conn, mapping("id"))
        prepare_database(conn, mapping("id"))  # again: no error, the same publication
        assert published(conn) == ["public.people"]

        with pytest.raises(TableMapError) as refused:
            prepare_database(conn, mapping("handle"))
        assert str(refused.value) == (
            "table public.people: key column handle is not in its primary key, so a delete does not "
            "carry it: ALTER TABLE public.people REPLICA IDENTITY FULL"
        )
        with conn, conn.cursor() as cur:
            cur.execute("ALTER TABLE people REPLICA IDENTITY FULL")
        prepare_database(conn, mapping("handle"))  # now a delete carries every column

        with conn, conn.cursor() as cur:
            cur.execute("DROP PUBLICATION ebbtide_cdc; DROP TABLE people")
        with pytest.raises(TableMapError, match=r"table public\.people: no such table"):
            prepare_database(conn, mapping("id"))
    finally:
        conn.close()


def test_debeziums_role_may_replicate_and_read_and_nothing_more() -> None:
    dsn = os.environ.get("EBBTIDE_CDC_DSN")
    assert dsn, "the local stack writes EBBTIDE_CDC_DSN to .state/env"
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
                "pg_has_role(current_user, 'pg_read_all_data', 'MEMBER'), "
                "pg_has_role(current_user, 'pg_write_all_data', 'MEMBER') "
                "FROM pg_roles WHERE rolname = current_user"
            )
            assert cur.fetchone() == (False, False, False, True, False, True, False)
            cur.execute("SHOW wal_level")
            assert cur.fetchone() == ("logical",)
    finally:
        conn.close()
