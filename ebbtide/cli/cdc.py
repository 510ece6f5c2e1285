"""``ebbtide cdc``: change data capture with Debezium (``connect``, ``run``); see docs/cdc.md."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.cdc.changes import Mapping
    from ebbtide.runtime.topic_spec import TopicSpec

MAPS_HELP = "store map TOML, or a shipped store id such as billing_db (repeatable; default customer_db)"


def add_cdc(sub: Subcommands) -> None:
    cdc = sub.add_parser(
        "cdc",
        help="change data capture: tables announce their records (Debezium on Kafka Connect)",
        description="The tables of the store maps that name a subject_column are captured by Debezium's "
        "PostgreSQL connector; `cdc run` turns an insert into a RecordWritten event and checks a delete "
        "against the ledger of Ebbtide's deletions (docs/cdc.md).",
    )
    modes = cdc.add_subparsers(dest="mode", required=True, metavar="MODE")
    connect = modes.add_parser(
        "connect",
        help="make the publication and register (or update) the connector",
        description="Check the mapped tables (each must exist; a delete must carry its key column), make "
        "or update the publication ebbtide_cdc as their owner (EBBTIDE_PG_DSN), then PUT Debezium's "
        "configuration to Kafka Connect (EBBTIDE_CONNECT_URL), logging in as EBBTIDE_CDC_DSN's role. "
        "Idempotent. Waits until the connector runs.",
    )
    connect.add_argument("--map", action="append", default=None, help=MAPS_HELP)
    connect.add_argument("--name", help="connector name (default <topic prefix>-cdc-<database>)")
    connect.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to run")
    run = modes.add_parser(
        "run",
        help="translate the captured changes into lifecycle events (a service)",
        description="Consume <prefix>.cdc: publish one RecordWritten per inserted row (and per row of "
        "the connector's initial snapshot), flag a row inserted again after Ebbtide deleted it (the "
        "pipeline deletes it again), report a row deleted outside Ebbtide. Metrics on "
        "EBBTIDE_CDC_METRICS_PORT.",
    )
    run.add_argument("--map", action="append", default=None, help=MAPS_HELP)
    run.add_argument("--metrics-port", type=int, default=None, help="default EBBTIDE_CDC_METRICS_PORT")
    for mode in (connect, run):
        mode.set_defaults(func=cmd_cdc)


def cmd_cdc(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError
    from psycopg2 import Error as DatabaseError

    from ebbtide.cdc.changes import Mapping
    from ebbtide.cdc.connector import ConnectError
    from ebbtide.sinks.postgres.table_map import TableMapError, load_table_map, map_path
    from ebbtide.tools.client import PublishFailed
    from ebbtide.tools.topics.cluster import TopicsError

    try:
        mapping = Mapping([load_table_map(map_path(m)) for m in args.map or ["customer_db"]])
        return _connect(args, settings, mapping) if args.mode == "connect" else _run(args, settings, mapping)
    except (TableMapError, ConnectError, DatabaseError, PublishFailed, TopicsError) as exc:
        print(f"ebbtide cdc {args.mode}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(
            f"ebbtide cdc {args.mode}: the broker at {settings.kafka_bootstrap} did not answer "
            f"({type(exc).__name__})",
            file=sys.stderr,
        )
        return 1


def _connect(args: argparse.Namespace, settings: Settings, mapping: Mapping) -> int:
    from urllib.parse import urlparse

    import psycopg2

    from ebbtide.cdc import connector
    from ebbtide.cdc.translator import cdc_topic
    from ebbtide.runtime.settings import SettingsError
    from ebbtide.tools.topics import spec

    if not settings.cdc_dsn:
        raise SettingsError(
            "EBBTIDE_CDC_DSN is not set: the DSN of the role Debezium logs in as (make stack-up writes one)"
        )
    name = args.name or connector.connector_name(settings, urlparse(settings.cdc_dsn).path.strip("/"))
    config = connector.connector_config(name, settings.cdc_dsn, mapping, cdc_topic(settings))
    connector.check_up(settings.connect_url)  # before anything is made in the database
    conn = psycopg2.connect(settings.require_pg_dsn(), application_name="ebbtide-cdc")
    try:
        connector.prepare_database(conn, mapping)
    finally:
        conn.close()
    _declare_topic(settings, spec.cdc_topic(settings))
    connector.register(settings.connect_url, name, config)
    connector.wait_running(settings.connect_url, name, args.timeout)
    print(f"connector {name} runs: {len(mapping.tables)} table(s) to {cdc_topic(settings)}")
    return 0


def _declare_topic(settings: Settings, topic: TopicSpec) -> None:
    """Create the CDC topic as declared, or set its retention: it holds row values in clear."""
    from ebbtide.tools.topics import cluster

    report = cluster.apply(settings, [topic])
    for diff in report.differences:  # what apply cannot change: partitions, replicas
        raise cluster.TopicsError(f"topic {topic.name}: {diff.what} is {diff.have}, declared {diff.want}")


def _run(args: argparse.Namespace, settings: Settings, mapping: Mapping) -> int:
    import logging
    import signal
    import threading

    from ebbtide.cdc import translator
    from ebbtide.runtime import endpoints
    from ebbtide.runtime.logging import configure

    configure("INFO", settings.log_format, "cdc")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its clients' INFO lines are noise here
    port = settings.cdc_metrics_port if args.metrics_port is None else args.metrics_port
    try:
        endpoints.serve(settings.http_host, port, "EBBTIDE_CDC_METRICS_PORT or --metrics-port")
    except endpoints.CannotServe as exc:
        print(f"ebbtide cdc run: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    translator.run(settings, mapping, settings.require_pg_dsn(), stop)
    return 0
