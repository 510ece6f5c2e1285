"""``ebbtide log decisions|commands|receipts|answers|certificates|dlq``: the pipeline's topics,
decoded, one line per message (:mod:`ebbtide.tools.log`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ebbtide.cli.arguments import Subcommands, iso_time, seconds, timeout
from ebbtide.runtime.settings import Settings

TOPICS = ("decisions", "commands", "receipts", "answers", "certificates", "dlq")


def add_log(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "log",
        help="read the decision log and the other topics, decoded, one line per message",
        description="Reads a topic of the pipeline from its beginning, decoded with the project's "
        "codecs, one line per message: TIME  TOPIC[PARTITION]@OFFSET  SUBJECT  KIND  and its "
        "essentials. TIME, and what --since/--until compare, is the message's own time where it has "
        "one (commands: issued_at, the pipeline clock; receipts: executed_at, at the store; answers: "
        "answered_at; certificates: issued_at) and the broker's timestamp where it has none "
        "(decisions, dlq). commands reads every store's command topic (or --store's). A message that "
        "cannot be decoded is one UNDECODABLE line and the listing goes on. Reads to the end of the "
        "topic as of the start, or with --follow until Ctrl-C; no consumer group, nothing committed. "
        "Exit 1 with one line if the topic cannot be read, 2 for a usage error.",
    )
    parser.add_argument("topic", choices=TOPICS, help="the topic to read")
    parser.add_argument(
        "--subject",
        metavar="S",
        help="only this subject's messages (on the topics keyed by subject, only its partition is read; "
        "dlq: dead letters whose key is S)",
    )
    parser.add_argument(
        "--since",
        type=iso_time,
        metavar="T",
        help="only messages at or after this ISO-8601 time (UTC without a zone)",
    )
    parser.add_argument("--until", type=iso_time, metavar="T", help="only messages before this ISO-8601 time")
    parser.add_argument(
        "--kind",
        metavar="K",
        help="decisions: a decision kind (STAMPED, DELETION_ORDERED, ...); receipts: an outcome (DELETED, "
        "NOT_FOUND, ...); commands: a data category; dlq: a reason (invalid, security, processing_failed)",
    )
    parser.add_argument(
        "--store",
        dest="stores",
        action="append",
        metavar="STORE",
        help="commands: a store whose command topic to read (repeatable; default: every store of the "
        "store map)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: topic, partition, offset, timestamp (the broker's), time and "
        "time_field (what --since/--until compare), key, value (decoded; bytes such as signatures as "
        "base64, times as ISO-8601 UTC; a dead letter's headers, never its contents) or error",
    )
    parser.add_argument("--follow", action="store_true", help="keep reading new messages until Ctrl-C")
    parser.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="seconds to wait for the broker (default 30)"
    )
    parser.set_defaults(func=cmd_log)


def cmd_log(args: argparse.Namespace, settings: Settings) -> int:
    """List the selected messages; 1 if the topic cannot be read, 2 for a usage error."""
    from ebbtide.tools import log

    if args.stores and args.topic != "commands":
        return _usage("--store applies to log commands only")
    stores: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    if args.topic == "commands":
        found = _store_map(settings)
        if found is None:
            return 2
        stores, categories = found
        unknown = sorted(set(args.stores or ()) - set(stores))
        if unknown:
            return _usage(f"no store {', '.join(unknown)} in the store map (stores: {', '.join(stores)})")
        stores = tuple(args.stores or stores)
    spec = log.log_topic(args.topic, categories)
    try:
        spec.check_kind(args.kind)
    except log.UnknownKind as exc:
        return _usage(str(exc))
    selection = log.Selection(args.subject, args.kind, args.since, args.until)
    try:
        for entry in log.entries(
            settings, spec, selection, stores=stores, timeout=timeout(args), follow=args.follow
        ):
            text = (
                json.dumps(log.as_json(spec, entry))
                if args.json
                else log.line(spec, entry, settings.topic_prefix)
            )
            print(text, flush=True)
    except log.LogUnavailable as exc:
        print(f"ebbtide log {args.topic}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped reading (| head): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (no flush error at exit)
    return 0


def _store_map(settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The stores of the store map and the categories they hold; None (after one line) if the
    store map cannot be used."""
    from ebbtide import bootstrap
    from ebbtide.streams.policy.rules import PolicyError

    try:
        stores = bootstrap.store_map(settings)
    except (OSError, PolicyError) as exc:
        print(f"ebbtide log: EBBTIDE_STORE_MAP: {exc}", file=sys.stderr)
        return None
    return stores.ids, tuple(sorted({h.category for s in stores.stores for h in s.holds}))


def _usage(message: str) -> int:
    print(f"ebbtide log: {message}", file=sys.stderr)
    return 2
