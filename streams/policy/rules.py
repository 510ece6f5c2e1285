"""The retention policy: rules loaded from a versioned TOML file, with a content hash."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Literal

CATEGORIES = (
    "client",
    "domain_contact",
    "ssl_contact",
    "auto_collected",
    "payment",
    "invoice",
    "correspondence",
    "marketing",
    "hosted",
)
Clock = Literal["account", "bookkeeping"]
CLOCKS: tuple[Clock, ...] = ("account", "bookkeeping")
DEFAULT_POLICY = Path(__file__).with_name("retention.v1.toml")


class PolicyError(ValueError):
    """A policy file that cannot be enforced as written."""


class UnknownCategory(PolicyError):
    pass


class PolicyWithoutSource(PolicyError):
    pass


@dataclass(frozen=True)
class Rule:
    id: str
    categories: tuple[str, ...]
    clock: Clock
    keep_years: int
    source: str
    basis: str
    reason: str


@dataclass(frozen=True)
class Policy:
    version: str
    rules: tuple[Rule, ...]
    content_hash: str

    @property
    def label(self) -> str:
        """``v<version>+<hash prefix>``: what every decision records."""
        return f"v{self.version}+{self.content_hash[:12]}"

    def rule_for(self, category: str) -> Rule | None:
        for rule in self.rules:
            if category in rule.categories:
                return rule
        return None


def parse_policy(text: str, origin: str = "<policy>") -> Policy:
    """Parse and check a policy; raise :class:`PolicyError` naming the rule and field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{origin}: not valid TOML: {exc}") from None
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise PolicyError(f"{origin}: 'version' must be a non-empty string")
    rules = tuple(_rule(origin, i, raw) for i, raw in enumerate(doc.get("rules", [])))
    if not rules:
        raise PolicyError(f"{origin}: no [[rules]]")
    seen: dict[str, str] = {}
    for rule in rules:
        for category in rule.categories:
            if category in seen:
                raise PolicyError(
                    f"{origin}: category {category!r} is covered by both "
                    f"{seen[category]!r} and {rule.id!r}"
                )
            seen[category] = rule.id
    canonical = json.dumps(
        {"version": version, "rules": [asdict(r) for r in rules]}, sort_keys=True
    ).encode()
    return Policy(version, rules, hashlib.sha256(canonical).hexdigest())


def _rule(origin: str, index: int, raw: dict[str, object]) -> Rule:
    where = f"{origin}: rule {raw.get('id', f'#{index + 1}')}"
    for field in ("id", "clock", "source", "basis", "reason"):
        if not isinstance(raw.get(field), str) or not str(raw[field]).strip():
            if field in ("source", "basis"):
                raise PolicyWithoutSource(f"{where}: every rule must name its {field}")
            raise PolicyError(f"{where}: '{field}' must be a non-empty string")
    categories = raw.get("categories")
    if not isinstance(categories, list) or not categories:
        raise PolicyError(f"{where}: 'categories' must be a non-empty list")
    for category in categories:
        if category not in CATEGORIES:
            raise UnknownCategory(f"{where}: unknown category {category!r}")
    if raw["clock"] not in CLOCKS:
        raise PolicyError(f"{where}: unknown clock {raw['clock']!r} (known: {', '.join(CLOCKS)})")
    keep = raw.get("keep_years")
    if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= 100:
        raise PolicyError(f"{where}: 'keep_years' must be a whole number from 0 to 100")
    return Rule(
        id=str(raw["id"]),
        categories=tuple(str(c) for c in categories),
        clock=raw["clock"],
        keep_years=keep,
        source=str(raw["source"]),
        basis=str(raw["basis"]),
        reason=str(raw["reason"]),
    )


def load_policy(path: Path) -> Policy:
    return parse_policy(path.read_text(encoding="utf-8"), origin=path.name)


@cache
def default_policy() -> Policy:
    """The policy shipped with this version of Ebbtide."""
    return load_policy(DEFAULT_POLICY)
