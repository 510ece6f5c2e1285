"""The ``postgres`` kind: one process per PostgreSQL store, driven by the store's table map."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.kind import Option, SinkGroup, SinkKind
from ebbtide.sinks.postgres.table_map import DEFAULT_MAP, TableMap, TableMapError, load_table_map, map_path
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.stores import Store


def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    """The sink of the store whose table map ``--map`` names (default: ``customer_db``'s); the
    map is checked against the database (tables, columns, children first) before it runs."""
    from ebbtide.sinks.postgres.sink import PostgresSink

    chosen = getattr(args, "map", None)
    table_map = load_table_map(map_path(chosen) if chosen else DEFAULT_MAP)
    return SinkGroup([PostgresSink(settings, table_map, settings.require_pg_dsn(), stop=stop)], stop)


def shipped_table_map(store_id: str) -> TableMap:
    """The table map shipped for ``store_id`` (``sinks/postgres/maps/<store>.toml``)."""
    path: Path = map_path(store_id)
    tables = load_table_map(path)
    if tables.store != store_id:
        raise TableMapError(f"{path} is the map of store {tables.store}")
    return tables


def covers(store: Store, table_map: Callable[[str], TableMap] = shipped_table_map) -> list[str]:
    """The categories ``store`` holds that its table map has no tables for, in words."""
    try:
        tables = table_map(store.id)
    except TableMapError as exc:
        return [f"{store.id}: no usable table map ({exc})"]
    return [
        f"{store.id}: its table map has no tables for {holding.category}"
        for holding in store.holds
        if not tables.actions(holding.category)
    ]


def ref_problems(
    policy: Policy, store: Store, table_map: Callable[[str], TableMap] = shipped_table_map
) -> list[str]:
    """Every table of ``store``'s map that ``ebbtide backfill`` would announce without the ref its
    category's rule follows (a record announced so could never be deleted), in words. A map that
    cannot be loaded is :func:`covers`' to name."""
    try:
        tables = table_map(store.id)
    except TableMapError:
        return []
    problems: list[str] = []
    for action in tables.all_actions():
        rule = policy.needs_ref(action.category)
        if rule is not None and action.subject_column is not None and action.ref_column is None:
            problems.append(
                f"{store.id}: table {action.qualified} announces {action.category} records without "
                f"a ref_column, but rule {rule.id} deletes them when {' or '.join(rule.starts)} "
                "names their ref: they could never be deleted"
            )
    return problems


def processes(stores: Sequence[Store]) -> dict[str, list[str]]:
    """One sink process per store, with the store's shipped table map."""
    return {f"{store.id} sink": ["postgres", "--map", store.id] for store in stores}


KIND = SinkKind(
    name="postgres",
    doc="one PostgreSQL store per process: per category, the ordered delete/anonymise actions of "
    "its table map, children first, with a tracking row in the same transaction",
    build=build,
    covers=covers,
    processes=processes,
    code="sinks/postgres/",
    options=(
        Option(
            "--map",
            "table map TOML, or the store id of a shipped map such as billing_db "
            "(default: sinks/postgres/maps/customer_db.toml)",
            metavar="MAP",
        ),
    ),
    ref_problems=ref_problems,
)
