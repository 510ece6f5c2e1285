"""The demo and its stand-in for the HTTP vendors: ``demo``, ``vendor-standin``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings


def add_vendor_standin(sub: Subcommands) -> None:
    standin = sub.add_parser(
        "vendor-standin",
        help="run the local HTTP vendor stand-in (tests and demo)",
        description="A stand-in for the HTTP vendors on 127.0.0.1 (each under /<store>), with switchable "
        "failures (fail, down, timeout, slow) on /_admin/<store>; prints its URL, runs until SIGTERM.",
    )
    standin.add_argument("--port", type=int, default=9320, help="default 9320 (0: any free port)")
    standin.set_defaults(func=cmd_vendor_standin)


def cmd_vendor_standin(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.demo.vendor_standin import serve

    return serve(args.port)


def add_demo(sub: Subcommands) -> None:
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
