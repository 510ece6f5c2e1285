"""Commands that run the pipeline's processes: ``worker``, ``sink``, ``clock``.

The worker and the sinks are wired by :mod:`ebbtide.bootstrap`; these functions parse, report a
process that cannot start, and run it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands, iso_time, seconds, timeout
from ebbtide.runtime.settings import Settings

log = logging.getLogger("ebbtide.clock")

if TYPE_CHECKING:
    from ebbtide.tools.clock import ClockPublisher


def add_worker(sub: Subcommands) -> None:
    worker = sub.add_parser(
        "worker",
        help="run the lifecycle agent (Faust worker)",
        description="Consume events, clock ticks and receipts; stamp deadlines; send one deletion "
        "command per store copy (EBBTIDE_STORE_MAP); send unanswered commands again past their "
        "store's service level; sign and publish a deletion certificate when every store has "
        "answered (key: EBBTIDE_CERTIFICATE_KEY, made on first start if missing). Applies a "
        "LegalHoldPlaced or LegalHoldReleased only if signed by a key of EBBTIDE_HOLD_KEYS (default "
        "<state dir>/keys/holds.pub, made with holds.key on first start if missing); others are "
        "dead-lettered. Serves /metrics, /healthz and /readyz on EBBTIDE_HTTP_HOST (default "
        "127.0.0.1), port EBBTIDE_WORKER_METRICS_PORT; logs in EBBTIDE_LOG_FORMAT (text or json).",
    )
    worker.add_argument("--policy", help="policy TOML file (default: the shipped policy)")
    worker.add_argument("--loglevel", default="WARNING", help="default WARNING")
    worker.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide import bootstrap
    from ebbtide.runtime.logging import configure

    configure(args.loglevel.upper(), settings.log_format, "worker")  # until Faust's worker sets it up
    try:
        app = bootstrap.worker(settings, Path(args.policy) if args.policy else None)
    except bootstrap.CannotStart as exc:
        print(f"ebbtide worker: {exc}", file=sys.stderr)
        return 2
    bootstrap.run_worker(app, args.loglevel, settings.log_format)
    return 0


def add_sink(sub: Subcommands) -> None:
    from ebbtide.sinks import registry as sink_kinds  # imports each kind's description, not its process

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


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from ebbtide import bootstrap
    from ebbtide.runtime.logging import configure

    configure(args.loglevel.upper(), settings.log_format, f"sink-{args.kind}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:  # a sink checks its config (and a PostgreSQL sink its map against the database) first
        process = bootstrap.sink(settings, args.kind, args, stop)
    except bootstrap.CannotStart as exc:
        print(f"ebbtide sink {args.kind}: {exc}", file=sys.stderr)
        return 2
    from confluent_kafka import KafkaException

    try:
        return process.run()
    except KafkaException as exc:  # e.g. its static member fenced: the consumer is unusable
        error = exc.args[0] if exc.args else exc
        print(
            f"ebbtide sink {args.kind}: the Kafka consumer of {process.label} failed for good ({error}); "
            "nothing of its last batch was committed: restart it (a supervisor does)",
            file=sys.stderr,
        )
        return 1


def add_clock(sub: Subcommands) -> None:
    clock = sub.add_parser(
        "clock",
        help="publish clock ticks",
        description="Ticks move the pipeline's time; deadlines fire when it passes them. A tick the "
        "broker does not acknowledge within --timeout ends the command with exit 1 (run the production "
        "clock under a supervisor that restarts it); ticking a time again is harmless.",
    )
    modes = clock.add_subparsers(dest="mode", required=True, metavar="MODE")
    tick = modes.add_parser("tick", help="one tick at a given time")
    tick.add_argument("at", type=iso_time, help="ISO-8601 time, e.g. 2030-01-01T00:00:00Z")
    run = modes.add_parser("run", help="ticks from START to UNTIL, as fast as possible")
    run.add_argument("start", type=iso_time)
    run.add_argument("until", type=iso_time)
    run.add_argument("--step-days", type=int, default=7)
    wall = modes.add_parser("wall", help="tick wall-clock time every INTERVAL seconds")
    wall.add_argument("--interval", type=float, default=60.0)
    wall.add_argument("--count", type=int, default=None, help="stop after this many ticks")
    wall.add_argument(
        "--metrics-port",
        type=int,
        help="/metrics port on EBBTIDE_HTTP_HOST (default EBBTIDE_CLOCK_METRICS_PORT, 9312)",
    )
    for mode in (tick, run, wall):
        mode.add_argument(
            "--timeout",
            type=seconds,
            metavar="SECONDS",
            help="seconds to wait for the broker to take a tick (default 30)",
        )
    clock.set_defaults(func=cmd_clock)


def cmd_clock(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError

    from ebbtide.runtime.logging import configure
    from ebbtide.tools.clock import ClockPublisher, TickFailed

    if args.mode == "wall":  # a service: its log lines in EBBTIDE_LOG_FORMAT. A one-shot tick or
        # run says what went wrong in one line, without the Kafka client's own log records.
        configure("WARNING", settings.log_format, "clock")

    wait = timeout(args)
    source = {"tick": "scripted", "run": "accelerated", "wall": "wall"}[args.mode]
    if args.mode == "wall" and not _serve_clock_metrics(args, settings):
        return 2
    try:
        clock = ClockPublisher(settings, source, wait)
    except KafkaError as exc:
        print(
            f"ebbtide clock: the broker at {settings.kafka_bootstrap} did not answer within {wait:g} s "
            f"({type(exc).__name__}); no tick sent",
            file=sys.stderr,
        )
        return 1
    try:
        _tick(args, clock)
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


def _serve_clock_metrics(args: argparse.Namespace, settings: Settings) -> bool:
    """The production clock is scraped (job ebbtide-clock); False if /metrics cannot be served.

    Served before the broker is reached: a clock that fails and is restarted shows up in
    process_start_time_seconds (EbbtideProcessRestarting)."""
    from ebbtide.runtime import endpoints, metrics

    port = settings.clock_metrics_port if args.metrics_port is None else args.metrics_port
    try:
        port = endpoints.serve(
            settings.http_host, port, "EBBTIDE_CLOCK_METRICS_PORT or --metrics-port", metrics.CLOCK_REGISTRY
        )
    except endpoints.CannotServe as exc:
        print(f"ebbtide clock: {exc}", file=sys.stderr)
        return False
    endpoints.READINESS.ready("clock", "serving")  # its /readyz: nothing to wait for
    log.warning("a tick every %g s; /metrics on %s:%d", args.interval, settings.http_host, port)
    return True


def _tick(args: argparse.Namespace, clock: ClockPublisher) -> None:
    """The ticks of ``args.mode``: one, a run as fast as possible, or the wall clock's."""
    from ebbtide.tools.clock import steps, wall_ticks

    if args.mode == "tick":
        clock.tick(args.at)
        print(f"ticked {args.at.isoformat()}")
    elif args.mode == "run":
        for moment in steps(args.start, args.until, args.step_days):
            clock.tick(moment)
        print(f"ticked {args.start.date()} .. {args.until.date()} every {args.step_days} day(s)")
    else:
        from ebbtide.runtime import metrics

        for moment in wall_ticks(args.interval, args.count):
            clock.tick(moment)
            metrics.clock_ticked(moment)
