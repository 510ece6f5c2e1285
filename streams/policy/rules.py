"""The retention policy: rules loaded from a versioned TOML file, checked, with a content hash."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, replace
from datetime import tzinfo
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.vocabulary import ACCOUNT_STARTS, ACCOUNT_STOPS, CLOCK_EVENTS, UNTIL_EVENTS

if TYPE_CHECKING:
    from ebbtide.streams.policy.stores import StoreMap

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
ClockKind = Literal["account", "event", "written"]
Anchor = Literal["event_time", "end_of_financial_year", "end_of_day", "until"]
Scope = Literal["subject", "ref"]
OnErasure = Literal["delete", "restrict"]
CLOCK_KINDS: tuple[str, ...] = ("account", "event", "written")
ANCHORS: tuple[str, ...] = ("event_time", "end_of_financial_year", "end_of_day", "until")
DEFAULT_POLICY = Path(__file__).with_name("retention.v1.toml")


class PolicyError(ValueError):
    """A policy file that cannot be enforced as written."""


class UnknownCategory(PolicyError):
    pass


class PolicyWithoutSource(PolicyError):
    pass


class UncoveredCategory(PolicyError):
    pass


class WaitsForever(PolicyError):
    """A rule whose deletion could wait forever on an event with no deadline."""


@dataclass(frozen=True)
class Keep:
    years: int = 0
    months: int = 0
    days: int = 0

    def describe(self) -> str:
        parts = [
            f"{n} {unit}{'s' if n != 1 else ''}"
            for n, unit in ((self.years, "year"), (self.months, "month"), (self.days, "day"))
            if n
        ]
        return ", ".join(parts) or "0 days"


@dataclass(frozen=True)
class Rule:
    id: str
    categories: tuple[str, ...]
    clock: ClockKind
    starts: tuple[str, ...]
    stops: tuple[str, ...]
    scope: Scope
    anchor: Anchor
    keep: Keep
    grace_days: int
    on_erasure: OnErasure
    source: str
    basis: str
    reason: str


@dataclass(frozen=True)
class Duties:
    erasure_response_months: int = 1
    erasure_response_source: str = "GDPR art. 12(3)"
    breach_authority_hours: int = 72
    breach_authority_source: str = "GDPR art. 33"
    breach_customer_hours: int = 72
    breach_customer_source: str = "GDPR art. 34"
    export_offer_source: str = "seed 003 section 13"


@dataclass(frozen=True)
class Policy:
    version: str
    rules: tuple[Rule, ...]
    duties: Duties
    content_hash: str
    # The zone of every local date the rules count in (financial year, end of day): the law of
    # the seeds is Norwegian, so Norwegian time unless the policy file says otherwise.
    time_zone: str = calendar.DEFAULT_ZONE
    # Where each category's records are held: every record is fanned out to one copy per store
    # that holds it. None: a record lives only in the store that announced it.
    stores: StoreMap | None = None

    def with_stores(self, stores: StoreMap) -> Policy:
        """This policy with a store map; the map's content is part of the label from now on."""
        combined = hashlib.sha256(f"{self.content_hash}:{stores.content_hash}".encode()).hexdigest()
        return replace(self, stores=stores, content_hash=combined)

    def copies_of(self, store: str, category: str, ref: str | None) -> tuple[str, ...]:
        """The stores holding a record of ``category`` announced by ``store``."""
        if self.stores is None:
            return (store,)
        return self.stores.holders(category, ref) or (store,)

    def is_registry(self, store: str) -> bool:
        """Whether ``store`` is a domain registry (a transferred domain's copy stays there)."""
        return self.stores is not None and self.stores.is_registry(store)

    def announcement_problem(self, store: str, category: str, ref: str | None) -> str | None:
        """Why a store's announcement of a record (RecordWritten) cannot be enforced, if it
        cannot: a store the map does not list as holding the category (its commands would have
        nowhere to go), or a missing ref that the category's rule follows (its clock could never
        start, so the record would never be deleted). Names fields, never values."""
        if self.stores is not None and not self.stores.holds(store, category):
            return (
                f"RecordWritten names store {store!r}, which the store map doesn't list as holding "
                f"{category!r} (add it to the map, then create its topic)"
            )
        rule = self.needs_ref(category)
        if rule is not None and not (ref and ref.strip()):
            return (
                f"field payload.ref: missing; rule {rule.id} deletes {category} records when "
                f"{' or '.join(rule.starts)} names their ref, so without one the record could never "
                "be deleted"
            )
        if self.stores is not None and store not in self.stores.holders(category, ref):
            return (  # the ref itself may be personal (a domain name): not repeated here
                f"field payload.ref: store {store!r} does not hold {category} records with this ref "
                "(the store map gives them to other stores: its own copy would never be tracked)"
            )
        return None

    def service_level(self, store: str) -> int:
        """Milliseconds a store may take to answer a command before it is chased (default 1 h)."""
        return self.stores.service_level(store) if self.stores is not None else 3_600_000

    @property
    def zone(self) -> tzinfo:
        return calendar.zone(self.time_zone)

    @cached_property
    def label(self) -> str:
        """``v<version>+<hash prefix>``: what every decision records."""
        return f"v{self.version}+{self.content_hash[:12]}"

    def rule_for(self, category: str) -> Rule | None:
        """The first rule that covers ``category``."""
        return self._by_category.get(category)

    def rule(self, rule_id: str | None) -> Rule | None:
        """The first rule with this id."""
        return self._by_id.get(rule_id) if rule_id is not None else None

    # The engine asks these of every record it judges: looked up, not searched for.
    @cached_property
    def _by_category(self) -> dict[str, Rule]:
        found: dict[str, Rule] = {}
        for rule in self.rules:
            for category in rule.categories:
                found.setdefault(category, rule)
        return found

    @cached_property
    def _by_id(self) -> dict[str, Rule]:
        found: dict[str, Rule] = {}
        for rule in self.rules:
            found.setdefault(rule.id, rule)
        return found

    def needs_ref(self, category: str) -> Rule | None:
        """The rule of ``category`` if its clock follows the record's ref (an invoice id, a
        domain, a consent purpose…): a record announced without one could never be deleted."""
        rule = self.rule_for(category)
        return rule if rule is not None and rule.clock == "event" and rule.scope == "ref" else None


