"""The demo's summary: what happened in every store, why what is left is left, and the proof:
every confirmed deletion is really gone (:mod:`ebbtide.demo.checks`), and a signed certificate
verifies (a tampered one not)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ebbtide.demo import checks, database, scenario
from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, codec_for
from ebbtide.sinks.base.opening import KeyFinder
from ebbtide.streams import certificates
from ebbtide.streams.engine.model import record_id
from ebbtide.streams.policy.stores import StoreMap
from ebbtide.tools import certificates as certificate_pages
from ebbtide.tools import processes
from ebbtide.tools.revealing import revealed_decision
from ebbtide.tools.state_reader import read_to_end


@dataclass
class Inventory:
    """What the stores hold at one moment."""

    tables: dict[str, int]
    others: dict[str, int]
    vendors: dict[str, int]

    @classmethod
    def take(cls, dsn: str, standin: VendorStandIn, stores: StoreMap) -> Inventory:
        vendors = {}
        for store in stores.stores:
            if store.kind == "http":
                vendors[store.id] = sum(len(standin.keys(store.id, h.category)) for h in store.holds)
        return cls(database.counts(dsn), database.other_stores(dsn), vendors)

    def vendor_total(self) -> int:
        return sum(self.vendors.values())


def summarise(
    console: Console,
    settings: Settings,
    samples: dict[str, processes.Samples],
    dsn: str,
    standin: VendorStandIn,
    stores: StoreMap,
    sc: scenario.Scenario,
    before: Inventory,
    final: datetime,
    keys: KeyFinder,
) -> int:
    """Print the summary; 0 if every check holds (``final``: where the pipeline clock ended;
    ``keys``: those the demo sealed its events with)."""
    worker = samples["worker"]
    after = Inventory.take(dsn, standin, stores)
    opened = opened_decisions(read_topic(settings, Topics(settings.topic_prefix).decisions), keys)
    decisions = [d for d in opened if d["kind"] != "CLOCK_APPLIED"]  # a clock's, not a record's
    latest = {d["record"]: d for d in decisions}

    console.print(_pipeline_table(worker))
    console.print(_stores_table(worker, stores))
    console.print(_holdings_table(before, after))
    console.print(_rights_table(decisions, latest, sc))

    problems, kept = checks.check_databases(dsn, latest)
    problems += checks.check_vendors(standin, stores, latest)
    problems += checks.check_compliance(sc, final, standin, stores, decisions, latest)
    refused_holds = processes.total(worker, "ebbtide_security_events_total", source="events")
    if refused_holds:  # the demo signs every hold it publishes: none may be refused
        problems.append(f"{refused_holds:.0f} legal hold events refused as not signed by a trusted key")
    console.print(_kept_table(kept))
    if problems:
        for problem in problems[:20]:
            console.print(f"[red]{problem}")
        console.print(f"[red]{len(problems)} inconsistencies between decisions and the stores")
        return 1
    confirmed = sum(1 for d in latest.values() if d["kind"] == "DELETION_CONFIRMED")
    console.print(
        f"[green]Proven: {confirmed} deletions confirmed by receipts, each really gone from its store "
        "(database rows, vendor records, log partitions; backups expire); every remaining row is "
        "explained by a rule."
    )
    console.print(_compliance_line(sc, decisions, latest, final))
    exports = checks.overdue(decisions)["export"]
    if exports:
        console.print(
            f"[yellow]Expected warning: {exports} export offers overdue (hosting agreements terminated "
            "without an export offer). Their hosted data was deleted at the end of the paid period all "
            "the same, backups included: data not exported is the customer's loss (seed 003 section 13)."
        )
    return _prove_a_certificate(console, settings)


def _pipeline_table(worker: processes.Samples) -> Table:
    flow = Table(title="Pipeline")
    flow.add_column("step")
    flow.add_column("count", justify="right")

    def metric(name: str, **labels: str) -> float:
        return processes.total(worker, name, **labels)

    for label, value in (
        ("events consumed", metric("ebbtide_events_consumed_total")),
        ("record copies stamped (one per store holding it)", metric("ebbtide_records_stamped_total")),
        ("deadlines still pending", metric("ebbtide_pending_deadlines")),
        ("deletion commands sent (re-sends included)", metric("ebbtide_commands_sent_total")),
        ("re-sent for want of an answer", metric("ebbtide_commands_resent_total")),
        (
            "reported overdue (one decision per copy and escalation step)",
            metric("ebbtide_decisions_total", kind="DELETION_OVERDUE"),
        ),
        ("receipts received", metric("ebbtide_receipts_total")),
        ("deletion certificates signed and published", metric("ebbtide_certificates_total", result="issued")),
        ("dead-lettered messages", metric("ebbtide_dlq_messages_total")),
    ):
        flow.add_row(label, f"{value:.0f}")
    return flow


def _kept_table(kept: Counter[tuple[str, str]]) -> Table:
    why = Table(title="Database rows kept, and why")
    for column in ("category", "why", "rows"):
        why.add_column(column, justify="right" if column == "rows" else "left")
    for (category, reason), count in sorted(kept.items()):
        why.add_row(category, reason, str(count))
    return why


def _stores_table(worker: processes.Samples, stores: StoreMap) -> Table:
    table = Table(title="Every store: commands and answers")
    columns = ("store", "kind", "sent", "deleted", "anonymised", "gone already", "in backups", "failed")
    for column in (*columns, "awaiting"):
        table.add_column(column, justify="left" if column in ("store", "kind") else "right")
    outcomes = ("DELETED", "ANONYMISED", "NOT_FOUND", "EXPIRES", "FAILED")
    for store in stores.stores:
        counts = [processes.total(worker, "ebbtide_commands_sent_total", store=store.id)]
        counts += [
            processes.total(worker, "ebbtide_receipts_total", store=store.id, outcome=o) for o in outcomes
        ]
        counts.append(processes.total(worker, "ebbtide_deletions_awaiting_receipt", store=store.id))
        table.add_row(store.id, store.kind, *(f"{n:.0f}" for n in counts))
    return table


def _holdings_table(before: Inventory, after: Inventory) -> Table:
    table = Table(title="What the stores hold")
    for column in ("where", "before", "after", "gone"):
        table.add_column(column, justify="left" if column == "where" else "right")
    rows = [(f"customer/billing db: {t}", n, after.tables[t]) for t, n in before.tables.items()]
    rows += [(what, n, after.others[what]) for what, n in before.others.items()]
    rows += [(f"vendor {v}: records", n, after.vendors[v]) for v, n in before.vendors.items()]
    for where, was, now in rows:
        table.add_row(where, str(was), str(now), str(was - now))
    return table


def _prove_a_certificate(console: Console, settings: Settings) -> int:
    """Fetch the certificate that covers the most stores, verify it with the worker's public key,
    then show that a tampered copy fails."""
    found = read_topic(settings, Topics(settings.topic_prefix).certificates, raw=True)
    if not found:
        console.print("[red]no deletion certificate was published")
        return 1
    documents = [certificates.loads(value) for value in found]
    best = max(
        documents,
        key=lambda d: (
            len({e["store"] for e in d["certificate"]["entries"]}),
            d["certificate"]["subject_id"],
        ),
    )
    body = best["certificate"]
    out = settings.state_dir / "certificates"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{body['subject_id']}.json"
    path.write_text(certificates.dumps(best), encoding="utf-8")
    path.with_suffix(".html").write_text(certificate_pages.render_html(best), encoding="utf-8")
    public = settings.signing_key.with_suffix(".pub").read_bytes()
    valid = certificates.verify(best, public)
    table = Table(title=f"Deletion certificate of {body['subject_id']} (issued {body['issued_at']})")
    for column in ("store", "record", "outcome", "rows", "executed at"):
        table.add_column(column)
    for entry in body["entries"]:
        table.add_row(
            entry["store"], entry["record"], entry["outcome"], str(entry["rows"]), entry["executed_at"]
        )
    console.print(table)
    tampered = json.loads(json.dumps(best))
    tampered["certificate"]["entries"][0]["executed_at"] = "2019-01-01T00:00:00Z"
    refused = certificates.verify(tampered, public)
    console.print(
        f"{len(documents)} certificates published. This one is in {path} (and .html); "
        f"`ebbtide certificate verify {path} --public-key {settings.signing_key.with_suffix('.pub')}` says "
        + ("[green]VALID" if not valid else f"[red]INVALID: {valid}")
        + "; with one date changed it says "
        + (f"[green]INVALID ({refused[0]})" if refused else "[red]VALID (it should not)")
    )
    return 0 if not valid and refused else 1


def opened_decisions(decisions: list[dict[str, Any]], keys: KeyFinder) -> list[dict[str, Any]]:
    """The decisions with their record keys opened with the keys the demo sealed with (the
    checks compare them with the stores' keys; also those of subjects shredded since)."""
    return [revealed_decision(d, keys) for d in decisions]


def read_topic(settings: Settings, topic: str, raw: bool = False) -> list[Any]:
    """Every message of a topic, in partition order: decoded decisions, or raw values."""
    codec = codec_for(DECISION)
    return [m.value if raw else codec.decode(m.value) for m in read_to_end(settings, topic)]


def _rights_table(
    decisions: list[dict[str, Any]], latest: dict[str, dict[str, Any]], sc: scenario.Scenario
) -> Table:
    kinds = Counter(d["kind"] for d in decisions)
    stopped = sum(
        1
        for d in decisions
        if d["kind"] == "CLOCK_STOPPED" and not str(d["reason"]).startswith(checks.TRANSFERRED)
    )
    erased = {
        d["record"] for d in decisions if d["kind"] == "DEADLINE_MOVED" and "erasure request" in d["reason"]
    }
    after_hold = {d["record"] for d in decisions if d["kind"] == "RELEASED"}
    confirmed = {d["record"] for d in decisions if d["kind"] == "DELETION_CONFIRMED"}
    reviews = {r for r in confirmed if r.startswith(f"{scenario.REVIEW_STORE}/marketing/")}
    opened = sum(
        1 for d in decisions if d["kind"] == "DUTY_OPENED" and d["record"].startswith("duty/erasure/")
    )
    refused, withdrawn = checks.closed(decisions, "refused"), checks.closed(decisions, "withdrawn")
    overdue = checks.overdue(decisions)
    table = Table(title="Rights and duties")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("record copies whose clock stopped (reactivation, new consent)", stopped),
        ("newsletter consents withdrawn (marketing deleted at once)", sc.withdrawn),
        ("customers unsubscribed from review invitations (Trustpilot)", sc.review_unsubscribes),
        ("review invitations deleted at Trustpilot (unsubscribed or erased)", len(reviews)),
        (
            "domain copies left with registries (transferred out: no deletion sent)",
            len(checks.transferred(latest)),
        ),
        ("erasure requests answered", kinds["ERASURE_ANSWERED"]),
        ("erasure requests refused (identity never verified)", len(refused)),
        ("erasure requests withdrawn by the person", len(withdrawn)),
        (
            "erasure requests held: identity not verified",
            opened - kinds["ERASURE_ANSWERED"] - len(refused) - len(withdrawn),
        ),
        ("record copies erased early on request", len(erased & confirmed)),
        ("record copies kept, restricted (e.g. bookkeeping)", kinds["RESTRICTED"]),
        ("record copies held by a legal hold", kinds["HELD"]),
        ("record copies deleted after their hold was released", len(after_hold & confirmed)),
        ("duties overdue: erasure answers (held requests)", overdue["erasure"]),
        ("duties overdue: export offers (data deleted anyway, seed 003 s.13)", overdue["export"]),
        ("duties overdue: breach notices", overdue["breach"]),
    ):
        table.add_row(label, str(value))
    return table


def _compliance_line(
    sc: scenario.Scenario, decisions: list[dict[str, Any]], latest: dict[str, dict[str, Any]], final: datetime
) -> str:
    def confirmed(rid: str) -> bool:
        return (latest.get(rid) or {}).get("kind") == "DELETION_CONFIRMED"

    reviews = sum(1 for r in latest if r.startswith(f"{scenario.REVIEW_STORE}/marketing/") and confirmed(r))
    lost = sum(1 for u in sc.unexported if confirmed(record_id(scenario.HOSTING_STORE, "hosted", u["site"])))
    transferred = len(checks.transferred(latest))
    refused, withdrawn = (len(checks.closed(decisions, how)) for how in ("refused", "withdrawn"))
    return (
        f"[green]Checked by {final.date()}: {reviews} review invitations gone from Trustpilot; "
        f"{transferred} copies of domains transferred out still at their registries, with "
        f"no deletion sent there; {refused} refused and "
        f"{withdrawn} withdrawn erasure requests closed in time; {lost} hosting "
        "agreements never offered for export deleted at the end of the paid period all the same."
    )
