"""The export's one self-contained HTML report: what was selected, the totals of each file (equal
to the JSONL line counts), and per subject a timeline, deadlines, deletions per store,
certificates verified and erasure answers (:mod:`.report_subject`).

No external resource: a Content-Security-Policy of ``default-src 'none'`` with inline style only,
no script, no image; links only to ids of the page itself. Every value is escaped. The totals sit
in elements ``id="total-<file>"`` with ``data-count`` (JSONL lines) and ``data-selected``, which
the tests read in Chromium.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ebbtide.tools.certificates import STYLE
from ebbtide.tools.export import report_subject as part
from ebbtide.tools.export.reading import Message
from ebbtide.tools.export.report_subject import Verdicts, e, place
from ebbtide.tools.export.views import SubjectView

_EXTRA_STYLE = """
nav.toc a { margin-right: 1rem; }
section.subject { border-top: 2px solid #d0d7de; margin-top: 2.5rem; }
.verdict.valid { color: #1a7f37; }
.verdict.invalid { color: #cf222e; }
.verdict.not-verified { color: #9a6700; }
td.t { white-space: nowrap; }
div.certificate { margin-bottom: 1.5rem; }
"""


@dataclass(frozen=True)
class ReportFacts:
    """What the report says about the export as a whole."""

    selection: str
    created_at: str
    version: str
    topic_prefix: str
    policy_versions: Sequence[str]
    keys: Sequence[tuple[str, str]]  # (file in the export, key id)
    notes: Sequence[str]
    counts: Mapping[str, int]  # JSONL lines per file
    selected: Mapping[str, int]  # of them, the selected lines


def _totals(facts: ReportFacts) -> str:
    rows = "\n".join(
        f'<tr><td><a href="#file-{e(name)}">{e(name)}.jsonl</a></td>'
        f'<td class="num" id="total-{e(name)}" data-count="{count}" data-selected="{selected}">'
        f'{count}</td><td class="num">{selected}</td></tr>'
        for name, count in facts.counts.items()
        for selected in [facts.selected.get(name, 0)]
    )
    return (
        "<table><thead><tr><th>File</th><th>Lines (messages)</th><th>Of them selected</th></tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table>"
    )


def _files(facts: ReportFacts) -> str:
    items = "\n".join(
        f'<li id="file-{e(name)}"><code>{e(name)}.jsonl</code>'
        + ("" if name == "checkpoints" else f" and <code>{e(name)}.csv</code>")
        + "</li>"
        for name in facts.counts
    )
    return f"<ul>\n{items}\n</ul>"


def _subject_list(views: Sequence[SubjectView]) -> str:
    if not views:
        return '<p class="note">No subject in the selection.</p>'
    items = "\n".join(
        f'<li><a href="#{v.anchor}">{e(v.subject)}</a>: '
        + ", ".join(f"{len(found)} {e(name)}" for name, found in sorted(v.by_file.items()))
        + "</li>"
        for v in views
    )
    return f"<ul>\n{items}\n</ul>"


def _subject(view: SubjectView, verdicts: Verdicts) -> str:
    a = view.anchor
    store_ids = {store: f"{a}-store-{n}" for n, store in enumerate(part.stores_of(view), start=1)}
    item_ids: dict[tuple[str, int, int], str] = {}
    for kind, name in (("cert", "certificates"), ("answer", "answers")):
        for n, message in enumerate(view.of(name), start=1):
            item_ids[place(message)] = f"{a}-{kind}-{n}"
    links = {"deadlines": f"{a}-deadlines", **{f"store:{s}": i for s, i in store_ids.items()}}

    def anchor(message: Message) -> str:
        return item_ids[place(message)]

    counts = " ".join(
        f'<span data-file="{e(name)}" data-count="{len(view.of(name))}">{len(view.of(name))} {e(name)}</span>'
        for name in ("events", "decisions", "commands", "receipts", "certificates", "answers")
    )
    return f"""<section class="subject" id="{a}">
<h2>Subject <span class="mono">{e(view.subject)}</span></h2>
<p>{counts}</p>
<nav class="toc"><a href="#{a}-timeline">Timeline</a><a href="#{a}-deadlines">Deadlines</a>
<a href="#{a}-deletions">Deletions per store</a><a href="#{a}-certificates">Certificates</a>
<a href="#{a}-answers">Erasure answers</a><a href="#top">Top</a></nav>
<h3 id="{a}-timeline">Timeline</h3>
{part.timeline(view, links, item_ids)}
<h3 id="{a}-deadlines">Deadlines</h3>
{part.deadlines(view)}
<h3 id="{a}-deletions">Deletions per store</h3>
{part.deletions(view, store_ids)}
<h3 id="{a}-certificates">Certificates</h3>
{part.certificates(view, verdicts, anchor)}
<h3 id="{a}-answers">Erasure answers</h3>
{part.answers(view, anchor)}
</section>"""


def render_report(facts: ReportFacts, views: Sequence[SubjectView], verdicts: Verdicts) -> str:
    """The whole page. Long because it is the page's one template, read top to bottom like the page."""
    keys = "".join(
        f"<li><code>{e(path)}</code>: key id <code>{e(kid)}</code></li>" for path, kid in facts.keys
    )
    notes = "".join(f"<li>{e(note)}</li>" for note in facts.notes)
    subjects = "\n".join(_subject(view, verdicts) for view in views)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ebbtide audit export: {e(facts.selection)}</title>
<style>{STYLE}{_EXTRA_STYLE}</style>
</head>
<body>
<main id="report">
<h1 id="top">Audit export</h1>
<p class="note">What the Ebbtide pipeline recorded about the selection below, read from its Kafka
topics. The files beside this page hold every message exactly as the broker held it; this page is
a readable summary of them.</p>
<dl class="facts">
<dt>Selection</dt><dd>{e(facts.selection)}</dd>
<dt>Exported at</dt><dd>{e(facts.created_at)}</dd>
<dt>Ebbtide version</dt><dd>{e(facts.version)}</dd>
<dt>Topic prefix</dt><dd class="mono">{e(facts.topic_prefix)}</dd>
<dt>Policy versions seen</dt><dd class="mono">{e(", ".join(facts.policy_versions) or "none")}</dd>
<dt>Subjects</dt><dd id="subject-count" data-count="{len(views)}">{len(views)}</dd>
</dl>
<nav class="toc"><a href="#totals">Totals</a><a href="#subjects">Subjects</a><a href="#keys">Keys</a>
<a href="#notes">Notes</a><a href="#how-to-check">How to check</a></nav>

<h2 id="totals">Totals</h2>
{_totals(facts)}
{_files(facts)}

<h2 id="subjects">Subjects</h2>
{_subject_list(views)}

<h2 id="keys">Keys</h2>
<ul>{keys or "<li>No public key in this export: certificates are not verified.</li>"}</ul>

<h2 id="notes">Notes</h2>
<ul>{notes or "<li>None.</li>"}</ul>

{subjects}

<h2 id="how-to-check">How to check</h2>
<p><code>manifest.json</code> lists each file with its SHA-256 and line count:
<code>sha256sum FILE</code> must print the same digest. The decision chain and the checkpoints'
signatures are checked offline with <code>ebbtide audit verify --export DIR</code>; each
certificate with <code>ebbtide certificate verify FILE --public-key public-key.pem --store-keys
store-keys</code> (a certificate's JSON is the <code>value</code> of its line in
<code>certificates.jsonl</code>, and exactly its <code>raw</code> bytes).</p>
</main>
</body>
</html>
"""
