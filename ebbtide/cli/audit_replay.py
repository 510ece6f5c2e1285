"""``ebbtide audit replay``: re-derive the decision log and compare (:mod:`ebbtide.tools.replay`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands, iso_time, seconds, timeout
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.tools.replay import Result

SHOWN = 50  # differences printed in full (--json gives them all)


def add(sub: Subcommands) -> None:
    replay = sub.add_parser(
        "replay",
        help="re-derive the decisions from the events, clock and receipts topics and diff them",
        description="Reads the decisions and the worker's inputs (events, clock, receipts) to their end "
        "and re-derives every decision with the worker's own processor, in memory, under the policy "
        "version each decision records, feeding the inputs in the order the log records (each decision "
        "names the message it was made on; CLOCK_APPLIED entries say where each tick was applied). "
        "Each replayed decision is compared with the recorded one, byte for byte (the hash chain's "
        "fields aside: audit verify checks those). Prints 'N decisions, 0 differences' and exits 0, or "
        "each difference with its partition and offset and exits 1; exits 2 if the log cannot be "
        "replayed (a missing topic, history gone, a policy version not found). docs/auditing.md.",
    )
    replay.add_argument("--subject", metavar="S", help="only this subject's partition and decisions")
    replay.add_argument(
        "--from",
        dest="since",
        type=iso_time,
        metavar="DATE",
        help="compare only decisions whose input (an event's time, a tick's, a receipt's execution "
        "time) is from DATE on (ISO-8601); the replay still starts at the beginning",
    )
    replay.add_argument(
        "--policy",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="retention rules to look for recorded policy versions in, beside the shipped ones (repeatable)",
    )
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="seconds to wait for the broker (default 30)"
    )
    replay.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from ebbtide.streams.policy.calendar import to_ms
    from ebbtide.tools import replay

    options = replay.Options(
        subject=args.subject,
        since=to_ms(args.since) if args.since is not None else None,
        policies=tuple(args.policy),
        timeout=timeout(args),
    )
    console = Console(stderr=True)
    try:
        if console.is_terminal:
            with _Bar(console) as bar:
                result = replay.replay(settings, options, bar)
        else:
            result = replay.replay(settings, options)
    except replay.ReplayError as exc:
        print(f"ebbtide audit replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_as_json(result), indent=2) if args.json else _render(result))
    return 1 if result.differences else 0


class _Bar:
    """The replay's progress on a terminal: one bar per phase."""

    def __init__(self, console: object) -> None:
        from rich.console import Console

        from ebbtide.tools.progress import progress_bar

        assert isinstance(console, Console)
        self.progress = progress_bar(console, transient=True)
        self.task: object | None = None

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def start(self, what: str, total: int) -> None:
        self.task = self.progress.add_task(what, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None and n:
            self.progress.advance(self.task, n)  # type: ignore[arg-type]


def _render(result: Result) -> str:
    lines = [d.describe() for d in result.differences[:SHOWN]]
    if len(result.differences) > SHOWN:
        lines.append(f"... and {len(result.differences) - SHOWN} more (--json lists them all)")
    fed = ", ".join(f"{n} {source}" for source, n in sorted(result.fed.items())) or "nothing"
    notes = [f"replayed partitions {', '.join(map(str, result.partitions))}: fed {fed}"]
    if result.dead_letters:
        notes.append(f"{result.dead_letters} dead-lettered (counted, sent nowhere)")
    if result.duplicates:
        notes.append(f"{result.duplicates} re-sent recorded decisions dropped")
    if result.skipped:
        notes.append(f"{result.skipped} other subjects' receipts skipped")
    if result.not_replayed:
        notes.append(f"{result.not_replayed} messages after the last recorded decision's input not fed")
    lines.append("; ".join(notes))
    found = len(result.differences)
    lines.append(f"{result.decisions} decisions, {found} difference{'' if found == 1 else 's'}")
    return "\n".join(lines)


def _as_json(result: Result) -> dict[str, object]:
    return {
        "decisions": result.decisions,
        "differences": [d.as_json() for d in result.differences],
        "partitions": result.partitions,
        "fed": dict(result.fed),
        "dead_letters": result.dead_letters,
        "duplicates_dropped": result.duplicates,
        "skipped": result.skipped,
        "not_replayed": result.not_replayed,
    }
