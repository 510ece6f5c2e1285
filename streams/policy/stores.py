"""The store map: which stores hold which categories (and fields), and how fast they answer.

Pure data, loaded from a versioned TOML file beside the retention rules. It is part of the
policy: the engine fans every announced record out to one copy per store that holds its
category, so the map's content hash is part of the policy label every decision records.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ebbtide.streams.policy.rules import CATEGORIES, PolicyError

DEFAULT_STORES = Path(__file__).with_name("stores.v1.toml")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TLD = re.compile(r"^[a-z0-9-]{2,63}$")
HOUR_MS = 3_600_000
_HOLDERS_KEPT = 4096  # answers of StoreMap.holders kept, by category and ref


class StoreMapError(PolicyError):
    """A store map that cannot be used as written."""


@dataclass(frozen=True)
class Holding:
    category: str
    fields: tuple[str, ...]
    tlds: tuple[str, ...] | None = None  # only registrations under these top-level domains
    tlds_except: tuple[str, ...] | None = None  # every top-level domain but these
    refs: tuple[str, ...] | None = None  # only records with one of these refs (e.g. consent purposes)

    def matches(self, ref: str | None) -> bool:
        if self.refs is not None and ref not in self.refs:
            return False
        if self.tlds is None and self.tlds_except is None:
            return True
        tld = top_level_domain(ref)
        if tld is None:
            return False
        if self.tlds is not None:
            return tld in self.tlds
        return tld not in (self.tlds_except or ())


@dataclass(frozen=True)
class Store:
    id: str
    name: str
    kind: str
    service_level_ms: int
    source: str
    holds: tuple[Holding, ...]
    # A domain registry or registrar: a domain transferred out stays registered there with the
    # new registrar, so its copy is never ordered deleted (seed 001 "Data portability").
    registry: bool = False

    def holding(self, category: str, ref: str | None) -> Holding | None:
        return next((h for h in self.holds if h.category == category and h.matches(ref)), None)


@dataclass(frozen=True)
class StoreMap:
    version: str
    stores: tuple[Store, ...]
    content_hash: str

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.stores)

    def store(self, store_id: str) -> Store | None:
        return next((s for s in self.stores if s.id == store_id), None)

    def holders(self, category: str, ref: str | None) -> tuple[str, ...]:
        """The stores that hold a record of ``category`` (with ``ref``, for per-TLD registries);
        the engine asks this of every announcement, so the answers are kept (a few thousand)."""
        known = self._holders
        found = known.get((category, ref))
        if found is None:
            found = tuple(s.id for s in self.stores if s.holding(category, ref) is not None)
            if len(known) >= _HOLDERS_KEPT:
                known.clear()
            known[(category, ref)] = found
        return found

    @cached_property
    def _holders(self) -> dict[tuple[str, str | None], tuple[str, ...]]:
        return {}

    def holds(self, store_id: str, category: str) -> bool:
        store = self.store(store_id)
        return store is not None and any(h.category == category for h in store.holds)

    def is_registry(self, store_id: str) -> bool:
        store = self.store(store_id)
        return store is not None and store.registry

    def service_level(self, store_id: str) -> int:
        """Milliseconds a command may wait for its receipt (a store not in the map: one hour)."""
        store = self.store(store_id)
        return store.service_level_ms if store is not None else HOUR_MS


def top_level_domain(ref: str | None) -> str | None:
    """``example.co.no`` → ``no``; None when the ref is not a domain name."""
    if not ref or "." not in ref:
        return None
    tld = ref.rstrip(".").rsplit(".", 1)[1].lower()
    return tld if _TLD.match(tld) else None


def parse_store_map(text: str, origin: str = "<stores>") -> StoreMap:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StoreMapError(f"{origin}: not valid TOML: {exc}") from None
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise StoreMapError(f"{origin}: 'version' must be a non-empty string")
    raw_stores = doc.get("stores")
    if not isinstance(raw_stores, list) or not raw_stores:
        raise StoreMapError(f"{origin}: no [[stores]]")
    stores = tuple(_store(f"{origin}: stores[{i}]", raw) for i, raw in enumerate(raw_stores))
    ids = [s.id for s in stores]
    for store_id in ids:
        if ids.count(store_id) > 1:
            raise StoreMapError(f"{origin}: two stores have the id {store_id!r}")
    canonical = json.dumps({"version": version, "stores": [asdict(s) for s in stores]}, sort_keys=True)
    return StoreMap(version, stores, hashlib.sha256(canonical.encode()).hexdigest())


def _store(where: str, raw: Any) -> Store:
    if not isinstance(raw, dict):
        raise StoreMapError(f"{where}: must be a table")
    store_id = raw.get("id")
    if not isinstance(store_id, str) or not _ID.match(store_id):
        raise StoreMapError(f"{where}: 'id' must be a lower-case identifier (a-z, 0-9, _)")
    where = f"{where} ({store_id})"
    for name in ("name", "source"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise StoreMapError(f"{where}: '{name}' must be a non-empty string")
    kind = raw.get("kind")
    # Which kinds have a sink is the sinks' registry's to say (`ebbtide policy check`, a sink's
    # start): this pure layer knows only that a kind is a name.
    if not isinstance(kind, str) or not _ID.match(kind):
        raise StoreMapError(f"{where}: 'kind' must be the name of a sink kind (a-z, 0-9, _)")
    holds_raw = raw.get("holds")
    if not isinstance(holds_raw, list) or not holds_raw:
        raise StoreMapError(f"{where}: no [[stores.holds]]: say which categories it holds")
    holds = tuple(_holding(f"{where}: holds[{i}]", h) for i, h in enumerate(holds_raw))
    registry = raw.get("registry", False)
    if not isinstance(registry, bool):
        raise StoreMapError(f"{where}: 'registry' must be true or false")
    if registry and any(h.category != "domain_contact" for h in holds):
        raise StoreMapError(f"{where}: a registry holds domain_contact records only")
    return Store(
        store_id,
        raw["name"],
        kind,
        _service_level(where, raw.get("service_level")),
        raw["source"],
        holds,
        registry,
    )


def _holding(where: str, raw: Any) -> Holding:
    if not isinstance(raw, dict):
        raise StoreMapError(f"{where}: must be a table")
    category = raw.get("category")
    if category not in CATEGORIES:
        raise StoreMapError(f"{where}: unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    fields = raw.get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise StoreMapError(f"{where} ({category}): 'fields' must list the personal fields it holds")
    tlds = _tlds(where, raw, "tlds")
    tlds_except = _tlds(where, raw, "tlds_except")
    if tlds is not None and tlds_except is not None:
        raise StoreMapError(f"{where} ({category}): give 'tlds' or 'tlds_except', not both")
    if (tlds is not None or tlds_except is not None) and category != "domain_contact":
        raise StoreMapError(f"{where} ({category}): 'tlds' applies only to domain_contact")
    refs = raw.get("refs")
    if refs is not None and (
        not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs)
    ):
        raise StoreMapError(
            f"{where} ({category}): 'refs' must list the refs it holds, e.g. [\"newsletter\"]"
        )
    return Holding(category, tuple(fields), tlds, tlds_except, tuple(refs) if refs is not None else None)


def _tlds(where: str, raw: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = raw.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(t, str) and _TLD.match(t) for t in value)
    ):
        raise StoreMapError(f"{where}: '{name}' must list top-level domains without the dot, e.g. [\"no\"]")
    return tuple(value)


def _service_level(where: str, raw: Any) -> int:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise StoreMapError(f"{where}: 'service_level' must be {{ hours = N }} or {{ days = N }}")
    ((unit, amount),) = raw.items()
    factor = {"hours": HOUR_MS, "days": 24 * HOUR_MS}.get(unit)
    if factor is None or not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= 8760:
        raise StoreMapError(f"{where}: 'service_level' must be {{ hours = N }} or {{ days = N }}, N from 1")
    return amount * factor


def load_store_map(path: Path = DEFAULT_STORES) -> StoreMap:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreMapError(f"{path}: {exc.strerror}") from None
    return parse_store_map(text, origin=path.name)
