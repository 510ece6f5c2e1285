"""``ebbtide audit export (--subject S | --period FROM..TO) --out DIR``: the decision log and what
it caused, for a regulator: JSONL and CSV, the public keys, a manifest and one HTML report."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings

NAME = "ebbtide audit export"


def add(sub: Subcommands) -> None:
    export = sub.add_parser(
        "export",
        help="export a subject's or a period's log: JSONL, CSV, keys, manifest and an HTML report",
        description="Write DIR (new or empty): events, decisions, commands (every store's), receipts, "
        "certificates and erasure answers as JSONL and CSV, checkpoints.jsonl, the worker's public key "
        "(public-key.pem) and the stores' keys (store-keys/), manifest.json (the selection, the version, "
        "the policy labels seen, each file's SHA-256 and line count) and report.html (per subject: "
        "timeline, deadlines, deletions per store, certificates verified, answers). --subject: the "
        "subject's messages, and the whole decision chain of its partitions (its own lines marked "
        '"selected": true) so that `ebbtide audit verify --export DIR` can check it. --period: per '
        "partition, the messages from the first whose Kafka timestamp is at or after FROM up to the "
        "first at or after TO (excluded). Progress goes to stderr. Formats: docs/auditing.md.",
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--subject", help="a subject id")
    which.add_argument(
        "--period",
        metavar="FROM..TO",
        help="ISO-8601 dates or times, UTC unless a zone is given (TO excluded)",
    )
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new or empty directory")
    export.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="the worker's certificate public key (default: EBBTIDE_WORKER_PUBLIC_KEY, or the .pub "
        "beside EBBTIDE_CERTIFICATE_KEY)",
    )
    export.add_argument(
        "--store-keys",
        type=Path,
        metavar="DIR",
        help="the stores' sink public keys, sink-<store>.pub (default: EBBTIDE_TRUSTED_KEYS)",
    )
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError
    from rich.console import Console

    from ebbtide.tools.export.keys import UnusableKey
    from ebbtide.tools.export.reading import ReadStalled
    from ebbtide.tools.export.run import ExportError, export
    from ebbtide.tools.export.selection import Selection, SelectionError, parse_period
    from ebbtide.tools.progress import progress_bar

    try:
        period = parse_period(args.period) if args.period is not None else None
        selection = Selection(subject=args.subject, period=period)
    except SelectionError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    bar = progress_bar(console, transient=True)

    def progress(description: str, total: int) -> Callable[[int], None]:
        if not console.is_terminal:  # in a log: one line per step, no bar
            print(f"{description} ({total} message(s))", file=sys.stderr, flush=True)
            return lambda n: None
        task = bar.add_task(description, total=total)
        return lambda n: bar.advance(task, n)

    try:
        with bar if console.is_terminal else contextlib.nullcontext():
            done = export(settings, selection, args.out, (args.public_key, args.store_keys), progress)
    except (ExportError, UnusableKey, ReadStalled) as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        where = f"the broker at {settings.kafka_bootstrap} (EBBTIDE_KAFKA_BOOTSTRAP)"
        print(f"{NAME}: {where} failed: {type(exc).__name__}; nothing exported", file=sys.stderr)
        return 1
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    lines = ", ".join(f"{n} {name}" for name, n in done.counts.items())
    print(f"{done.out}: {done.subjects} subject(s); {lines}; report {done.out / 'report.html'}")
    return 0
