"""Is a table map fit for its database? Read from the catalog when a PostgreSQL sink starts and
before ``ebbtide sink-role`` grants anything."""

from __future__ import annotations

from psycopg2.extensions import cursor as Cursor

from ebbtide.sinks.postgres.table_map import TableMap, TableMapError


def check_table_map(cur: Cursor, table_map: TableMap) -> None:
    """Check the map against the database: every table and column exists, a column blanked to NULL
    may be NULL, and no table is listed after a table it references by a foreign key (children
    before parents, or the parent's delete fails). Raises :class:`TableMapError` naming the field.
    Reads only the catalog, so the sink's least-privilege role can run it."""
    source = table_map.source
    for category, actions in table_map.categories.items():
        oids: list[int] = []
        for i, action in enumerate(actions):
            where = f"{source}: categories.{category}[{i}]"
            cur.execute("SELECT to_regclass(%s)::oid", (action.qualified,))
            row = cur.fetchone()
            if row is None or row[0] is None:
                raise TableMapError(f"{where}.table: no table {action.qualified} in the database")
            oids.append(int(row[0]))
            cur.execute(
                "SELECT attname, attnotnull FROM pg_attribute "
                "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
                (oids[-1],),
            )
            not_null = dict(cur.fetchall())
            named = [
                ("key_column", action.key_column),
                *(("columns", c) for c in action.columns),
                ("subject_column", action.subject_column),
                ("ref_column", action.ref_column),
                ("time_column", action.time_column),
            ]
            for field, column in named:
                if column is not None and column not in not_null:
                    raise TableMapError(f"{where}.{field}: no column {column} in {action.qualified}")
            for column in action.columns:
                if not_null[column] and action.value_of(column) is None:
                    raise TableMapError(
                        f"{where}.columns: {action.qualified}.{column} is NOT NULL; "
                        f'give it a replacement value (replace = {{ {column} = "..." }})'
                    )
        cur.execute(
            "SELECT conname, conrelid, confrelid FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = ANY(%s::oid[]) AND confrelid = ANY(%s::oid[]) AND conrelid <> confrelid "
            "ORDER BY conname",
            (oids, oids),
        )
        for name, child_oid, parent_oid in cur.fetchall():
            child, parent = oids.index(int(child_oid)), oids.index(int(parent_oid))
            if child > parent:
                raise TableMapError(
                    f"{source}: categories.{category}: {actions[child].qualified} (action {child}) "
                    f"references {actions[parent].qualified} (action {parent}) by foreign key {name}; "
                    f"list it before {actions[parent].qualified} (children before parents)"
                )
