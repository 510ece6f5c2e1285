"""``ebbtide ingest serve|openapi``: lifecycle events over HTTP (:mod:`ebbtide.ingest`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings


def add_ingest(sub: Subcommands) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="the HTTP ingestion service: POST /v1/events for services not written in Python",
        description="serve: answer POST /v1/events (one event as a JSON object, or a batch as a JSON "
        "array, in the form `ebbtide publish` reads), checked like `ebbtide publish` checks a file "
        "(the schema, the policy, 1 MB a message); a batch with any invalid event is refused whole "
        "(422 naming each index and field) and nothing of it is sent. An accepted request is answered "
        "200 with each event's topic, partition and offset only after Kafka acknowledged every event "
        "(503 if not: send it again). The same event again is answered with its first ack and not "
        "sent again (the last EBBTIDE_INGEST_REMEMBERED_EVENTS, in this process); an event id reused "
        "for other content is 409. Callers authenticate with a bearer token from EBBTIDE_INGEST_TOKENS "
        "(its producer name becomes each event's producer) or a TLS client certificate signed by "
        "EBBTIDE_INGEST_TLS_CLIENT_CA (its common name is the producer); anything else is 401. Legal "
        "hold events, which the service signs with EBBTIDE_HOLD_SIGNING_KEY, are taken only from the "
        "producers in EBBTIDE_INGEST_HOLD_PRODUCERS (none by default; 403 otherwise). It needs the key "
        "store (EBBTIDE_KEYS_DSN or EBBTIDE_PG_DSN) to seal personal values. Also "
        "/healthz, /readyz (Kafka answers), /metrics and /openapi.json, on EBBTIDE_INGEST_HOST:"
        "EBBTIDE_INGEST_PORT (127.0.0.1:9317). openapi: write the OpenAPI document of the service "
        "these settings would run. See docs/ingest.md.",
    )
    ingest.add_argument("action", choices=["serve", "openapi"])
    ingest.add_argument("--output", metavar="FILE", help="openapi: write the document here (default: stdout)")
    ingest.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from ebbtide.ingest import server
    except ModuleNotFoundError as exc:  # installed without the extra
        print(f"ebbtide ingest: needs {exc.name}: pip install 'ebbtide[ingest]'", file=sys.stderr)
        return 2

    if args.action == "openapi":
        text = json.dumps(server.openapi_document(settings), indent=2) + "\n"
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    return _serve(settings)


def _serve(settings: Settings) -> int:
    """Run the service; 1 with one line if Kafka does not answer, 2 if the address cannot be bound."""
    from kafka.errors import KafkaError

    from ebbtide.ingest import server
    from ebbtide.runtime.endpoints import CannotServe
    from ebbtide.runtime.logging import configure

    configure("INFO", settings.log_format, "ingest")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its connection chatter
    try:
        made = server.service(settings)
    except KafkaError as exc:
        print(f"ebbtide ingest: Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}", file=sys.stderr)
        return 1
    try:
        server.serve(settings, made)
    except CannotServe as exc:
        print(f"ebbtide ingest: {exc}", file=sys.stderr)
        return 2
    finally:
        made.publisher.close()
    return 0
