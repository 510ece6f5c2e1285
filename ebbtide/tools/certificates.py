"""Deletion certificates for people: the stores' public keys in a directory (``ebbtide certificate
verify --store-keys``) and a readable HTML page of a signed certificate (``ebbtide certificate
html``/``get``, the demo's report). The document itself is :mod:`streams.certificates`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ebbtide.streams.certificates import DeletionEntry, entry_order, parse_document


def store_keys_in(directory: Path) -> dict[str, bytes]:
    """The sinks' public keys in a directory, by store: ``sink-<store>.pub`` (as the worker
    trusts them, ``EBBTIDE_TRUSTED_KEYS``). OSError if the directory cannot be read."""
    prefix, suffix = "sink-", ".pub"
    return {
        path.name[len(prefix) : -len(suffix)]: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.name.startswith(prefix) and path.name.endswith(suffix) and path.is_file()
    }


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f23; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1.2rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.85rem;
              overflow-wrap: anywhere; }
.note { color: #57606a; font-size: 0.9rem; }
@media print { body { margin: 0; max-width: none; } }
"""


def _table_cells(entry: DeletionEntry) -> tuple[str, ...]:
    return (
        entry.store,
        entry.category,
        entry.record,
        entry.rule_id,
        entry.deadline,
        entry.ordered_at,
        entry.executed_at,
        entry.outcome,
    )


def render_html(document: Mapping[str, Any]) -> str:
    """A readable, self-contained HTML page of a signed document (it does not check the signature).

    ValueError if the document is malformed. Every value is HTML-escaped. Long because it is the
    page's one template, read top to bottom like the page.
    """
    try:
        certificate, signature = parse_document(document)
    except ValueError as exc:
        raise ValueError(f"cannot render: {exc}") from None

    def e(value: object) -> str:
        return html.escape(str(value), quote=True)

    ordered = sorted(certificate.entries, key=entry_order)
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td>{e(value)}</td>" for value in _table_cells(entry))
        + f'<td class="num">{e(entry.rows)}</td></tr>'
        for entry in ordered
    )
    commands = "\n".join(
        f"<tr><td>{e(entry.store)}</td><td>{e(entry.record)}</td>"
        f'<td class="mono">{e(entry.command_id)}</td>'
        f'<td class="mono">{e(entry.receipt.signer_key_id) if entry.receipt is not None else "-"}</td></tr>'
        for entry in ordered
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Deletion certificate</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Deletion certificate</h1>
<p class="note">Written confirmation that each record listed below has been deleted by the store that
held it, or was no longer held there.</p>
<dl class="facts">
<dt>Subject</dt><dd class="mono">{e(certificate.subject_id)}</dd>
<dt>Issuer</dt><dd>{e(certificate.issuer)}</dd>
<dt>Issued at</dt><dd>{e(certificate.issued_at)}</dd>
<dt>Policy version</dt><dd class="mono">{e(certificate.policy_version)}</dd>
<dt>Records</dt><dd>{len(certificate.entries)}</dd>
</dl>

<h2>Deletions</h2>
<table>
<thead><tr><th>Store</th><th>Category</th><th>Record</th><th>Rule</th><th>Deadline</th><th>Ordered</th>
<th>Deleted at</th><th>Outcome</th><th>Rows</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="note">DELETED: the store deleted the record. NOT_FOUND: the store no longer held it.
ANONYMISED: the row is kept (for bookkeeping) with its personal fields blanked. EXPIRES: the record
remains only in immutable backups (the number under Rows) and is gone when the last of them expires,
at the time under "Deleted at"; a restore of such a backup deletes it again. Times are in UTC.</p>

<h2>Deletion commands</h2>
<table>
<thead><tr><th>Store</th><th>Record</th><th>Command</th><th>Receipt signed by store key</th></tr></thead>
<tbody>
{commands}
</tbody>
</table>

<h2>Signature</h2>
<dl class="facts">
<dt>Algorithm</dt><dd>{e(signature["algorithm"])}</dd>
<dt>Key id</dt><dd class="mono">{e(signature["key_id"])}</dd>
<dt>Signature</dt><dd class="mono">{e(signature["value"])}</dd>
</dl>

<h2>How to verify</h2>
<p>This page is a readable copy. The signed certificate is the JSON file it was made from. Anyone holding
that file and the issuer's public key can check it offline, without contacting the issuer:</p>
<pre><code>ebbtide certificate verify FILE --public-key KEY.pem</code></pre>
<p>The command checks the Ed25519 signature over the certificate's content and that the key id of the
public key is {e(signature["key_id"])}. Any change to the file after signing makes verification fail.</p>
<p>Each deletion also carries its store's own signed receipt. With the stores' public keys
(<code>sink-&lt;store&gt;.pub</code> in a directory), each receipt is checked against its store's key too,
so the certificate proves each store's word, not only the issuer's:</p>
<pre><code>ebbtide certificate verify FILE --public-key KEY.pem --store-keys DIR</code></pre>
</body>
</html>
"""