def parse_policy(text: str, origin: str = "<policy>", require_all_categories: bool = True) -> Policy:
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
        if rule.id in {r.id for r in rules if r is not rule}:
            raise PolicyError(f"{origin}: two rules have the id {rule.id!r}")
        for category in rule.categories:
            if category in seen:
                raise PolicyError(
                    f"{origin}: category {category!r} is covered by both {seen[category]!r} and {rule.id!r}"
                )
            seen[category] = rule.id
    uncovered = [c for c in CATEGORIES if c not in seen]
    if uncovered and require_all_categories:
        raise UncoveredCategory(
            f"{origin}: no rule covers categor{'y' if len(uncovered) == 1 else 'ies'} {', '.join(uncovered)}"
        )
    duties = _duties(origin, doc.get("duties", {}))
    time_zone = doc.get("time_zone", calendar.DEFAULT_ZONE)
    if not isinstance(time_zone, str):
        raise PolicyError(f"{origin}: 'time_zone' must be a tz database name, e.g. {calendar.DEFAULT_ZONE!r}")
    try:
        calendar.zone(time_zone)
    except calendar.UnknownTimeZone as exc:
        raise PolicyError(f"{origin}: 'time_zone': {exc}") from None
    canonical = json.dumps(
        {
            "version": version,
            "time_zone": time_zone,
            "rules": [asdict(r) for r in rules],
            "duties": asdict(duties),
        },
        sort_keys=True,
    ).encode()
    return Policy(version, rules, duties, hashlib.sha256(canonical).hexdigest(), time_zone)


def _text(where: str, raw: dict[str, Any], field: str) -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value.strip():
        if field in ("source", "basis"):
            raise PolicyWithoutSource(f"{where}: every rule must name its {field}")
        raise PolicyError(f"{where}: '{field}' must be a non-empty string")
    return value


def _names(where: str, raw: dict[str, Any], field: str) -> tuple[str, ...]:
    value = raw.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}: '{field}' must be a list of event names")
    for name in value:
        if name not in CLOCK_EVENTS:
            raise PolicyError(
                f"{where}: '{field}' names unknown event {name!r} (known: {', '.join(CLOCK_EVENTS)})"
            )
    return tuple(value)


