"""The report's section of one subject: timeline, deadlines, deletions per store (commands and
receipts), certificates verified, erasure answers. Every value is HTML-escaped (:func:`e`); every
id is made of the subject's anchor and a number, never of a value."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

from ebbtide.tools.export.decoding import ms_text
from ebbtide.tools.export.reading import Message
from ebbtide.tools.export.views import SubjectView, Verdict

Verdicts = Mapping[tuple[str, int, int], Verdict]


def e(value: object) -> str:
    """HTML-escaped text ("-" for nothing)."""
    return "-" if value is None or value == "" else html.escape(str(value), quote=True)


def when(value: Any) -> str:
    """A time of a record: epoch ms or ISO-8601 text, escaped."""
    return e(ms_text(value)) if isinstance(value, int) and not isinstance(value, bool) else e(value)


def place(message: Message) -> tuple[str, int, int]:
    f = message.fetched
    return f.topic, f.partition, f.offset


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _v(message: Message) -> Mapping[str, Any]:
    return _mapping(message.value)


def _table(headers: tuple[str, ...], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="note">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def _row(*cells: str) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _payload(value: Mapping[str, Any]) -> tuple[str, str]:
    payload = value.get("payload")
    if isinstance(payload, Mapping) and len(payload) == 1:
        ((name, fields),) = payload.items()
        shown = ", ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, Mapping) else ""
        return name.rsplit(".", 1)[-1], shown
    return "?", ""


def _timeline_item(name: str, value: Mapping[str, Any], links: Mapping[str, str]) -> tuple[str, str, str]:
    """(what, at, link) of one message in the timeline."""
    if name == "events":
        kind, shown = _payload(value)
        return f"event {e(kind)} {e(shown)}", when(value.get("event_time")), ""
    if name == "decisions":
        what = f"decision {e(value.get('kind'))}: {e(value.get('record'))} ({e(value.get('reason'))})"
        return what, when(value.get("deadline")), links.get("deadlines", "")
    if name == "commands":
        what = f"deletion ordered at {e(value.get('store'))}: {e(value.get('record_key'))}"
        return what, when(value.get("issued_at")), links.get(f"store:{value.get('store')}", "")
    if name == "receipts":
        what = (
            f"receipt from {e(value.get('store'))}: {e(value.get('outcome'))}, {e(value.get('rows'))} row(s)"
        )
        return what, when(value.get("executed_at")), links.get(f"store:{value.get('store')}", "")
    if name == "certificates":
        issued = _mapping(value.get("certificate")).get("issued_at")
        return "deletion certificate issued", when(issued), ""
    return f"erasure answer {e(value.get('request_id'))}", when(value.get("answered_at")), ""


def timeline(
    view: SubjectView, links: Mapping[str, str], item_links: Mapping[tuple[str, int, int], str]
) -> str:
    """Every message of the subject in the order Kafka received them (timestamp, then topic and offset)."""
    order = {name: rank for rank, name in enumerate(("events", "decisions", "commands", "receipts"))}
    everything = [(name, m) for name, found in view.by_file.items() for m in found]
    everything.sort(key=lambda nm: (nm[1].fetched.timestamp, order.get(nm[0], 9), *place(nm[1])))
    rows = []
    for name, message in everything:
        what, at, link = _timeline_item(name, _v(message), links)
        target = item_links.get(place(message), link)
        shown = f'<a href="#{e(target)}">{what}</a>' if target else what
        written = e(ms_text(message.fetched.timestamp))
        kind = e(name[:-1])
        rows.append(
            f'<tr><td class="t">{written}</td><td>{kind}</td><td>{shown}</td><td class="t">{at}</td></tr>'
        )
    return _table(("Written to Kafka", "Kind", "What", "Time it names"), rows, "Nothing selected.")


def deadlines(view: SubjectView) -> str:
    """The decisions that set, move or clear a deadline, with the rule, clause and legal basis."""
    rows = [
        _row(
            e(v.get("record")),
            e(v.get("category")),
            e(v.get("kind")),
            e(v.get("rule_id")),
            e(v.get("clause")),
            e(v.get("basis")),
            when(v.get("deadline")),
            e(v.get("policy_version")),
        )
        for v in map(_v, view.of("decisions"))
        if v.get("deadline") is not None
    ]
    headers = ("Record", "Category", "Decision", "Rule", "Clause", "Basis", "Deadline", "Policy")
    return _table(headers, rows, "No decision of this subject names a deadline.")


def stores_of(view: SubjectView) -> list[str]:
    """The stores the subject's commands and receipts name, sorted."""
    found = {str(_v(m).get("store")) for m in [*view.of("commands"), *view.of("receipts")]}
    return sorted(found)


