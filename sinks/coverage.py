"""Does every store of the pipeline's store map have a sink that can answer its commands?

The store map (``streams/policy/stores.v1.toml``) says which stores hold which categories; each
kind of sink has its own configuration (a table map per PostgreSQL store, the vendors file for
the HTTP vendors, one fixed store for the log store and one for the backups). A category a store
holds but its sink cannot act on would be answered FAILED at every tick: this finds such gaps up
front, asking each store's kind in the registry (:mod:`sinks.registry`).
"""

from __future__ import annotations

from ebbtide.sinks import registry
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.stores import StoreMap


def coverage_problems(stores: StoreMap) -> list[str]:
    """Every (store, category) of ``stores`` its sink's shipped configuration does not cover, in
    words, store by store."""
    problems: list[str] = []
    known = registry.names()
    for store in stores.stores:
        if store.kind not in known:
            problems.append(f"{store.id}: no sink of kind {store.kind} (known: {', '.join(known)})")
            continue
        problems += registry.get(store.kind).covers(store)
    return problems


def ref_problems(policy: Policy) -> list[str]:
    """Every table that ``ebbtide backfill`` would announce without the ref its category's rule
    follows (a record announced so could never be deleted), in words. Only the PostgreSQL stores'
    table maps announce records; one that cannot be loaded is :func:`coverage_problems`' to name."""
    if policy.stores is None:
        return []
    problems: list[str] = []
    for store in policy.stores.stores:
        if store.kind in registry.names():
            problems += registry.get(store.kind).ref_problems(policy, store)
    return problems
