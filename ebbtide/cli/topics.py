"""``ebbtide topics create|apply|check``: the topics the project owns, on a live cluster."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ebbtide.cli.arguments import Subcommands, seconds
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.runtime.topic_spec import TopicSpec
    from ebbtide.tools.topics.cluster import Report

DESCRIPTION = """create: create the missing topics as declared, change nothing else. apply: create
the missing topics and set every configuration that differs from the declaration (cleanup.policy,
retention.ms, segment.ms, min.insync.replicas); a partition count or replication factor that differs
is reported, never changed (fewer partitions would lose messages, more would move subjects away
from their state; replicas need a reassignment), and apply exits 1. check: change nothing, print
one line per difference (missing topic, partitions, replication factor, min.insync.replicas, cleanup
policy, retention) and exit 1 if there is any. The declaration: EBBTIDE_PARTITIONS partitions,
EBBTIDE_TOPIC_REPLICATION_FACTOR replicas (3 in production, 1 only on a one-broker development
stack), EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS (2 in production), and each topic's cleanup policy and
retention from the policy (--policy: the file the worker runs; docs/topics.md). The retention of
a topic an auditor needs (decisions, receipts, answers, certificates) is a floor: a longer one, or
none, is not a difference, and apply never shortens it. The topics: events, clock, receipts,
decisions, answers, certificates, dlq, a command topic per store, and the worker's state
changelog and leader topic."""

# Below these, a broker's loss loses acknowledged writes or stops them: warned about.
PRODUCTION_REPLICAS = 3
PRODUCTION_MIN_INSYNC = 2


def add_topics(sub: Subcommands) -> None:
    topics = sub.add_parser(
        "topics",
        help="create, apply or check the project's Kafka topics (partitions, replicas, retention)",
        description=DESCRIPTION,
    )
    topics.add_argument("action", choices=["create", "apply", "check"])
    topics.add_argument(
        "--store",
        action="append",
        default=None,
        help="a store whose command topic to cover (repeatable; default: every store of the store map)",
    )
    topics.add_argument(
        "--policy",
        help="the policy file the worker runs, whose rules set the audit topics' retention "
        "(default: the shipped policy)",
    )
    topics.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    topics.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="for the broker to answer (default 30)",
    )
    topics.set_defaults(func=cmd_topics)


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 if every topic is as declared (create: exists), 1 otherwise or on a broker error."""
    from pathlib import Path

    from ebbtide.streams.policy.rules import PolicyError
    from ebbtide.tools.topics import declared
    from ebbtide.tools.topics.cluster import TopicsError, apply, check, create

    try:  # the policy file and the store map are read first: a bad one is one line, exit 2
        specs = declared(settings, args.store, Path(args.policy) if args.policy else None)
    except (PolicyError, OSError) as exc:
        print(f"ebbtide topics {args.action}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "create":
            created = create(settings, specs, args.timeout)
            for spec in specs:
                print(f"{'created' if spec.name in created else 'exists '} {spec.name}")
            return 0
        report = (
            apply(settings, specs, args.timeout)
            if args.action == "apply"
            else check(settings, specs, args.timeout)
        )
    except TopicsError as exc:
        print(f"ebbtide topics {args.action}: {exc}", file=sys.stderr)
        return 1
    notes = warnings(settings)
    if args.json:
        print(json.dumps(as_json(args.action, report, notes), indent=2))
    else:
        print(table(report))
        for difference in report.differences:
            print(difference.line())
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
    if report.differences and not args.json:
        unfixable = "" if args.action == "check" else " (apply cannot change these: see --help)"
        print(
            f"ebbtide topics {args.action}: {len(report.differences)} difference(s){unfixable}",
            file=sys.stderr,
        )
    return 1 if report.differences else 0


def warnings(settings: Settings) -> list[str]:
    """Settings below the production values: fine on a one-broker development stack only."""
    found: list[str] = []
    if settings.topic_replication_factor < PRODUCTION_REPLICAS:
        found.append(
            f"EBBTIDE_TOPIC_REPLICATION_FACTOR is {settings.topic_replication_factor}: a broker's loss can "
            f"lose acknowledged messages (production: {PRODUCTION_REPLICAS}; fewer only on a development "
            "stack)"
        )
    if settings.topic_min_insync_replicas < PRODUCTION_MIN_INSYNC:
        found.append(
            f"EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS is {settings.topic_min_insync_replicas}: a write is "
            f"acknowledged with one copy (production: {PRODUCTION_MIN_INSYNC})"
        )
    return found


def _cells(report: Report, spec: TopicSpec) -> list[str]:
    from ebbtide.runtime.topic_spec import CLEANUP, MIN_INSYNC, RETENTION
    from ebbtide.tools.topics.doc import retention_cell

    seen = report.observed.get(spec.name)
    if seen is None:
        return [spec.name, "-", "-", "-", "-", "-", report.status(spec.name)]
    shown = type(spec)(spec.name, seen.partitions, seen.replication_factor, seen.config)
    return [
        spec.name,
        str(seen.partitions),
        str(seen.replication_factor),
        seen.config.get(MIN_INSYNC, "-"),
        seen.config.get(CLEANUP, "-"),
        retention_cell(shown) if RETENTION in seen.config else "-",
        report.status(spec.name),
    ]


def table(report: Report) -> str:
    """The topics as the cluster has them, one line each, with their status."""
    rows = [["topic", "partitions", "replicas", "min ISR", "cleanup", "retention", "status"]]
    rows += [_cells(report, spec) for spec in report.specs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def as_json(action: str, report: Report, notes: list[str]) -> dict[str, Any]:
    """``--json``: every topic (declared, found, status), the differences, what apply did."""
    topics = []
    for spec in report.specs:
        seen = report.observed.get(spec.name)
        topics.append(
            {
                "name": spec.name,
                "status": report.status(spec.name),
                "want": {
                    "partitions": spec.partitions,
                    "replication_factor": spec.replication_factor,
                    "config": dict(spec.config),
                },
                "have": None
                if seen is None
                else {
                    "partitions": seen.partitions,
                    "replication_factor": seen.replication_factor,
                    "config": dict(seen.config),
                },
            }
        )
    return {
        "action": action,
        "ok": not report.differences,
        "topics": topics,
        "differences": [d.as_json() for d in report.differences],
        "created": report.created,
        "altered": report.altered,
        "warnings": notes,
    }
