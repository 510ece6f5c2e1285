"""``ebbtide``: the one command-line entry point. Every command has ``--help``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.runtime.settings import Settings, SettingsError, Topics

if TYPE_CHECKING:
    from streams.policy.rules import Policy

DESCRIPTION = """Ebbtide stamps personal-data records with retention deadlines from a versioned
policy and, when a deadline passes, orders and proves their deletion in every store.
Settings come from EBBTIDE_* environment variables (see README)."""


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.runtime.kafka import create_topics, pipeline_topics

    names = pipeline_topics(Topics(settings.topic_prefix), args.store)
    created = create_topics(settings, names)
    for name in names:
        print(f"{'created' if name in created else 'exists '} {name}")
    return 0


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError

    from ebbtide import bootstrap
    from ebbtide.runtime.kafka import not_acknowledged
    from ebbtide.tools.client import EventPublisher, LineError, PublishFailed, load_hold_signer, read_jsonl

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
    records: list[dict[str, object]] = []
    lines: list[int] = []  # the line of each record
    errors: list[LineError] = []
    policy = bootstrap.policy(settings)
    for number, item in read_jsonl(path, policy, hold_signer):
        if isinstance(item, LineError):
            errors.append(item)
        else:
            records.append(item)
            lines.append(number)
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
    timeout = _timeout(args)
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
    except KafkaError as exc:  # no broker to talk to at all
        print(
            f"ebbtide publish: the broker at {settings.kafka_bootstrap} did not answer within {timeout:g} s "
            f"({type(exc).__name__}); nothing was published; {again}",
            file=sys.stderr,
        )
        return 1
    print(
        f"published {sent} event(s) to {Topics(settings.topic_prefix).events}"
        + (f"; skipped {len(errors)} invalid" if errors else "")
    )
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("give between 1 and 3600 seconds")
    return value


def _timeout(args: argparse.Namespace) -> float:
    """``--timeout``, or the delivery timeout of ebbtide.runtime.kafka (imported late: kafka is slow)."""
    from ebbtide.runtime.kafka import DELIVERY_TIMEOUT

    return float(args.timeout) if args.timeout is not None else DELIVERY_TIMEOUT


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide import bootstrap

    try:
        app = bootstrap.worker(settings, Path(args.policy) if args.policy else None)
    except bootstrap.CannotStart as exc:
        print(f"ebbtide worker: {exc}", file=sys.stderr)
        return 2
    bootstrap.run_worker(app, args.loglevel)
    return 0


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from ebbtide import bootstrap
    from ebbtide.runtime.logging import configure

    configure(args.loglevel)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:  # a sink checks its config (and a PostgreSQL sink its map against the database) first
        process = bootstrap.sink(settings, args.kind, args, stop)
    except bootstrap.CannotStart as exc:
        print(f"ebbtide sink {args.kind}: {exc}", file=sys.stderr)
        return 2
    return process.run()


def cmd_vendor_standin(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.demo.vendor_standin import serve

    return serve(args.port)


def cmd_sink_role(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import psycopg2

    from sinks.postgres.roles import RoleError, grant_sink_role
    from sinks.postgres.table_map import TableMapError, load_table_map, map_path

    try:
        maps = [load_table_map(map_path(m)) for m in args.map]
        conn = psycopg2.connect(args.admin_dsn or settings.require_pg_dsn())
        try:  # one transaction: all of it, or nothing
            done = grant_sink_role(
                conn, maps, args.role, login=args.login, password=os.environ.get("EBBTIDE_SINK_ROLE_PASSWORD")
            )
        finally:
            conn.close()
    except (TableMapError, RoleError, psycopg2.Error) as exc:
        print(f"ebbtide sink-role: {exc}".rstrip(), file=sys.stderr)
        return 1
    print("\n".join(f"{statement};" for statement in done))
    return 0


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg2
    from kafka.errors import KafkaError

    from ebbtide.tools.backfill import run_backfill
    from ebbtide.tools.client import PublishFailed
    from sinks.postgres.table_map import TableMapError, load_table_map, map_path

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


def cmd_backups(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.backups.catalogue import BackupError, admin

    try:
        lines = admin(settings.require_pg_dsn(), args.action, args.now or datetime.now(UTC))
    except BackupError as exc:
        print(f"ebbtide backups: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def cmd_clock(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError

    from ebbtide.tools.clock import ClockPublisher, TickFailed, steps, wall_ticks

    timeout = _timeout(args)
    source = {"tick": "scripted", "run": "accelerated", "wall": "wall"}[args.mode]
    if args.mode == "wall":  # the production clock is scraped (job ebbtide-clock)
        from ebbtide.runtime import metrics

        # Served before the broker is reached: a clock that fails and is restarted shows up
        # in process_start_time_seconds (EbbtideProcessRestarting).
        port = settings.clock_metrics_port if args.metrics_port is None else args.metrics_port
        try:
            metrics.serve_clock(port)
        except OSError as exc:
            print(
                f"ebbtide clock: cannot serve /metrics on 127.0.0.1:{port}: {exc.strerror}", file=sys.stderr
            )
            return 2
        print(
            f"ebbtide clock: a tick every {args.interval:g} s; /metrics on 127.0.0.1:{port}", file=sys.stderr
        )
    try:
        clock = ClockPublisher(settings, source, timeout)
    except KafkaError as exc:
        print(
            f"ebbtide clock: the broker at {settings.kafka_bootstrap} did not answer within {timeout:g} s "
            f"({type(exc).__name__}); no tick sent",
            file=sys.stderr,
        )
        return 1
    try:
        if args.mode == "tick":
            clock.tick(args.at)
            print(f"ticked {args.at.isoformat()}")
        elif args.mode == "run":
            for moment in steps(args.start, args.until, args.step_days):
                clock.tick(moment)
            print(f"ticked {args.start.date()} .. {args.until.date()} every {args.step_days} day(s)")
        else:
            for moment in wall_ticks(args.interval, args.count):
                clock.tick(moment)
                metrics.clock_ticked(moment)
    except TickFailed as exc:
        earlier = "; the ticks before it were sent" if args.mode != "tick" else ""
        print(f"ebbtide clock: {exc}{earlier} (ticking a time again is harmless)", file=sys.stderr)
        return 1
    except LookupError as exc:  # no events topic
        print(f"ebbtide clock: {exc}", file=sys.stderr)
        return 1
    finally:
        clock.close()
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.tools import dlq

    args.timeout = _timeout(args)
    return dlq.main(args, settings)


def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide import bootstrap
    from streams.engine.diff import deadline_moves, rule_changes
    from streams.policy.rules import PolicyError, load_policy

    try:
        if args.action == "check":
            policy = load_policy(Path(args.files[0]))
            print(
                f"ok: {args.files[0]}: rules {policy.label}, {len(policy.rules)} rules, "
                f"every category covered, every rule cited"
            )
            stores = bootstrap.store_map(settings)
            held = {h.category for s in stores.stores for h in s.holds}
            print(
                f"ok: store map {settings.store_map or 'shipped'}: {len(stores.stores)} stores, "
                f"{len(held)} categories held; policy with stores {policy.with_stores(stores).label}"
            )
            from sinks.coverage import coverage_problems, ref_problems

            gaps = coverage_problems(stores)
            unref = ref_problems(policy.with_stores(stores))
            for gap in gaps + unref:
                print(f"ebbtide policy check: {gap}", file=sys.stderr)
            if gaps or unref:
                return 1
            print("ok: the shipped sink configs cover every category every store holds")
            print("ok: every table backfill announces names the ref its rule follows; no rule waits forever")
            return 0
        if len(args.files) != 2:
            print("ebbtide policy diff: give OLD and NEW policy files", file=sys.stderr)
            return 2
        old, new = (bootstrap.policy(settings, Path(f)) for f in args.files)
    except PolicyError as exc:
        print(f"ebbtide policy: {exc}", file=sys.stderr)
        return 1
    print(f"policy {old.label} -> {new.label}")
    for line in rule_changes(old, new) or ["no rule changed"]:
        print(f"  {line}")
    if args.state:
        from ebbtide.tools.state_reader import StateUnavailable, subjects_from_changelog

        try:
            moves = deadline_moves(subjects_from_changelog(settings), new)
        except StateUnavailable as exc:
            print(f"ebbtide policy diff: {exc}", file=sys.stderr)
            return 1
        print(f"against the state of {settings.app_id}: {sum(moves.values())} pending records")
        for what in ("earlier", "later", "clock starts", "clock stops", "unchanged"):
            print(f"  {what:>12}: {moves.get(what, 0)}")
    return 0


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ebbtide.tools.state_reader import (
        StateUnavailable,
        clock_from_changelog,
        subject_from_worker,
        subjects_from_changelog,
    )
    from streams.engine.explain import explain, render

    policy = worker_policy(args, settings)
    try:
        if args.source == "worker":
            state, now = subject_from_worker(settings, args.subject)
        else:
            state = next(iter(subjects_from_changelog(settings, args.subject)), None)
            now = clock_from_changelog(settings)
    except StateUnavailable as exc:
        print(f"ebbtide explain: {exc}", file=sys.stderr)
        return 1
    if state is None:
        print(
            f"ebbtide explain: no subject {args.subject!r} in the state of {settings.app_id}", file=sys.stderr
        )
        return 1
    report = explain(state, policy, now)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def worker_policy(args: argparse.Namespace, settings: Settings) -> Policy:
    """The policy a worker runs: ``--policy`` (or the shipped rules) with the settings' store map."""
    from ebbtide import bootstrap

    return bootstrap.policy(settings, Path(args.policy) if getattr(args, "policy", None) else None)