def deletions(view: SubjectView, store_ids: Mapping[str, str]) -> str:
    """Per store: each command with the receipt that answered it (by command id)."""
    receipts: dict[str, list[Mapping[str, Any]]] = {}
    for v in map(_v, view.of("receipts")):
        receipts.setdefault(str(v.get("command_id")), []).append(v)
    parts = []
    for store, anchor in store_ids.items():
        rows = []
        for v in map(_v, view.of("commands")):
            if v.get("store") != store:
                continue
            answers = receipts.get(str(v.get("command_id")), [])
            outcome = "; ".join(f"{a.get('outcome')} ({a.get('rows')} row(s))" for a in answers) or None
            done = "; ".join(when(a.get("executed_at")) for a in answers) or "-"
            rows.append(
                _row(
                    e(v.get("record_key")),
                    e(v.get("category")),
                    f'<span class="mono">{e(v.get("command_id"))}</span>',
                    when(v.get("deadline")),
                    when(v.get("issued_at")),
                    e(outcome),
                    done,
                )
            )
        table = _table(
            ("Record", "Category", "Command", "Deadline", "Ordered", "Outcome", "Executed"),
            rows,
            "Receipts only: no command of this store in the selection.",
        )
        parts.append(f'<h4 id="{anchor}">{e(store)}</h4>\n{table}')
    return "\n".join(parts) or '<p class="note">No deletion command or receipt.</p>'


def certificates(view: SubjectView, verdicts: Verdicts, anchors: Callable[[Message], str]) -> str:
    """Each certificate with its verdict and reasons, and its deletions."""
    parts = []
    for message in view.of("certificates"):
        verdict = verdicts.get(place(message), Verdict("not verified", ("not checked",)))
        body = _mapping(_v(message).get("certificate"))
        entries = _list(body.get("entries"))
        css = e(verdict.status.replace(" ", "-"))
        status = f'<strong class="verdict {css}">{e(verdict.status.upper())}</strong>'
        reasons = "".join(f"<li>{e(r)}</li>" for r in verdict.reasons)
        rows = [
            _row(e(x.get("store")), e(x.get("record")), e(x.get("outcome")), when(x.get("executed_at")))
            for x in entries
            if isinstance(x, Mapping)
        ]
        parts.append(
            f'<div id="{anchors(message)}" class="certificate">'
            f"<p>{status} issued {when(body.get('issued_at'))} by {e(body.get('issuer'))}, "
            f"{len(entries)} deletion(s), "
            f"policy {e(body.get('policy_version'))}</p>"
            + (f"<ul>{reasons}</ul>" if reasons else "")
            + _table(("Store", "Record", "Outcome", "Deleted at"), rows, "No entry.")
            + "</div>"
        )
    return "\n".join(parts) or '<p class="note">No certificate in the selection.</p>'


def answers(view: SubjectView, anchors: Callable[[Message], str]) -> str:
    """Each erasure answer: what is deleted, what is kept, why and until when."""
    parts = []
    for message in view.of("answers"):
        v = _v(message)
        items = _list(v.get("items"))
        rows = [
            _row(
                e(i.get("action")),
                e(i.get("record")),
                e(i.get("category")),
                e(i.get("reason")),
                when(i.get("until")),
                e(i.get("basis")),
            )
            for i in items
            if isinstance(i, Mapping)
        ]
        parts.append(
            f'<div id="{anchors(message)}"><p>Request {e(v.get("request_id"))}: answered '
            f"{when(v.get('answered_at'))}, due by {when(v.get('due_by'))}, "
            f"policy {e(v.get('policy_version'))}</p>"
            + _table(("Action", "Record", "Category", "Why", "Until", "Basis"), rows, "No item.")
            + "</div>"
        )
    return "\n".join(parts) or '<p class="note">No erasure answer in the selection.</p>'
