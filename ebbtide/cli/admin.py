"""Commands of the administrator: ``sink-role`` (PostgreSQL), ``acls`` (Kafka), ``backups``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands, iso_time, seconds
from ebbtide.runtime.settings import Settings

# Only the plan's names: the Kafka client is imported when `acls apply` runs.
from ebbtide.tools.acls.plan import (
    DEFAULT_CLOCK,
    DEFAULT_PRODUCER,
    DEFAULT_SINK,
    DEFAULT_WORKER,
    AclError,
    Principals,
    principal,
)

if TYPE_CHECKING:
    from ebbtide.tools.acls.applying import Applied, Connection


def add_sink_role(sub: Subcommands) -> None:
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


def cmd_sink_role(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import psycopg2

    from ebbtide.sinks.postgres.roles import RoleError, grant_sink_role
    from ebbtide.sinks.postgres.table_map import TableMapError, load_table_map, map_path

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


ACLS_DESCRIPTION = """plan: print the Kafka ACLs each principal of the pipeline needs, computed from the topic
prefix (EBBTIDE_TOPIC_PREFIX), the app id (EBBTIDE_APP_ID) and the stores of the store map: the worker
reads events, ticks and receipts and writes commands, decisions, answers, certificates and dead
letters; each store's sink reads its commands and writes receipts and dead letters; the clock writes
ticks; the producers write events only. apply: create those the broker does not have yet (running it
again is harmless); it removes nothing, and lists the ACLs on the pipeline's topics and groups that
the plan does not have. The broker must authenticate clients (a SASL listener) and run an authorizer;
apply must connect as a super user (--sasl-user), or, on the local development stack only, without
authentication to its PLAINTEXT listener."""


def _principal_arg(text: str) -> str:
    try:
        return principal(text)
    except AclError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _store_sink_arg(text: str) -> tuple[str, str]:
    store, sep, name = text.partition("=")
    if not sep or not store or not name:
        raise argparse.ArgumentTypeError(f"give STORE=NAME, not {text!r}")
    return store, _principal_arg(name)


def add_acls(sub: Subcommands) -> None:
    """``ebbtide acls``: its principals and, for apply, how to reach the broker."""
    parser = sub.add_parser(
        "acls",
        help="the Kafka ACLs of each principal (worker, sinks, clock, producers): print or apply them",
        description=ACLS_DESCRIPTION,
    )
    parser.add_argument("action", choices=["plan", "apply"])
    parser.add_argument(
        "--store",
        action="append",
        default=None,
        help="a store whose command topic and sink to cover (repeatable; default: every store of the "
        "store map)",
    )
    who = parser.add_argument_group("principals (NAME means User:NAME)")
    who.add_argument("--worker", type=_principal_arg, default=DEFAULT_WORKER, help="default User:worker")
    who.add_argument(
        "--sink", type=_principal_arg, default=DEFAULT_SINK, help="every store's sink (default User:sink)"
    )
    who.add_argument(
        "--store-sink",
        type=_store_sink_arg,
        action="append",
        default=[],
        metavar="STORE=NAME",
        help="one store's sink as its own principal (repeatable)",
    )
    who.add_argument("--clock", type=_principal_arg, default=DEFAULT_CLOCK, help="default User:clock")
    who.add_argument(
        "--producer",
        type=_principal_arg,
        action="append",
        default=None,
        help="a backend service that publishes events (repeatable; default User:producer)",
    )
    _add_connection_arguments(parser)
    parser.set_defaults(func=cmd_acls)


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    conn = parser.add_argument_group("apply: how to reach the broker")
    conn.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="default EBBTIDE_KAFKA_BOOTSTRAP (for SASL: the SASL listener)",
    )
    conn.add_argument(
        "--sasl-user",
        metavar="NAME",
        help="a super user of the broker (default: as EBBTIDE_KAFKA_SECURITY_PROTOCOL and the "
        "EBBTIDE_KAFKA_SASL_* settings say; PLAINTEXT: no authentication)",
    )
    conn.add_argument(
        "--sasl-password-file",
        metavar="FILE",
        type=Path,
        help="a file of NAME=PASSWORD lines, one for the --sasl-user (the local stack's: "
        "$EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS)",
    )
    conn.add_argument(
        "--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], default="PLAIN"
    )
    conn.add_argument(
        "--ssl", action="store_true", help="SASL over TLS (SASL_SSL), as a production broker needs"
    )
    conn.add_argument("--ssl-cafile", metavar="FILE", help="with --ssl: the CA certificates to trust (PEM)")
    conn.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="for the broker to answer (default 30)",
    )


def cmd_acls(args: argparse.Namespace, settings: Settings) -> int:
    """``ebbtide acls plan|apply``: exit 0, or 1 with one line naming what went wrong."""
    from ebbtide.tools.acls.applying import apply
    from ebbtide.tools.acls.plan import plan, render

    stores = list(dict.fromkeys(args.store))
    try:
        unknown = sorted({store for store, _ in args.store_sink} - set(stores))
        if unknown:
            raise AclError(f"--store-sink names store(s) not covered: {', '.join(unknown)}")
        who = Principals(
            worker=args.worker,
            clock=args.clock,
            producers=tuple(dict.fromkeys(args.producer or [DEFAULT_PRODUCER])),
            sink=args.sink,
            sinks=dict(args.store_sink),
        )
        grants = plan(settings, stores, who)
        if args.action == "plan":
            print(render(grants, settings, stores))
            return 0
        connection = _connection(args, settings)
        done = apply(settings, stores, connection, who)
    except AclError as exc:
        print(f"ebbtide acls: {exc}", file=sys.stderr)
        return 1
    _report(done, connection)
    return 0


def _connection(args: argparse.Namespace, settings: Settings) -> Connection:
    """How ``apply`` reaches the broker: ``--bootstrap`` (or the settings'), as ``--sasl-user``
    (or with the settings' Kafka security)."""
    from ebbtide.runtime.kafka import secured
    from ebbtide.tools.acls.applying import Connection, password_for

    if args.sasl_user is not None and args.sasl_password_file is None:
        raise AclError("--sasl-user needs --sasl-password-file")
    return Connection(
        bootstrap=args.bootstrap or settings.kafka_bootstrap,
        user=args.sasl_user,
        password=password_for(args.sasl_password_file, args.sasl_user) if args.sasl_user else None,
        mechanism=args.sasl_mechanism,
        security_protocol="SASL_SSL" if args.ssl else "SASL_PLAINTEXT",
        ssl_cafile=args.ssl_cafile,
        timeout=args.timeout,
        security=None if args.sasl_user else secured(settings),
    )


def _report(done: Applied, connection: Connection) -> None:
    for grant in done.created:
        print(f"created  {grant.describe()}")
    print(f"{len(done.created)} ACL(s) created, {len(done.present)} already there, on {connection.who()}")
    if done.unplanned:
        print(
            f"{len(done.unplanned)} ACL(s) on the pipeline's topics and groups are not in the plan "
            "(left as they are; remove them if nobody needs them):"
        )
        for text in done.unplanned:
            print(f"  {text}")


def add_backups(sub: Subcommands) -> None:
    backups = sub.add_parser(
        "backups",
        help="the backup catalogue of hosted data: list backups, purge expired ones",
        description="list: every backup with its expiry and the records it holds. purge: mark the "
        "backups expired at --now purged and forget their contents (what the backup system does when "
        "it destroys them). Uses EBBTIDE_PG_DSN.",
    )
    backups.add_argument("action", choices=["list", "purge"])
    backups.add_argument("--now", type=iso_time, help="ISO-8601 time (default: the wall clock)")
    backups.set_defaults(func=cmd_backups)


def cmd_backups(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.sinks.backups.catalogue import BackupError, admin

    try:
        lines = admin(settings.require_pg_dsn(), args.action, args.now or datetime.now(UTC))
    except BackupError as exc:
        print(f"ebbtide backups: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
