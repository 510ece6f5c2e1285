"""Declarative store maps: category -> table and key column."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DEFAULT_MAP = Path(__file__).with_name("customer_db.toml")


class StoreMapError(ValueError):
    pass


@dataclass(frozen=True)
class TableMapping:
    category: str
    table: str  # optionally schema-qualified
    key_column: str


@dataclass(frozen=True)
class StoreMap:
    store: str
    tables: dict[str, TableMapping]

    def for_category(self, category: str) -> TableMapping | None:
        return self.tables.get(category)


def load_store_map(path: Path = DEFAULT_MAP) -> StoreMap:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StoreMapError(f"{path}: {exc}") from None
    store = doc.get("store")
    if not isinstance(store, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", store):
        raise StoreMapError(f"{path}: 'store' must be a lower-case identifier")
    tables: dict[str, TableMapping] = {}
    for entry in doc.get("tables", []):
        mapping = TableMapping(entry.get("category", ""), entry.get("table", ""), entry.get("key_column", ""))
        for name in (mapping.table, mapping.key_column):
            if not _IDENT.match(name):
                raise StoreMapError(f"{path}: {name!r} is not a plain SQL identifier")
        if mapping.category in tables:
            raise StoreMapError(f"{path}: category {mapping.category!r} is mapped twice")
        tables[mapping.category] = mapping
    if not tables:
        raise StoreMapError(f"{path}: no [[tables]]")
    return StoreMap(store, tables)
