"""Does every store of the pipeline's store map have a sink that can answer its commands?

The store map (``streams/policy/stores.v1.toml``) says which stores hold which categories; each
sink has its own configuration (a table map per PostgreSQL store, ``sinks/vendors.toml`` for
the HTTP vendors, fixed stores for the log store and the backups). A category a store holds but
its sink cannot act on would be answered FAILED at every tick: this finds such gaps up front.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sinks.backups import catalogue as backups
from sinks.http.vendors import DEFAULT_VENDORS, Vendor, VendorConfigError, load_vendors
from sinks.logstore import partitions as logstore
from sinks.postgres.table_map import TableMap, TableMapError, load_table_map, map_path
from streams.policy.rules import Policy
from streams.policy.stores import StoreMap


def coverage_problems(
    stores: StoreMap,
    table_map: Callable[[str], TableMap] | None = None,
    vendors: dict[str, Vendor] | None = None,
) -> list[str]:
    """Every (store, category) of ``stores`` its sink's configuration does not cover, in words.

    ``table_map``: a PostgreSQL store's table map by store id (default: the shipped
    ``sinks/<store>.toml``); ``vendors``: the HTTP vendors (default: ``sinks/vendors.toml``)."""
    problems: list[str] = []
    if table_map is None:
        table_map = _shipped_table_map
    if vendors is None:
        try:
            vendors = load_vendors(DEFAULT_VENDORS, environ={})
        except VendorConfigError as exc:
            return [str(exc)]
    fixed = {"logstore": (logstore.STORE, logstore.CATEGORY), "backups": (backups.STORE, backups.CATEGORY)}
    for store in stores.stores:
        held = [h.category for h in store.holds]
        if store.kind == "postgres":
            try:
                tables = table_map(store.id)
            except TableMapError as exc:
                problems.append(f"{store.id}: no usable table map ({exc})")
                continue
            problems += [
                f"{store.id}: its table map has no tables for {category}"
                for category in held
                if not tables.actions(category)
            ]
        elif store.kind == "http":
            vendor = vendors.get(store.id)
            if vendor is None:
                problems.append(f"{store.id}: no vendor of that store in the vendors config")
                continue
            problems += [
                f"{store.id}: the vendors config does not let it delete {category}"
                for category in held
                if not vendor.holds(category)
            ]
        else:
            sink_store, category = fixed[store.kind]
            if store.id != sink_store or held != [category]:
                problems.append(
                    f"{store.id}: the {store.kind} sink answers store {sink_store}, category {category} only"
                )
    return problems


def ref_problems(policy: Policy, table_map: Callable[[str], TableMap] | None = None) -> list[str]:
    """Every table that ``ebbtide backfill`` would announce without the ref its category's rule
    follows (a record announced so could never be deleted), in words. Only PostgreSQL stores'
    table maps announce records; one that cannot be loaded is :func:`coverage_problems`' to name."""
    if policy.stores is None:
        return []
    if table_map is None:
        table_map = _shipped_table_map
    problems: list[str] = []
    for store in policy.stores.stores:
        if store.kind != "postgres":
            continue
        try:
            tables = table_map(store.id)
        except TableMapError:
            continue
        for action in tables.all_actions():
            rule = policy.needs_ref(action.category)
            if rule is not None and action.subject_column is not None and action.ref_column is None:
                problems.append(
                    f"{store.id}: table {action.qualified} announces {action.category} records without "
                    f"a ref_column, but rule {rule.id} deletes them when {' or '.join(rule.starts)} "
                    "names their ref: they could never be deleted"
                )
    return problems


def _shipped_table_map(store_id: str) -> TableMap:
    path: Path = map_path(store_id)
    tables = load_table_map(path)
    if tables.store != store_id:
        raise TableMapError(f"{path} is the map of store {tables.store}")
    return tables
