"""The demo's checks: every database row left is explained by a decision, no record whose
deletion was confirmed is still in its store, and the scenario's compliance cases came out as
the rules say. Each check returns the problems it found, one line each."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from ebbtide.demo import database, scenario
from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.streams.engine.model import record_id
from ebbtide.streams.policy.stores import StoreMap

Decisions = list[dict[str, Any]]
Latest = dict[str, dict[str, Any]]  # the latest decision of each record

TRANSFERRED = "transferred out"  # how a registry's copy of a transferred domain is explained


def check_databases(dsn: str, latest: Latest) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Every row left is explained by a decision, and none whose deletion was confirmed is left;
    the rows kept, counted by category and reason."""
    problems = []
    kept: Counter[tuple[str, str]] = Counter()
    for category, keys in database.present_keys(dsn).items():
        for key in keys:
            decision = latest.get(record_id(scenario.STORE_OF[category], category, key))
            if decision is None:
                problems.append(f"{category} {key}: in the database but no decision explains it")
            elif decision["kind"] == "DELETION_CONFIRMED":
                problems.append(f"{category} {key}: deletion confirmed but the row is still there")
            else:
                kept[(category, _why(decision))] += 1
    return problems, kept


def _why(decision: dict[str, Any]) -> str:
    """Why a record is still there, from its latest decision."""
    reason = str(decision["reason"]).split(";")[0]
    if decision["kind"] in ("HELD", "RESTRICTED") or decision["deadline"] is None:
        return reason  # a hold, a restriction or a stopped clock says it all
    if decision["kind"] in ("DELETION_ORDERED", "DELETION_OVERDUE"):
        return f"deletion ordered, receipt pending ({decision['rule_id']})"
    return f"rule {decision['rule_id']}: kept until {_when(decision['deadline'])}"