def _count(where: str, value: object, name: str, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise PolicyError(f"{where}: '{name}' must be a whole number from 0 to {limit}")
    return value


def _rule(origin: str, index: int, raw: dict[str, Any]) -> Rule:
    where = f"{origin}: rule {raw.get('id', f'#{index + 1}')}"
    rule_id, source, basis, reason = (_text(where, raw, f) for f in ("id", "source", "basis", "reason"))
    categories = raw.get("categories")
    if not isinstance(categories, list) or not categories:
        raise PolicyError(f"{where}: 'categories' must be a non-empty list")
    for category in categories:
        if category not in CATEGORIES:
            raise UnknownCategory(f"{where}: unknown category {category!r}")
    clock = raw.get("clock")
    if clock not in CLOCK_KINDS:
        raise PolicyError(f"{where}: unknown clock {clock!r} (known: {', '.join(CLOCK_KINDS)})")
    anchor = raw.get("anchor", "event_time")
    if anchor not in ANCHORS:
        raise PolicyError(f"{where}: unknown anchor {anchor!r} (known: {', '.join(ANCHORS)})")
    if "requires" in raw:
        raise WaitsForever(
            f"{where}: 'requires' lets a deletion wait for an event that no one owes by any "
            "deadline, so it could wait forever; make that event a duty with its own deadline "
            "(an overdue duty is reported and alerted, and the data still goes at its deadline)"
        )
    starts, stops = (_names(where, raw, f) for f in ("starts", "stops"))
    _check_clock(where, clock, anchor, starts, stops)
    scope = raw.get("scope", "subject")
    if scope not in ("subject", "ref"):
        raise PolicyError(f"{where}: 'scope' must be 'subject' or 'ref'")
    keep = _keep(where, raw.get("keep"))
    on_erasure = raw.get("on_erasure", "restrict")
    if on_erasure not in ("delete", "restrict"):
        raise PolicyError(f"{where}: 'on_erasure' must be 'delete' or 'restrict'")
    return Rule(
        id=rule_id,
        categories=tuple(categories),
        clock=cast(ClockKind, clock),
        starts=starts,
        stops=stops,
        scope=cast(Scope, scope),
        anchor=cast(Anchor, anchor),
        keep=keep,
        grace_days=_count(where, raw.get("grace_days", 0), "grace_days", 3650),
        on_erasure=cast(OnErasure, on_erasure),
        source=source,
        basis=basis,
        reason=reason,
    )


def _check_clock(
    where: str, clock: str, anchor: str, starts: tuple[str, ...], stops: tuple[str, ...]
) -> None:
    """A rule's clock and the events it names must fit together (see the vocabulary's roles)."""
    if clock == "account" and (set(starts) != set(ACCOUNT_STARTS) or set(stops) != set(ACCOUNT_STOPS)):
        raise PolicyError(
            f"{where}: the account clock starts on {', '.join(ACCOUNT_STARTS)} "
            f"and stops on {', '.join(ACCOUNT_STOPS)}; list exactly those"
        )
    if clock == "event" and not starts:
        raise PolicyError(f"{where}: an event clock needs at least one event in 'starts'")
    if clock == "written" and (starts or stops):
        raise PolicyError(
            f"{where}: a written clock starts when the record is written; it takes no 'starts' or 'stops'"
        )
    if anchor == "until" and not set(starts) <= set(UNTIL_EVENTS) | {"CertificateRevoked"}:
        raise PolicyError(
            f"{where}: anchor 'until' needs start events that carry an end date ({', '.join(UNTIL_EVENTS)})"
        )


def _keep(where: str, keep_raw: object) -> Keep:
    """A rule's retention period, from its ``keep`` table."""
    if not isinstance(keep_raw, dict) or not set(keep_raw) <= {"years", "months", "days"} or not keep_raw:
        raise PolicyError(
            f"{where}: 'keep' must be a table of years, months and/or days, e.g. {{ years = 3 }}"
        )
    keep = Keep(**{unit: _count(where, n, f"keep.{unit}", 36_500) for unit, n in keep_raw.items()})
    if keep.years > 100 or keep.months > 1200:
        raise PolicyError(f"{where}: 'keep' of {keep.describe()} is not a possible retention period")
    return keep


def _duties(origin: str, raw: dict[str, Any]) -> Duties:
    where = f"{origin}: [duties]"
    defaults = Duties()
    values: dict[str, Any] = {}
    for name, default in asdict(defaults).items():
        value = raw.get(name, default)
        if isinstance(default, int):
            value = _count(where, value, name, 8760)
            if value == 0:
                raise PolicyError(f"{where}: '{name}' must be at least 1")
        elif not isinstance(value, str) or not value.strip():
            raise PolicyWithoutSource(f"{where}: '{name}' must name its source")
        values[name] = value
    return Duties(**values)


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror}") from None
    return parse_policy(text, origin=path.name)


@cache
def rules_policy() -> Policy:
    """The shipped retention rules without the store map: each record lives only in the store
    that announced it (for tests of the rules themselves, and single-store deployments)."""
    return load_policy(DEFAULT_POLICY)


@cache
def default_policy() -> Policy:
    """The policy shipped with this version of Ebbtide: retention rules and store map."""
    from ebbtide.streams.policy.stores import load_store_map

    return rules_policy().with_stores(load_store_map())
