"""The SQL of a table map's actions, built once per table and category and cached.

Keys travel as one text array per statement and are cast to the key column's type (read from the
catalog), so the column is compared without a cast and its index is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.postgres.table_map import TableAction


class Statements:
    """The statements of one executor's table actions (per category and table), and the key
    column types they cast to."""

    def __init__(self) -> None:
        self._key_types: dict[tuple[str, str], str] = {}
        self._statements: dict[tuple[str, str], sql.Composed] = {}

    def subject(self, cur: Cursor, action: TableAction) -> sql.Composed:
        """``SELECT key, subject`` of the rows the distinct keys of a text array match."""
        cached = self._statements.get((action.category, f"subject:{action.qualified}"))
        if cached is not None:
            return cached
        statement = sql.SQL(
            "WITH keys AS (SELECT DISTINCT k FROM unnest(%s::text[]) AS k) "
            "SELECT keys.k, t.{subject} FROM {table} AS t JOIN keys ON t.{key} = keys.k::{type}"
        ).format(
            subject=sql.Identifier(str(action.subject_column)),
            table=sql.Identifier(action.schema, action.name),
            key=sql.Identifier(action.key_column),
            type=sql.SQL(self.key_type(cur, action.qualified, action.key_column)),
        )
        self._statements[(action.category, f"subject:{action.qualified}")] = statement
        return statement

    def action(self, cur: Cursor, action: TableAction) -> sql.Composed:
        """``DELETE ... USING`` or ``UPDATE ... FROM`` the distinct keys of a text array, cast to the
        key column's type (so the column is compared without a cast and its index is used).
        An anonymise touches only rows not blank already (a second run changes and counts nothing)
        when the connection may read the blanked columns; a role that may only overwrite them
        (``ebbtide sink-role``) updates and counts every row of the key."""
        cached = self._statements.get((action.category, action.qualified))
        if cached is not None:
            return cached
        table = sql.Identifier(action.schema, action.name)
        key = sql.Identifier(action.key_column)
        keys = sql.SQL("WITH keys AS (SELECT DISTINCT k FROM unnest(%s::text[]) AS k) ")
        match = sql.SQL("t.{key} = keys.k::{type}").format(
            key=key, type=sql.SQL(self.key_type(cur, action.qualified, action.key_column))
        )
        if action.deletes:
            statement = keys + sql.SQL(
                "DELETE FROM {table} AS t USING keys WHERE {match} RETURNING keys.k"
            ).format(table=table, match=match)
        else:
            values = [(sql.Identifier(c), sql.Literal(action.value_of(c))) for c in action.columns]
            statement = keys + sql.SQL("UPDATE {table} AS t SET {sets} FROM keys WHERE {match}").format(
                table=table,
                sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(c, v) for c, v in values),
                match=match,
            )
            if self.may_read(cur, action.qualified, action.columns):
                statement += sql.SQL(" AND ({changes})").format(
                    changes=sql.SQL(" OR ").join(
                        sql.SQL("t.{} IS DISTINCT FROM {}").format(c, v) for c, v in values
                    )
                )
            statement += sql.SQL(" RETURNING keys.k")
        self._statements[(action.category, action.qualified)] = statement
        return statement

    @staticmethod
    def may_read(cur: Cursor, table: str, columns: Sequence[str]) -> bool:
        """Whether this connection may read ``columns`` (the least-privilege role of ``ebbtide
        sink-role`` may only overwrite the columns it blanks: then every matching row is updated
        and counted, blank already or not)."""
        cur.execute(
            "SELECT bool_and(has_column_privilege(%s, c, 'SELECT')) FROM unnest(%s::text[]) AS c",
            (table, list(columns)),
        )
        row = cur.fetchone()
        return bool(row and row[0])

    def key_type(self, cur: Cursor, table: str, column: str) -> str:
        """The SQL type of a key column, from the catalog (cached), to compare keys without casts on it."""
        cached = self._key_types.get((table, column))
        if cached is None:
            cur.execute(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped",
                (table, column),
            )
            row = cur.fetchone()
            if row is None:
                raise psycopg2.ProgrammingError(f"no column {column} in {table}")
            cached = self._key_types[(table, column)] = str(row[0])
        return cached