def cmd_overdue(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ebbtide.tools.state_reader import StateUnavailable, clock_from_changelog, subjects_from_changelog
    from streams.engine.overdue import overdue_report, render

    policy = worker_policy(args, settings)
    if args.only_store and policy.stores is not None and args.only_store not in policy.stores.ids:
        print(f"ebbtide overdue: no store {args.only_store!r} in the store map", file=sys.stderr)
        return 2
    try:
        now = clock_from_changelog(settings)
        rows = overdue_report(subjects_from_changelog(settings), policy, now, args.only_store)
    except StateUnavailable as exc:
        print(f"ebbtide overdue: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render(rows, now))
    return 1 if rows and args.fail else 0


def cmd_certificate(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.runtime import keys
    from ebbtide.tools import certificates as certificate_pages
    from streams import certificates

    if args.action == "keygen":
        directory = Path(args.path)
        directory.mkdir(parents=True, exist_ok=True)
        private, public = keys.generate_key()
        secret = directory / "certificate-signing.key"
        if secret.exists():
            print(
                f"ebbtide certificate keygen: {secret} exists; not overwriting a signing key", file=sys.stderr
            )
            return 1
        secret.write_bytes(private)
        secret.chmod(0o600)
        (directory / "certificate-signing.pub").write_bytes(public)
        print(
            f"key {keys.key_id(public)}: private {secret} (mode 600), "
            f"public {directory / 'certificate-signing.pub'} (give this one to customers and auditors)"
        )
        return 0
    if args.action == "get":
        return _get_certificates(args, settings)
    try:
        document = certificates.loads(Path(args.path).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"ebbtide certificate: cannot read {args.path}: {exc}", file=sys.stderr)
        return 2
    if args.action == "html":
        try:
            print(certificate_pages.render_html(document))
        except ValueError as exc:
            print(f"ebbtide certificate html: {exc}", file=sys.stderr)
            return 1
        return 0
    if not args.public_key:
        print("ebbtide certificate verify: give --public-key KEY.pem", file=sys.stderr)
        return 2
    store_keys = None
    if args.store_keys:
        try:
            store_keys = certificate_pages.store_keys_in(Path(args.store_keys))
        except OSError as exc:
            where = args.store_keys
            print(
                f"ebbtide certificate verify: cannot read the store keys in {where}: {exc.strerror}",
                file=sys.stderr,
            )
            return 2
    try:
        reasons = certificates.verify(document, Path(args.public_key).read_bytes(), store_keys)
    except (OSError, ValueError) as exc:
        print(f"ebbtide certificate verify: cannot use the public key: {exc}", file=sys.stderr)
        return 2
    if reasons:
        print(f"INVALID: {args.path}")
        for reason in reasons:
            print(f"  - {reason}")
        return 1
    entries = len(document["certificate"]["entries"])
    stores = sorted({e["store"] for e in document["certificate"]["entries"]})
    print(
        f"VALID: {args.path}: subject {document['certificate']['subject_id']}, {entries} deletion(s), "
        f"signed by key {document['signature']['key_id']}"
        + (f"; each store's receipt verified ({', '.join(stores)})" if store_keys is not None else "")
    )
    return 0


def _get_certificates(args: argparse.Namespace, settings: Settings) -> int:
    """Write a subject's certificates from the certificates topic as JSON (signed) and HTML."""
    from ebbtide.tools import certificates as certificate_pages
    from ebbtide.tools.state_reader import StateUnavailable, read_certificates
    from streams import certificates

    try:
        found = read_certificates(settings, args.path)
    except StateUnavailable as exc:
        print(f"ebbtide certificate get: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"ebbtide certificate get: no certificate for subject {args.path!r} yet", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for number, raw in enumerate(found, start=1):
        document = certificates.loads(raw)
        name = out / f"certificate-{number}"
        name.with_suffix(".json").write_text(certificates.dumps(document), encoding="utf-8")
        name.with_suffix(".html").write_text(certificate_pages.render_html(document), encoding="utf-8")
        body = document["certificate"]
        print(
            f"{name.with_suffix('.json')}: issued {body['issued_at']}, "
            f"{len(body['entries'])} store answer(s), key {document['signature']['key_id']}"
        )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from ebbtide.demo.run import run_demo

    # SIGTERM ends the demo like Ctrl-C: through the `finally` that stops its worker and sinks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run_demo(
        settings,
        customers=args.customers,
        seed=args.seed,
        until=datetime(args.until_year, 1, 1, tzinfo=UTC),
        step_days=args.step_days,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebbtide", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    topics = sub.add_parser(
        "topics",
        help="create the pipeline's Kafka topics",
        description="Create missing topics (EBBTIDE_PARTITIONS partitions each).",
    )
    topics.add_argument("action", choices=["create"])
    topics.add_argument(
        "--store",
        action="append",
        default=None,
        help="a store whose command topic to create (repeatable; default: every store of the store map)",
    )
    topics.set_defaults(func=cmd_topics)

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
    publish.add_argument("file", help="JSON Lines file, one event per line (see README)")
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
        type=_seconds,
        metavar="SECONDS",
        help="seconds to wait for the broker to acknowledge every event (default 30); what it has not "
        "acknowledged by then is reported, exit 1",
    )
    publish.set_defaults(func=cmd_publish)

    worker = sub.add_parser(
        "worker",
        help="run the lifecycle agent (Faust worker)",
        description="Consume events, clock ticks and receipts; stamp deadlines; send one deletion "
        "command per store copy (EBBTIDE_STORE_MAP); send unanswered commands again past their "
        "store's service level; sign and publish a deletion certificate when every store has "
        "answered (key: EBBTIDE_CERTIFICATE_KEY, made on first start if missing). Applies a "
        "LegalHoldPlaced or LegalHoldReleased only if signed by a key of EBBTIDE_HOLD_KEYS (default "
        "<state dir>/keys/holds.pub, made with holds.key on first start if missing); others are "
        "dead-lettered. Serves /metrics on EBBTIDE_WORKER_METRICS_PORT.",
    )
    worker.add_argument("--policy", help="policy TOML file (default: the shipped policy)")
    worker.add_argument("--loglevel", default="WARNING", help="default WARNING")
    worker.set_defaults(func=cmd_worker)

    from sinks import registry as sink_kinds  # imports each kind's description, not its process

    sink = sub.add_parser(
        "sink",
        help="run a deletion sink",
        description="Execute deletion commands for one store and publish receipts. Kinds: "
        + "; ".join(f"{k.name}: {k.doc}" for k in sink_kinds.kinds())
        + ".",
    )
    sink.add_argument("kind", choices=sink_kinds.names())
    sink.add_argument("--loglevel", default="WARNING")
    for kind in sink_kinds.kinds():  # each kind's own options, e.g. postgres --map, http --config
        for option in kind.options:
            help_text = f"{kind.name}: {option.help}"
            sink.add_argument(option.flag, type=option.type, metavar=option.metavar, help=help_text)
    sink.set_defaults(func=cmd_sink)

    standin = sub.add_parser(
        "vendor-standin",
        help="run the local HTTP vendor stand-in (tests and demo)",
        description="A stand-in for the HTTP vendors on 127.0.0.1 (each under /<store>), with switchable "
        "failures (fail, down, timeout, slow) on /_admin/<store>; prints its URL, runs until SIGTERM.",
    )
    standin.add_argument("--port", type=int, default=9320, help="default 9320 (0: any free port)")
    standin.set_defaults(func=cmd_vendor_standin)

    sink_role = sub.add_parser(
        "sink-role",
        help="create or update the least-privilege database role of PostgreSQL sinks",
        description="As an administrator (--admin-dsn, default EBBTIDE_PG_DSN): create the sink's "
        "tracking table and give ROLE exactly what the store maps need (USAGE on their schemas, SELECT "
        "on key and blanked columns, DELETE on delete tables, UPDATE on anonymised columns, SELECT and "
        "INSERT on the tracking table), revoking anything else it held in the database. Prints the "
        "statements. With --login, the password (if any) comes from EBBTIDE_SINK_ROLE_PASSWORD.",
    )
    sink_role.add_argument("role", help="the role name (a plain lower-case identifier)")
    sink_role.add_argument(
        "--map",
        action="append",
        required=True,
        help="store map TOML, or a shipped store id such as billing_db (repeatable)",
    )
    sink_role.add_argument("--admin-dsn", help="DSN of a role that may create roles and grant on the tables")
    sink_role.add_argument(
        "--login", action="store_true", help="LOGIN role (default NOLOGIN: grant it to one)"
    )
    sink_role.set_defaults(func=cmd_sink_role)

    from ebbtide.tools import acls as kafka_acls  # imports no Kafka client until apply runs

    acls = sub.add_parser(
        "acls",
        help="the Kafka ACLs of each principal (worker, sinks, clock, producers): print or apply them",
        description=kafka_acls.DESCRIPTION,
    )
    kafka_acls.add_arguments(acls)
    acls.set_defaults(func=kafka_acls.command)

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

    backups = sub.add_parser(
        "backups",
        help="the backup catalogue of hosted data: list backups, purge expired ones",
        description="list: every backup with its expiry and the records it holds. purge: mark the "
        "backups expired at --now purged and forget their contents (what the backup system does when "
        "it destroys them). Uses EBBTIDE_PG_DSN.",
    )
    backups.add_argument("action", choices=["list", "purge"])
    backups.add_argument("--now", type=_time, help="ISO-8601 time (default: the wall clock)")
    backups.set_defaults(func=cmd_backups)

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
        type=_seconds,
        metavar="SECONDS",
        help="seconds to wait for the broker (reading, delivery; default 30)",
    )
    dlq.set_defaults(func=cmd_dlq)

    clock = sub.add_parser(
        "clock",
        help="publish clock ticks",
        description="Ticks move the pipeline's time; deadlines fire when it passes them. A tick the "
        "broker does not acknowledge within --timeout ends the command with exit 1 (run the production "
        "clock under a supervisor that restarts it); ticking a time again is harmless.",
    )
    modes = clock.add_subparsers(dest="mode", required=True, metavar="MODE")
    tick = modes.add_parser("tick", help="one tick at a given time")
    tick.add_argument("at", type=_time, help="ISO-8601 time, e.g. 2030-01-01T00:00:00Z")
    run = modes.add_parser("run", help="ticks from START to UNTIL, as fast as possible")
    run.add_argument("start", type=_time)
    run.add_argument("until", type=_time)
    run.add_argument("--step-days", type=int, default=7)
    wall = modes.add_parser("wall", help="tick wall-clock time every INTERVAL seconds")
    wall.add_argument("--interval", type=float, default=60.0)
    wall.add_argument("--count", type=int, default=None, help="stop after this many ticks")
    wall.add_argument(
        "--metrics-port",
        type=int,
        help="/metrics port on 127.0.0.1 (default EBBTIDE_CLOCK_METRICS_PORT, 9312)",
    )
    for mode in (tick, run, wall):
        mode.add_argument(
            "--timeout",
            type=_seconds,
            metavar="SECONDS",
            help="seconds to wait for the broker to take a tick (default 30)",
        )
    clock.set_defaults(func=cmd_clock)

    policy = sub.add_parser(
        "policy",
        help="check a policy file, or compare two",
        description="check FILE: validate a policy (unknown category, rule without source, impossible "
        "duration, uncovered category...), the store map (EBBTIDE_STORE_MAP, default: shipped), and "
        "that the shipped sink configs (sinks/postgres/maps/<store>.toml, sinks/http/vendors.toml) "
        "cover every category each store holds. "
        "diff OLD NEW: which rules changed; with --state, how the "
        "deadlines of the running pipeline's pending records move (read from the worker's changelog, "
        "EBBTIDE_APP_ID).",
    )
    policy.add_argument("action", choices=["check", "diff"])
    policy.add_argument("files", nargs="+", metavar="FILE")
    policy.add_argument(
        "--state", action="store_true", help="with diff: count deadline moves in the live state"
    )
    policy.set_defaults(func=cmd_policy)

    explain = sub.add_parser(
        "explain",
        help="explain every record of a subject",
        description="Each record's category, rule, clause, basis, deadline, status "
        "(pending/held/restricted/due/overdue/deleted/anonymised/expiring), the store's answer "
        "and the events that set it; duties owed.",
    )
    explain.add_argument("subject", help="the subject id")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument(
        "--source",
        choices=["worker", "changelog"],
        default="worker",
        help="ask the running worker (fast, default) or read its changelog from Kafka",
    )
    explain.add_argument("--policy", help="policy file the worker runs (default: the shipped policy)")
    explain.set_defaults(func=cmd_explain)

    overdue = sub.add_parser(
        "overdue",
        help="deletions a store has not confirmed within its service level",
        description="Every deletion command without a receipt past its store's service level (from "
        "the store map), read from the worker's changelog: store, record, when it was ordered, when "
        "the answer was due, how often it was sent again. The worker sends such commands again after "
        "1, 2, 4 and then every 8 service levels, and exports ebbtide_deletions_overdue{store}.",
    )
    overdue.add_argument("--store", dest="only_store", help="only this store")
    overdue.add_argument("--json", action="store_true", help="machine-readable output")
    overdue.add_argument("--fail", action="store_true", help="exit 1 when anything is overdue (for scripts)")
    overdue.add_argument("--policy", help="policy file the worker runs (default: the shipped policy)")
    overdue.set_defaults(func=cmd_overdue)

    certificate = sub.add_parser(
        "certificate",
        help="deletion certificates: fetch a subject's, verify one offline, render HTML, make a key",
        description="get SUBJECT [--out DIR]: the subject's signed certificates from the pipeline (one "
        "per deletion round, issued when every store has answered), as JSON and HTML. "
        "verify FILE --public-key KEY.pem [--store-keys DIR]: check a signed deletion certificate "
        "offline (exit 0 valid, 1 invalid with reasons); with the stores' keys (sink-<store>.pub in DIR), "
        "each store's embedded receipt too. html FILE: a readable rendering. keygen DIR: an Ed25519 "
        "signing key pair (the worker makes one on first start if EBBTIDE_CERTIFICATE_KEY names no file).",
    )
    certificate.add_argument("action", choices=["get", "verify", "html", "keygen"])
    certificate.add_argument(
        "path", help="get: a subject id; verify/html: a certificate JSON file; keygen: a directory"
    )
    certificate.add_argument("--public-key", help="the issuer's public key (PEM), for verify")
    certificate.add_argument(
        "--store-keys",
        help="verify: a directory of the stores' sink public keys (sink-<store>.pub); each entry's "
        "embedded store receipt must be signed by its store's key",
    )
    certificate.add_argument("--out", default=".", help="get: directory to write the certificates to")
    certificate.set_defaults(func=cmd_certificate)

    demo = sub.add_parser(
        "demo",
        help="run the scripted demo on the local stack",
        description="Load a synthetic customer database, publish its lifecycle, "
        "run worker and sink, drive the clock across years and print a summary.",
    )
    demo.add_argument("--customers", type=int, default=300)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--until-year", type=int, default=2032, help="run the clock up to 1 Jan of this year")
    demo.add_argument("--step-days", type=int, default=14, help="clock step")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if getattr(args, "store", "unset") is None:
            from ebbtide import bootstrap

            args.store = list(bootstrap.store_map(settings).ids)
        return int(args.func(args, settings))
    except SettingsError as exc:
        print(f"ebbtide: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
