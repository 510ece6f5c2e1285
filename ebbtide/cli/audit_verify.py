"""``ebbtide audit verify [--from OFFSET|DATE] [--export DIR] [--public-key PEM] [--json]``: check
the decision log's hash chains and the worker's signed checkpoints (docs/auditing.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands, iso_time
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.tools.audit.chain import Message
    from ebbtide.tools.audit.verdict import Verdict

EXPORT_KEY = "public-key.pem"  # the public key an export carries


def start_point(text: str) -> int | datetime:
    """``--from``: an offset (a whole number) or an ISO-8601 date or time (UTC if no zone)."""
    if text.isdigit():
        return int(text)
    try:
        return iso_time(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"not an offset nor an ISO-8601 date: {text!r}") from None


def add(sub: Subcommands) -> None:
    verify = sub.add_parser(
        "verify",
        help="check every decisions partition's hash chain and the signed checkpoints",
        description="Walk every partition of the decisions topic (or an export), check each link "
        "(seq and prev_hash) and each checkpoint's signature and head, and report the first broken "
        "link per partition with its offset: changed, removed, reordered or inserted. Exit 0 with a "
        "summary, 1 with the findings, 2 when nothing could be checked (no topic, no key).",
    )
    verify.add_argument(
        "--from",
        dest="start",
        type=start_point,
        metavar="OFFSET|DATE",
        help="start each partition at this offset, or at this time (Kafka timestamps); the chain "
        "is anchored by the first decision read and the checkpoint before it",
    )
    verify.add_argument(
        "--export",
        metavar="DIR",
        help="verify an export offline: DIR/decisions.jsonl and DIR/checkpoints.jsonl",
    )
    verify.add_argument(
        "--public-key",
        metavar="PEM",
        help="the worker's public key (default: DIR/public-key.pem with --export, else "
        "EBBTIDE_WORKER_PUBLIC_KEY, the .pub beside the worker's signing key)",
    )
    verify.add_argument("--json", action="store_true", help="the verdict as one JSON object")
    verify.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.tools.audit.reading import Unreadable
    from ebbtide.tools.audit.verdict import verify

    key_path = Path(args.public_key) if args.public_key else None
    if key_path is None:
        key_path = Path(args.export) / EXPORT_KEY if args.export else settings.command_public_key
    try:
        public_pem = key_path.read_bytes()
    except OSError as exc:
        print(
            f"ebbtide audit verify: no public key at {key_path} ({exc.strerror}); give --public-key",
            file=sys.stderr,
        )
        return 2
    try:
        if args.export:
            decisions, checkpoints = _from_export(Path(args.export), args.start)
            verdict = verify(decisions, checkpoints, public_pem, whole=args.start is None)
        else:
            verdict = _from_kafka(settings, args.start, public_pem)
    except Unreadable as exc:
        print(f"ebbtide audit verify: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the key is not an Ed25519 public key
        print(f"ebbtide audit verify: {key_path}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(verdict.as_json(), indent=2))
    elif verdict.ok:
        print(verdict.summary())
    else:
        print(f"BROKEN: {len(verdict.findings)} finding(s)")
        for finding in verdict.findings:
            print(f"  - {finding.line()}")
        print(verdict.summary())
    return 0 if verdict.ok else 1


def _from_export(directory: Path, start: int | datetime | None) -> tuple[list[Message], list[Message]]:
    from ebbtide.tools.audit.reading import read_export

    return read_export(directory / "decisions.jsonl", start), read_export(directory / "checkpoints.jsonl")


def _from_kafka(settings: Settings, start: int | datetime | None, public_pem: bytes) -> Verdict:
    """The topics' verdict; a progress bar on a terminal's stderr for a long run."""
    from rich.console import Console

    from ebbtide.runtime.settings import Topics
    from ebbtide.tools.audit.reading import TopicRead
    from ebbtide.tools.audit.verdict import verify
    from ebbtide.tools.progress import progress_bar

    topics = Topics(settings.topic_prefix)
    checkpoints = list(TopicRead(settings, topics.checkpoints))
    decisions = TopicRead(settings, topics.decisions, start)
    console = Console(stderr=True)
    if not console.is_terminal or decisions.total < 10_000:
        return verify(decisions, checkpoints, public_pem, whole=start is None)
    with progress_bar(console, transient=True) as bar:
        task = bar.add_task("verifying decisions", total=decisions.total)
        advancing = _counted(decisions, lambda: bar.advance(task))
        return verify(advancing, checkpoints, public_pem, whole=start is None)


def _counted(messages: Iterable[Message], step: Callable[[], None]) -> Iterator[Message]:
    for m in messages:
        step()
        yield m
