"""An erasure answer for the person: as plain text and as a self-contained HTML page, in Norwegian
or English (:mod:`.answer_texts`). Pure: it takes the decoded answer record."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ebbtide.tools.log import answer_texts as texts
from ebbtide.tools.log.rendering import printable

ZONE = ZoneInfo("Europe/Oslo")  # the policy's time zone: the seeds' law is Norwegian


@dataclass(frozen=True)
class Line:
    """One item of the answer, in the page's language."""

    record: str
    data: str
    why: str
    why_recorded: str | None  # the answer's own (English) reason, beside our translation
    basis: str
    until: str
    quote: texts.Quote | None


def _local(moment: datetime | str | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(ZONE).strftime("%Y-%m-%d %H:%M")


def _why(item: dict[str, Any], lang: str) -> tuple[str, str | None]:
    """The reason in ``lang``, and the recorded reason where that is a translation of it."""
    recorded = str(item["reason"])
    if lang == "en":
        return recorded, None
    if item["action"] == "DELETE":
        return texts.DELETE_NB, recorded
    why = texts.WHY_NB.get(str(item.get("rule_id")), "")
    notes = [note for marker, note in texts.NOTES_NB if marker in recorded]
    return "; ".join(p for p in (why, *notes) if p) or recorded, recorded


def lines(answer: dict[str, Any], lang: str, action: str) -> list[Line]:
    """The answer's items of ``action`` (DELETE or KEEP), in the answer's order."""
    labels = texts.LABELS[lang]
    out = []
    for item in answer["items"]:
        if item["action"] != action:
            continue
        rule = str(item.get("rule_id"))
        why, recorded = _why(item, lang)
        if lang == "nb" and rule in texts.BASIS_NB and item.get("basis"):
            basis = texts.BASIS_NB[rule]
        else:
            basis = item.get("basis") or "-"
        until = "-" if action == "DELETE" else (_local(item.get("until")) or labels["stopped"])
        category = str(item["category"])
        data = texts.CATEGORY.get(category, {}).get(lang, category)
        quote = texts.QUOTES.get(rule, {}).get(lang) if action == "KEEP" else None
        out.append(Line(str(item["record"]), data, why, recorded, basis, until, quote))
    return out


def _quote_text(quote: texts.Quote, lang: str) -> str:
    cite = f"{quote.seed}, “{quote.section}”"
    text = f"“{quote.text}” ({cite})"
    if quote.lang != lang:
        labels = texts.LABELS[lang]
        text += f" [{labels['quoted']}" + (
            f"; {labels['ours']}: “{quote.translation}”]" if quote.translation else "]"
        )
    return text


def render_text(answer: dict[str, Any], lang: str) -> str:
    """The answer as plain text in ``lang`` (nb or en)."""
    labels = texts.LABELS[lang]
    out = [
        labels["title"],
        labels["intro"],
        "",
        f"{labels['request']}: {answer['request_id']}",
        f"{labels['subject']}: {answer['subject_id']}",
        f"{labels['answered']}: {_local(answer['answered_at'])}",
        f"{labels['due']}: {_local(answer['due_by'])}",
        f"{labels['policy']}: {answer['policy_version']}",
        f"{_quote_text(texts.RIGHT[lang], lang)}",
    ]
    for action, title in (("DELETE", labels["deleted"]), ("KEEP", labels["kept"])):
        out += ["", f"{title}:"]
        found = lines(answer, lang, action)
        if not found:
            out.append(f"  {labels['none']}")
        for line in found:
            out.append(f"  - {line.data}: {line.record}")
            out.append(f"    {labels['why']}: {line.why}")
            if line.why_recorded is not None and line.why_recorded != line.why:
                out.append(f"    ({labels['recorded']}: {line.why_recorded})")
            if action == "KEEP":
                out.append(f"    {labels['basis']}: {line.basis}")
                out.append(f"    {labels['until']}: {line.until}")
            if line.quote is not None:
                out.append(f"    {labels['clause']}: {_quote_text(line.quote, lang)}")
    return "\n".join(printable(line) for line in [*out, "", labels["times"], labels["translated"]])


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f23; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1.2rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td:nth-child(2) { min-width: 11rem; }
blockquote { margin: 0.3rem 0 0; color: #57606a; font-size: 0.85rem; }
.note { color: #57606a; font-size: 0.85rem; }
.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85rem; overflow-wrap: anywhere; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _quote_html(quote: texts.Quote, lang: str) -> str:
    labels = texts.LABELS[lang]
    cite = f"<cite>({_e(quote.seed)}, “{_e(quote.section)}”)</cite>"
    text = f'<blockquote lang="{_e(quote.lang)}">“{_e(quote.text)}” {cite}'
    if quote.lang != lang:
        text += f'<br><span class="note">{_e(labels["quoted"])}'
        if quote.translation:
            text += f"; {_e(labels['ours'])}: “{_e(quote.translation)}”"
        text += "</span>"
    return text + "</blockquote>"


def _rows(answer: dict[str, Any], lang: str, action: str) -> str:
    labels = texts.LABELS[lang]
    found = lines(answer, lang, action)
    if not found:
        return f"<p>{_e(labels['none'])}</p>"
    head = [labels["data"], labels["record"], labels["why"]]
    if action == "KEEP":
        head += [labels["basis"], labels["until"]]
    body = []
    for line in found:
        why = _e(line.why)
        if line.why_recorded is not None and line.why_recorded != line.why:
            why += (
                f'<br><span class="note" lang="en">{_e(labels["recorded"])}: {_e(line.why_recorded)}</span>'
            )
        if line.quote is not None:
            why += _quote_html(line.quote, lang)
        cells = [_e(line.data), f'<span class="mono">{_e(line.record)}</span>', why]
        if action == "KEEP":
            cells += [_e(line.basis), _e(line.until)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def render_html(answer: dict[str, Any], lang: str) -> str:
    """The answer as a self-contained HTML page in ``lang`` (no external resource; every value
    escaped)."""
    labels = texts.LABELS[lang]
    facts = [
        (labels["request"], answer["request_id"]),
        (labels["subject"], answer["subject_id"]),
        (labels["answered"], _local(answer["answered_at"])),
        (labels["due"], _local(answer["due_by"])),
        (labels["policy"], answer["policy_version"]),
    ]
    dl = "\n".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="{_e(lang)}">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(labels["title"])}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{_e(labels["title"])}</h1>
<p>{_e(labels["intro"])}</p>
{_quote_html(texts.RIGHT[lang], lang)}
<dl class="facts">
{dl}
</dl>
<h2>{_e(labels["deleted"])}</h2>
{_rows(answer, lang, "DELETE")}
<h2>{_e(labels["kept"])}</h2>
{_rows(answer, lang, "KEEP")}
<p class="note">{_e(labels["times"])} {_e(labels["translated"])}</p>
</body>
</html>
"""
