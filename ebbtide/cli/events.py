"""Commands that put lifecycle events on the pipeline: ``publish``, ``backfill``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands, seconds, timeout
from ebbtide.runtime.settings import Settings, Topics

if TYPE_CHECKING:
    from ebbtide.runtime.authenticity import MessageSigner
    from ebbtide.streams.policy.rules import Policy
    from ebbtide.tools.client import LineError


def add_publish(sub: Subcommands) -> None:
    publish = sub.add_parser(
        "publish",
        help="validate and publish lifecycle events from a JSONL file",
        description="Validate every line against the lifecycle event schema (and the size of one Kafka "
        "message, 1 MB encoded), then publish all of them keyed by subject. Any invalid line refuses "
        "the whole file unless --skip-invalid. A LegalHoldPlaced or LegalHoldReleased is signed with "
        "the legal hold signing key (--hold-key); without it such a line is invalid (the worker "
        "refuses unsigned holds). If the broker does not acknowledge every event within "
        "--timeout, exit 1 naming how many and the first line not known to be published; publishing "
        "the file again is harmless (event ids make it idempotent).",
    )
    publish.add_argument("file", help="JSON Lines file, one event per line (see docs/events.md)")
    publish.add_argument("--dry-run", action="store_true", help="validate only")
    publish.add_argument("--skip-invalid", action="store_true", help="publish the valid lines anyway")
    publish.add_argument(
        "--hold-key",
        metavar="PATH",
        help="the Ed25519 private key (PEM) to sign legal hold events with, one the worker trusts "
        "(its public key in EBBTIDE_HOLD_KEYS; locally <state dir>/keys/holds.key); default "
        "EBBTIDE_HOLD_SIGNING_KEY. Never made here: a missing file is an error",
    )
    publish.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="seconds to wait for the broker to acknowledge every event (default 30); what it has not "
        "acknowledged by then is reported, exit 1",
    )
    publish.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the whole file first; publish it only if every line is valid (or --skip-invalid)."""
    from ebbtide import bootstrap
    from ebbtide.tools.client import load_hold_signer

    path = Path(args.file)
    if not path.is_file():
        print(f"ebbtide publish: no such file: {path}", file=sys.stderr)
        return 2
    hold_key = Path(args.hold_key) if args.hold_key else settings.hold_signing_key
    try:
        hold_signer = load_hold_signer(hold_key) if hold_key is not None else None
    except ValueError as exc:
        print(f"ebbtide publish: {exc}", file=sys.stderr)
        return 2
    policy = bootstrap.policy(settings)
    records, lines, errors = _read_events(path, policy, hold_signer)
    for error in errors:
        print(f"{path}: {error}", file=sys.stderr)
    if errors and not args.skip_invalid:
        print(
            f"ebbtide publish: {len(errors)} invalid event(s); nothing was published "
            "(fix them, or pass --skip-invalid)",
            file=sys.stderr,
        )
        return 1
    if args.dry_run:
        print(f"{len(records)} valid event(s); --dry-run: nothing published")
        return 0
    return _publish(settings, policy, hold_signer, records, lines, len(errors), timeout(args))


def _read_events(
    path: Path, policy: Policy, hold_signer: MessageSigner | None
) -> tuple[list[dict[str, object]], list[int], list[LineError]]:
    """The file's valid records, the line of each, and the errors of the invalid lines."""
    from ebbtide.tools.client import LineError, read_jsonl

    records: list[dict[str, object]] = []
    lines: list[int] = []  # the line of each record
    errors: list[LineError] = []
    for number, item in read_jsonl(path, policy, hold_signer):
        if isinstance(item, LineError):
            errors.append(item)
        else:
            records.append(item)
            lines.append(number)
    return records, lines, errors


