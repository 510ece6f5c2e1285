"""The composition root: the one place that reads the settings and wires the parts together.

The CLI, the demo, the tools and the tests ask for a part here instead of building it: the
policy (the retention rules with the settings' store map), the worker's Faust app, a sink of a
given kind, the clock. Nothing below this module (``streams``, ``sinks``, ``ebbtide.runtime``)
reads the store map or chooses an implementation itself.

Heavy imports (Faust, Kafka clients, database drivers) happen inside the functions that need
them, so a command that needs none of them starts fast.
"""

from __future__ import annotations

from pathlib import Path

from ebbtide.runtime.settings import Settings
from streams.policy.rules import Policy, load_policy, rules_policy
from streams.policy.stores import DEFAULT_STORES, StoreMap, load_store_map


def store_map(settings: Settings) -> StoreMap:
    """The store map of ``settings`` (EBBTIDE_STORE_MAP; default: the one shipped with the policy):
    which stores hold which categories. Each store has a command topic and a sink."""
    return load_store_map(settings.store_map or DEFAULT_STORES)


def policy(settings: Settings, rules: Path | None = None) -> Policy:
    """The policy a worker with ``settings`` runs: the retention rules of the file ``rules``
    (default: the shipped rules) with the settings' store map."""
    loaded = load_policy(rules) if rules is not None else rules_policy()
    return loaded.with_stores(store_map(settings))