def _when(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def check_vendors(standin: VendorStandIn, stores: StoreMap, latest: Latest) -> list[str]:
    """No vendor still holds a record whose deletion was confirmed."""
    problems = []
    for store in stores.stores:
        if store.kind != "http":
            continue
        for holding in store.holds:
            present = standin.keys(store.id, holding.category)
            for key in present:
                decision = latest.get(record_id(store.id, holding.category, key))
                if decision is not None and decision["kind"] == "DELETION_CONFIRMED":
                    problems.append(
                        f"{store.id} {holding.category} {key}: deletion confirmed but still there"
                    )
            for rid, decision in latest.items():
                prefix = f"{store.id}/{holding.category}/"
                if (
                    rid.startswith(prefix)
                    and decision["kind"] == "DELETION_CONFIRMED"
                    and rid[len(prefix) :] in present
                ):
                    problems.append(f"{rid}: confirmed but the vendor still holds it")
    return problems


def transferred(latest: Latest) -> set[str]:
    """Registry copies left with the registry: the domain was transferred out, so no deletion is
    sent there (seed 001 'Data portability'). Their latest decision says so."""
    return {
        record
        for record, d in latest.items()
        if d["kind"] in ("CLOCK_STOPPED", "STAMPED") and str(d["reason"]).startswith(TRANSFERRED)
    }


def closed(decisions: Decisions, how: str) -> set[str]:
    """Erasure duties closed without a deletion, ``how``: refused or withdrawn."""
    return {
        d["record"]
        for d in decisions
        if d["kind"] == "DUTY_DONE" and d["record"].startswith("duty/erasure/") and how in d["reason"]
    }


def overdue(decisions: Decisions) -> Counter[str]:
    """Duties reported overdue, by duty (erasure, export, breach): record duty/<duty>/<id>."""
    return Counter(d["record"].split("/")[1] for d in decisions if d["kind"] == "DUTY_OVERDUE")


def check_compliance(
    sc: scenario.Scenario,
    final: datetime,
    standin: VendorStandIn,
    stores: StoreMap,
    decisions: Decisions,
    latest: Latest,
) -> list[str]:
    """What the scenario did to the new compliance rules, seen in the decisions and the stores,
    for what happened by ``final``: review invitations of customers who unsubscribed are gone
    from Trustpilot; a domain transferred out stays at its registry (no deletion ever sent
    there) while our copy goes; refused and withdrawn requests close their duty, never overdue;
    a hosting agreement never offered for export has its data deleted all the same, and its
    export duty reported overdue (and only those). A copy under a legal hold may wait."""
    gone = _Gone(standin, stores, latest)
    for review in sc.reviews:
        if review["unsubscribed_at"] is not None and review["unsubscribed_at"] <= final:
            key = review["key"]
            gone(record_id(scenario.REVIEW_STORE, "marketing", key), scenario.REVIEW_STORE, "marketing", key)
    _check_transfers(sc, final, standin, stores, decisions, gone)
    late = {d["record"] for d in decisions if d["kind"] == "DUTY_OVERDUE"}
    gone.problems += _check_requests(sc, final, decisions, late)
    unexported = {f"duty/export/{u['agreement']}" for u in sc.unexported if u["paid_until"] <= final}
    for duty in sorted(unexported - late):
        gone.problems.append(f"{duty}: never offered, but not reported overdue")
    for duty in sorted(d for d in late if d.startswith("duty/export/") and d not in unexported):
        gone.problems.append(f"{duty}: reported overdue, but the export was offered in time")
    for lost in sc.unexported:
        if lost["paid_until"] <= final:
            key = lost["site"]
            gone(record_id(scenario.HOSTING_STORE, "hosted", key), scenario.HOSTING_STORE, "hosted", key)
    return gone.problems


class _Gone:
    """Checks that a record is gone (confirmed, and not in its vendor's store), unless held; the
    problems found so far."""

    def __init__(self, standin: VendorStandIn, stores: StoreMap, latest: Latest) -> None:
        self.standin, self.stores, self.latest = standin, stores, latest
        self.problems: list[str] = []

    def __call__(self, rid: str, store: str, category: str, key: str) -> None:
        decision = self.latest.get(rid)
        kind = decision["kind"] if decision else None
        if kind == "HELD":
            return
        if kind != "DELETION_CONFIRMED":
            self.problems.append(f"{rid}: expected deleted, latest decision {kind}")
        elif store in {s.id for s in self.stores.stores if s.kind == "http"} and key in self.standin.keys(
            store, category
        ):
            self.problems.append(f"{rid}: deletion confirmed but {store} still holds it")


def _check_transfers(
    sc: scenario.Scenario,
    final: datetime,
    standin: VendorStandIn,
    stores: StoreMap,
    decisions: Decisions,
    gone: _Gone,
) -> None:
    """A domain transferred out: our copy goes after the grace, the registry's stays untouched."""
    ordered = {d["record"] for d in decisions if d["kind"] == "DELETION_ORDERED"}
    for transfer in sc.transfers:
        if transfer["released_at"] > final:
            continue
        key, domain = str(transfer["contact_id"]), transfer["domain"]
        for store in stores.holders("domain_contact", domain):
            rid = record_id(store, "domain_contact", key)
            if not stores.is_registry(store):
                if transfer["released_at"] + timedelta(days=31) <= final:  # 30 days' grace
                    gone(rid, store, "domain_contact", key)
                continue
            reason = str((gone.latest.get(rid) or {}).get("reason", ""))
            if not reason.startswith(TRANSFERRED):
                gone.problems.append(f"{rid}: transferred out, but its latest decision does not say so")
            if rid in ordered:
                gone.problems.append(f"{rid}: transferred out, but a deletion was ordered at the registry")
            if key not in standin.keys(store, "domain_contact"):
                gone.problems.append(f"{rid}: transferred out, but {store} no longer holds it")


def _check_requests(
    sc: scenario.Scenario, final: datetime, decisions: Decisions, late: set[str]
) -> list[str]:
    """Refused and withdrawn erasure requests close their duty in time, never overdue."""
    problems = []
    done = {how: closed(decisions, how) for how in ("refused", "withdrawn")}
    for request in sc.closed_requests:
        if request["at"] > final:
            continue
        duty = f"duty/erasure/{request['request_id']}"
        if duty not in done[request["how"]]:
            problems.append(f"{duty}: {request['how']}, but no decision closed the duty so")
        if duty in late:
            problems.append(f"{duty}: {request['how']} in time, but reported overdue")
    return problems
