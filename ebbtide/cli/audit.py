"""``ebbtide audit verify|replay|export``: what an auditor runs on the decision log.

One module per subcommand (:mod:`.audit_verify`, :mod:`.audit_replay`, :mod:`.audit_export`),
each adding its parser to the ``audit`` group listed in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

from collections.abc import Callable

from ebbtide.cli import audit_export, audit_replay, audit_verify
from ebbtide.cli.arguments import Subcommands

# Each adds one ``audit`` subcommand (its parser and its ``func``).
SUBCOMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    audit_verify.add,
    audit_replay.add,
    audit_export.add,
)


def add_audit(sub: Subcommands) -> None:
    audit = sub.add_parser(
        "audit",
        help="the decision log for auditors: verify its hash chain, replay it, export it",
        description="Commands an auditor runs on the decision log; each has --help.",
    )
    group = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    for add in SUBCOMMANDS:
        add(group)
