"""``ebbtide``: the one command-line entry point. Every command has ``--help``.

One module per group of commands, each adding its subparsers and holding their ``cmd_*``
functions: :mod:`.topics`, :mod:`.events` (publish, backfill), :mod:`.ingest` (the HTTP ingestion
service), :mod:`.dlq`, :mod:`.pipeline` (worker, sink, clock), :mod:`.cdc` (change
data capture), :mod:`.admin` (sink-role, acls,
backups), :mod:`.policy` (policy, explain, overdue), :mod:`.certificates`, :mod:`.audit`,
:mod:`.log`, :mod:`.answer`, :mod:`.schema_registry`
(schemas) and :mod:`.demo` (demo, vendor-standin). Each command imports what
it runs only when it runs: ``ebbtide --help`` loads no Kafka client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ebbtide.cli import (
    admin,
    answer,
    audit,
    cdc,
    certificates,
    demo,
    dlq,
    events,
    ingest,
    log,
    pipeline,
    policy,
    schema_registry,
    topics,
)
from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings, SettingsError

DESCRIPTION = """Ebbtide stamps personal-data records with retention deadlines from a versioned
policy and, when a deadline passes, orders and proves their deletion in every store.
Settings come from EBBTIDE_* environment variables (see docs/operations.md, "Settings")."""

# What `pip install ebbtide` (the client alone) leaves out: the `server` extra's modules (pyproject.toml).
SERVER_MODULES = frozenset(
    {
        "faust",
        "mode",
        "rocksdict",
        "psycopg2",
        "confluent_kafka",
        "avro",
        "prometheus_client",
        "pythonjsonlogger",
        "rich",
    }
)

# The commands in the order `ebbtide --help` lists them.
COMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    topics.add_topics,
    schema_registry.add_schemas,
    events.add_publish,
    ingest.add_ingest,
    pipeline.add_worker,
    pipeline.add_sink,
    demo.add_vendor_standin,
    admin.add_sink_role,
    admin.add_acls,
    events.add_backfill,
    cdc.add_cdc,
    admin.add_backups,
    dlq.add_dlq,
    pipeline.add_clock,
    policy.add_policy,
    policy.add_explain,
    policy.add_overdue,
    certificates.add_certificate,
    audit.add_audit,
    log.add_log,
    answer.add_answer,
    demo.add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``ebbtide`` parser: every command of :data:`COMMANDS` as a subcommand."""
    parser = argparse.ArgumentParser(prog="ebbtide", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (2 for settings that are not valid, 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if settings.log_format == "json":  # text: Python's default for a command's warnings, as before
            from ebbtide.runtime.logging import configure

            configure("WARNING", "json", "cli")
        if getattr(args, "store", "unset") is None:
            from ebbtide import bootstrap

            args.store = list(bootstrap.store_map(settings).ids)
        return int(args.func(args, settings))
    except SettingsError as exc:
        print(f"ebbtide: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        print(
            f"ebbtide {args.command}: needs the worker's and the sinks' dependencies (no module {exc.name}): "
            "pip install 'ebbtide[server]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
