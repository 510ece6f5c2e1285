"""A least-privilege database role for PostgreSQL sinks: it can do what its store maps say, and
nothing else.

``grant_sink_role`` (``ebbtide sink-role``), run with an administrator's connection, creates or
updates the role and gives it exactly:

- CONNECT on the database, USAGE on the schemas of the mapped tables and on the tracking schema;
- SELECT on the key columns and subject columns only, which the sink's statements read to find a
  record's rows and check they are the command's subject's (not on the columns an anonymise action
  blanks: the role may overwrite them, never read them);
- DELETE on the tables of "delete" actions;
- UPDATE on the listed columns of "anonymise" actions (not on the table);
- SELECT, INSERT on the tracking table ``ebbtide_sink.applied_commands``, which it creates first
  (owned by the database's owner, as the tracked tables are, when the administrator is another role).

Every privilege the role held before on tables and schemas of this database is revoked first, in
the same transaction, so after a map change the role has the new map's privileges and no
others, and a running sink never sees a half-granted state. Privileges are per database: run it
once per database, with every map whose tables are in it. Role names and passwords are only
ever passed as quoted identifiers and literals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.base.tracking import TRACKING_DDL, TRACKING_MIGRATION, TRACKING_SCHEMA, TRACKING_TABLE
from ebbtide.sinks.postgres.check import check_table_map
from ebbtide.sinks.postgres.table_map import TableMap

_ROLE = re.compile(r"^[a-z_][a-z0-9_]*$")


class RoleError(ValueError):
    pass


@dataclass
class TablePrivileges:
    """What the role may do on one table."""

    select: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    delete: bool = False


def needed_privileges(store_maps: Sequence[TableMap]) -> dict[str, TablePrivileges]:
    """Per schema-qualified table, the privileges the sink's statements need for these maps."""
    tables: dict[str, TablePrivileges] = {}
    for store_map in store_maps:
        for action in store_map.all_actions():
            privileges = tables.setdefault(action.qualified, TablePrivileges())
            for column in (action.key_column, action.subject_column):
                if column is not None and column not in privileges.select:
                    privileges.select.append(column)
            if action.deletes:
                privileges.delete = True
            for column in action.columns:
                if column not in privileges.update:
                    privileges.update.append(column)
    return tables


class _Session:
    """The administrator's cursor, and the statements run on it (as shown to the operator)."""

    def __init__(self, cur: Cursor) -> None:
        self.cur = cur
        self.done: list[str] = []

    def run(self, statement: sql.Composable, shown: sql.Composable | None = None) -> None:
        self.cur.execute(statement)
        self.done.append((shown or statement).as_string(self.cur))


def grant_sink_role(
    conn: Connection,
    store_maps: Sequence[TableMap],
    role: str,
    *,
    login: bool = False,
    password: str | None = None,
) -> list[str]:
    """Create or update ``role`` with exactly the privileges the sinks of ``store_maps`` need in
    this database (see the module doc), in one transaction; returns the statements run (a
    password shown as ``'***'``). Raises :class:`RoleError` for a bad role name, and
    :class:`~sinks.postgres.table_map.TableMapError` if a map does not fit the database."""
    if not _ROLE.match(role):
        raise RoleError(f"role {role!r}: must be a plain lower-case SQL identifier")
    if not store_maps:
        raise RoleError("no store map given")
    with conn, conn.cursor() as cur:
        session = _Session(cur)
        for store_map in store_maps:
            check_table_map(cur, store_map)
        _tracking_table(session)
        _create_or_alter(session, role, login, password)
        for statement in _revoke_all(cur, role):
            session.run(statement)
        _grant(session, role, needed_privileges(store_maps))
    return session.done


