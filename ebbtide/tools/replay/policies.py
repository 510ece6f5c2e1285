"""The policy versions a decision log was made under, found by their labels.

A decision records the label of the policy it was made under (``v<version>+<hash>``: the
retention rules and the store map). Replay looks for each label among the retention rules
shipped with this version of Ebbtide and any given with ``--policy``, each combined with the
store map of the settings (EBBTIDE_STORE_MAP) and with each store map shipped, and with none.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ebbtide.bootstrap import store_map
from ebbtide.runtime.settings import Settings
from ebbtide.streams.policy.rules import DEFAULT_POLICY, Policy, PolicyError, load_policy
from ebbtide.streams.policy.stores import StoreMap, load_store_map
from ebbtide.tools.replay.reading import ReplayError

SHIPPED = DEFAULT_POLICY.parent  # the shipped policy files: retention.v*.toml, stores.v*.toml


def candidates(settings: Settings, extra: Iterable[Path]) -> dict[str, Policy]:
    """Every policy replay can use, by label. A ``--policy`` file that cannot be read is a
    :class:`ReplayError` naming it."""
    rules: list[Policy] = [load_policy(path) for path in sorted(SHIPPED.glob("retention.v*.toml"))]
    for path in extra:
        try:
            rules.append(load_policy(path))
        except PolicyError as exc:
            raise ReplayError(f"--policy: {exc}") from None
    maps: list[StoreMap] = [load_store_map(path) for path in sorted(SHIPPED.glob("stores.v*.toml"))]
    try:
        maps.append(store_map(settings))
    except PolicyError as exc:
        raise ReplayError(f"EBBTIDE_STORE_MAP: {exc}") from None
    found: dict[str, Policy] = {}
    for policy in rules:
        found.setdefault(policy.label, policy)
        for stores in maps:
            combined = policy.with_stores(stores)
            found.setdefault(combined.label, combined)
    return found


def policies_for(labels: Iterable[str], settings: Settings, extra: Iterable[Path]) -> dict[str, Policy]:
    """The policy of each label; a :class:`ReplayError` naming the first label none gives."""
    known = candidates(settings, extra)
    for label in sorted(set(labels)):
        if label not in known:
            raise ReplayError(
                f"no policy file gives the label {label} that recorded decisions were made under "
                "(pass its retention rules with --policy FILE, and its store map as EBBTIDE_STORE_MAP)"
            )
    return {label: known[label] for label in set(labels)}
