"""``python -m chaos``: see :mod:`chaos`. ``make chaos`` runs it on a stack of its own."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from chaos.run import run
from chaos.schedule import Options
from ebbtide.runtime.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # kafka-python's errors while the broker is dead would hide the progress line
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        settings.require_pg_dsn()
    except SettingsError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    options = Options(
        customers=args.customers,
        seed=args.seed,
        until=datetime(args.until_year, 1, 1, tzinfo=UTC),
        step_days=args.step_days,
        outage_seconds=args.outage_seconds,
        max_minutes=args.max_minutes,
        results=args.results,
        name=args.name,
    )
    # SIGTERM (e.g. from `timeout` or a CI runner) ends the run like Ctrl-C: through the
    # `finally` blocks that stop the worker and sinks, so none is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(settings, options)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=(
            "Run the pipeline on the local stack under faults (SIGKILL of the worker, each sink, the "
            "broker and PostgreSQL; a second worker added and removed; vendors down or failing) and "
            "hostile input (poison pills; forged commands, receipts, ticks and legal holds), then check "
            "an independent ledger: lost, premature and duplicated deletions, certificates for copies "
            "still held, poison pills missing from the dead letters, forgeries accepted. Writes "
            "<results>/<name>.json with the ledger and the recovery time of every fault. Exit 0 when "
            "the ledger is clean, 1 when it is not, 2 when the run itself could not finish. It kills "
            "the broker and PostgreSQL it finds in $EBBTIDE_STATE_DIR: run it through `make chaos`, "
            "which gives it a stack of its own."
        ),
    )
    defaults = Options()
    parser.add_argument("--customers", type=int, default=defaults.customers, help="size of the customer base")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="scenario seed")
    parser.add_argument(
        "--until-year",
        type=int,
        default=defaults.until.year,
        help="run the clock up to 1 January of this year",
    )
    parser.add_argument("--step-days", type=int, default=defaults.step_days, help="clock step")
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=defaults.outage_seconds,
        help="how long the broker and PostgreSQL stay dead",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=defaults.max_minutes,
        help="give the run up (exit 2) after this long",
    )
    parser.add_argument(
        "--results", type=Path, default=defaults.results, help="directory of the JSON results"
    )
    parser.add_argument("--name", help="the result file's name, without .json (default: the UTC time)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