def _tracking_table(session: _Session) -> None:
    """Create the tracking table if missing, owned by the database's owner."""
    cur = session.cur
    cur.execute("SELECT to_regclass(%s)", (TRACKING_TABLE,))
    row = cur.fetchone()
    if row is not None and row[0] is not None:
        session.run(sql.SQL(TRACKING_MIGRATION.strip()))  # a table made before its column xact
        return
    session.run(sql.SQL(TRACKING_DDL.strip()))
    # It belongs to the database's owner, like the tables it tracks, not to the
    # administrator who made it: the application (and its other sinks) may use it.
    cur.execute(
        "SELECT pg_get_userbyid(datdba) <> current_user, pg_get_userbyid(datdba) "
        "FROM pg_database WHERE datname = current_database()"
    )
    other, owner = cur.fetchone()  # type: ignore[misc]
    if other:
        owner_name = sql.Identifier(owner)
        tracking = sql.Identifier(TRACKING_SCHEMA)
        session.run(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(tracking, owner_name))
        table = sql.Identifier(*TRACKING_TABLE.split("."))
        session.run(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, owner_name))


def _create_or_alter(session: _Session, role: str, login: bool, password: str | None) -> None:
    """CREATE ROLE, or ALTER ROLE if it exists (LOGIN or not, and the password if given)."""
    name = sql.Identifier(role)
    session.cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    verb = sql.SQL("ALTER ROLE" if session.cur.fetchone() else "CREATE ROLE")
    options = sql.SQL("LOGIN" if login else "NOLOGIN")
    try:
        if password is not None:
            session.run(
                sql.SQL("{} {} {} PASSWORD {}").format(verb, name, options, sql.Literal(password)),
                sql.SQL("{} {} {} PASSWORD '***'").format(verb, name, options),
            )
        else:
            session.run(sql.SQL("{} {} {}").format(verb, name, options))
    except psycopg2.errors.InsufficientPrivilege:
        raise RoleError(
            f"role {role}: this connection's role may not create or alter roles; connect as an "
            "administrator (--admin-dsn; the local stack's is in .state/postgres/admin-dsn)"
        ) from None


def _grant(session: _Session, role: str, tables: dict[str, TablePrivileges]) -> None:
    """CONNECT on the database, USAGE on the schemas, the tables' privileges, the tracking table's."""
    name = sql.Identifier(role)
    session.cur.execute("SELECT current_database()")
    database = str(session.cur.fetchone()[0])  # type: ignore[index]
    session.run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name))
    schemas = dict.fromkeys([*(t.split(".")[0] for t in tables), TRACKING_SCHEMA])
    for schema in schemas:
        session.run(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), name))
    for table, privileges in tables.items():
        target = sql.Identifier(*table.split("."))
        columns = sql.SQL(", ").join(map(sql.Identifier, privileges.select))
        session.run(sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(columns, target, name))
        if privileges.delete:
            session.run(sql.SQL("GRANT DELETE ON {} TO {}").format(target, name))
        if privileges.update:
            updated = sql.SQL(", ").join(map(sql.Identifier, privileges.update))
            session.run(sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(updated, target, name))
    tracking = sql.Identifier(*TRACKING_TABLE.split("."))
    session.run(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(tracking, name))


def _revoke_all(cur: Cursor, role: str) -> list[sql.Composable]:
    """REVOKE statements for every table, column and schema privilege ``role`` holds in this
    database (revoking a table's privileges also revokes its column privileges)."""
    cur.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "pg_roles r WHERE r.rolname = %s AND ("
        " EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = r.oid)"
        " OR EXISTS (SELECT 1 FROM pg_attribute att, aclexplode(att.attacl) a"
        "            WHERE att.attrelid = c.oid AND a.grantee = r.oid)) ORDER BY 1, 2",
        (role,),
    )
    statements: list[sql.Composable] = [
        sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(schema, table), sql.Identifier(role))
        for schema, table in cur.fetchall()
    ]
    cur.execute(
        "SELECT n.nspname FROM pg_namespace n, pg_roles r WHERE r.rolname = %s "
        "AND EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = r.oid) ORDER BY 1",
        (role,),
    )
    statements += [
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), sql.Identifier(role))
        for (schema,) in cur.fetchall()
    ]
    return statements
