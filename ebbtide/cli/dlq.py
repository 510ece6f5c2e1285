"""``ebbtide dlq list|show|replay``: the dead letters of ``<prefix>.dlq`` (:mod:`ebbtide.tools.dlq`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands, seconds, timeout
from ebbtide.runtime.settings import Settings, Topics

if TYPE_CHECKING:
    from collections import Counter

    from ebbtide.tools.dlq import DeadLetter, Replay


def add_dlq(sub: Subcommands) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="dead letters: count them by reason, show them, replay them after a fix",
        description="Reads the dead-letter topic <prefix>.dlq to its end (what the worker and the sinks "
        "could not process). list: how many per reason, and from which topics. show: each dead letter's "
        "headers (reason, source topic, partition, offset), its place in the DLQ and the sizes of its key "
        "and value, never their contents (they may hold personal data). replay: send the selected dead "
        "letters' original key and value back to their source topic (only the worker's inputs, events, "
        "clock and receipts, and the stores' command topics; a keyed message to the partition its key "
        "gives, a tick to its own), then exit 1 if the broker did not acknowledge them all within "
        "--timeout. Replaying twice is harmless for events (event ids make it idempotent), ticks (the "
        "clock never goes back) and commands (command ids); the dead letters stay in the DLQ. A dead "
        "letter that holds no message (a tick dropped after it was consumed) is skipped.",
    )
    dlq.add_argument("action", choices=["list", "show", "replay"])
    dlq.add_argument(
        "--reason",
        metavar="TEXT",
        help="show/replay: only dead letters whose reason contains this text (any case)",
    )
    dlq.add_argument(
        "--source",
        metavar="TOPIC",
        help="show/replay: only dead letters from this topic (its full name, or without the prefix: "
        "events, clock, receipts, commands.<store>)",
    )
    dlq.add_argument("--limit", type=int, metavar="N", help="show/replay: the first N selected (DLQ order)")
    dlq.add_argument("--json", action="store_true", help="list/show: machine-readable output")
    dlq.add_argument("--dry-run", action="store_true", help="replay: say what would be sent, send nothing")
    dlq.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="seconds to wait for the broker (reading, delivery; default 30)",
    )
    dlq.set_defaults(func=cmd_dlq)


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    """List, show or replay; exit 1 with one line if the dead letters cannot be read or sent."""
    from ebbtide.tools import dlq

    args.timeout = timeout(args)
    topic = Topics(settings.topic_prefix).dlq
    name = f"ebbtide dlq {args.action}"
    try:
        if args.action == "list":
            groups = dlq.group_by_reason(dlq.read(settings, args.timeout))
            if args.json:
                total = sum(g.count for g in groups)
                print(json.dumps({"topic": topic, "total": total, "reasons": [g.as_json() for g in groups]}))
            else:
                print(dlq.render_list(groups, topic))
            return 0
        chosen = dlq.select(
            dlq.read(settings, args.timeout),
            reason=args.reason,
            source=args.source,
            prefix=settings.topic_prefix,
            limit=args.limit,
        )
        if args.action == "show":
            if args.json:
                print(json.dumps([letter.summary(topic) for letter in chosen], indent=2))
            else:
                print(dlq.render_show(chosen, topic))
            return 0
        return _replay(args, settings, chosen, name)
    except dlq.DlqError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


def _replay(args: argparse.Namespace, settings: Settings, chosen: list[DeadLetter], name: str) -> int:
    """Replay ``chosen`` unless one of them cannot go back to an input of this pipeline."""
    from ebbtide.tools import dlq

    topics = Topics(settings.topic_prefix)
    plan = dlq.plan_replay(chosen, dlq.replayable_topics(settings), topics.clock)
    replays = plan.replays
    if plan.refused:
        named = ", ".join(f"{t} {n}" for t, n in sorted(plan.refused.items()))
        print(
            f"{name}: {sum(plan.refused.values())} selected dead letter(s) cannot go back to a topic of "
            f"this pipeline's inputs ({named}); nothing replayed (narrow the selection with --source or "
            "--reason)",
            file=sys.stderr,
        )
        return 1
    if not replays:
        print(f"no dead letters in {topics.dlq} to replay{plan.skipped()}")
        return 0
    if args.dry_run:
        print(
            f"would replay {len(replays)} dead letter(s): {plan.counts()}{plan.skipped()}; "
            "--dry-run: nothing sent"
        )
        return 0
    try:
        done = _send(replays, settings, topics.dlq, args.timeout)
    except dlq.ReplayFailed as exc:
        print(
            f"{name}: {exc}; run the replay again (replaying an event twice is harmless: event ids make "
            "it idempotent)",
            file=sys.stderr,
        )
        return 1
    print(f"replayed {sum(done.values())} dead letter(s): {plan.counts()}{plan.skipped()}")
    return 0


def _send(replays: list[Replay], settings: Settings, dlq_topic: str, wait: float) -> Counter[str]:
    """Send the replays with a producer of their own (a progress bar on a terminal)."""
    from kafka.errors import KafkaError
    from rich.console import Console

    from ebbtide.runtime.kafka import close_producer, producer
    from ebbtide.tools import dlq
    from ebbtide.tools.progress import progress_bar

    try:
        out = producer(settings, wait)
    except KafkaError as exc:
        raise dlq.DlqError(
            f"the broker at {settings.kafka_bootstrap} did not answer within {wait:g} s "
            f"({type(exc).__name__}); nothing replayed"
        ) from None
    console = Console(stderr=True)
    try:
        if console.is_terminal and len(replays) > 1:
            with progress_bar(console, transient=True) as bar:
                task = bar.add_task("replaying dead letters", total=len(replays))
                return dlq.replay(replays, out, dlq_topic, wait, lambda n: bar.advance(task, n))
        return dlq.replay(replays, out, dlq_topic, wait)
    finally:
        close_producer(out)