def _publish(
    settings: Settings,
    policy: Policy,
    hold_signer: MessageSigner | None,
    records: list[dict[str, object]],
    lines: list[int],
    skipped: int,
    timeout: float,
) -> int:
    """Publish the records; on a failure, name the first line not known to be published."""
    from kafka.errors import KafkaError

    from ebbtide.runtime.kafka import not_acknowledged
    from ebbtide.schemas.wire import NotRegistered
    from ebbtide.sinks.keys.store import KeyStoreUnavailable
    from ebbtide.tools.client import EventPublisher, PublishFailed

    again = "publish the file again (event ids make it idempotent)"
    try:
        with EventPublisher(settings, policy, timeout, hold_signer) as publisher:
            sent = publisher.publish_all(records)
    except PublishFailed as exc:  # events never sent (after a send the producer refused) count too
        missing = exc.failed + len(records) - exc.total
        line = lines[exc.first] if exc.first < len(lines) else lines[-1]
        print(
            f"ebbtide publish: {missing} of {len(records)} event(s) {not_acknowledged(exc.reason, timeout)}; "
            f"every line before line {line} is published, line {line} and those after it are not known "
            f"to be; {again}",
            file=sys.stderr,
        )
        return 1
    except KeyStoreUnavailable as exc:  # personal values cannot be sealed: stop, send no more
        print(
            f"ebbtide publish: {exc} (EBBTIDE_KEYS_DSN); not every event was published; {again}",
            file=sys.stderr,
        )
        return 1
    except NotRegistered as exc:  # EBBTIDE_WIRE_FORMAT=confluent, and no schema id to send
        print(f"ebbtide publish: {exc}; nothing was published", file=sys.stderr)
        return 1
    except KafkaError as exc:  # no broker to talk to at all
        print(
            f"ebbtide publish: the broker at {settings.kafka_bootstrap} did not answer within {timeout:g} s "
            f"({type(exc).__name__}); nothing was published; {again}",
            file=sys.stderr,
        )
        return 1
    print(
        f"published {sent} event(s) to {Topics(settings.topic_prefix).events}"
        + (f"; skipped {skipped} invalid" if skipped else "")
    )
    return 0


def add_backfill(sub: Subcommands) -> None:
    backfill = sub.add_parser(
        "backfill",
        help="announce the records an existing database already holds",
        description="For every table of the store maps with a subject_column, publish one RecordWritten "
        "event per row (event id backfill:<store>:<category>:<key>, so running it again is a no-op). "
        "A progress bar on a terminal, a summary line per table otherwise.",
    )
    backfill.add_argument(
        "--map",
        action="append",
        default=None,
        help="store map TOML, or a shipped store id such as billing_db (repeatable; default customer_db)",
    )
    backfill.add_argument("--dsn", help="the store's database (default EBBTIDE_PG_DSN)")
    backfill.add_argument("--dry-run", action="store_true", help="read and validate, publish nothing")
    backfill.add_argument("--chunk", type=int, default=5000, help="rows per fetch and broker flush")
    backfill.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg2
    from kafka.errors import KafkaError

    from ebbtide.sinks.postgres.table_map import TableMapError, load_table_map, map_path
    from ebbtide.tools.backfill import run_backfill
    from ebbtide.tools.client import PublishFailed

    try:
        maps = [load_table_map(map_path(m)) for m in args.map or ["customer_db"]]
        reports = run_backfill(
            settings, args.dsn or settings.require_pg_dsn(), maps, dry_run=args.dry_run, chunk=args.chunk
        )
    except (TableMapError, psycopg2.Error) as exc:
        print(f"ebbtide backfill: {exc}".rstrip(), file=sys.stderr)
        return 1
    except PublishFailed as exc:
        print(f"ebbtide backfill: {exc}; run it again (event ids make it idempotent)", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(
            f"ebbtide backfill: the broker at {settings.kafka_bootstrap} did not answer "
            f"({type(exc).__name__}); nothing was published",
            file=sys.stderr,
        )
        return 1
    events = sum(r.events for r in reports)
    print(f"{'would publish' if args.dry_run else 'published'} {events} event(s)")
    refused = sum(r.refused for r in reports)
    if refused:
        print(
            f"ebbtide backfill: {refused} row(s) could not be announced (see the tables above); "
            "fix them and run it again",
            file=sys.stderr,
        )
        return 1
    return 0
