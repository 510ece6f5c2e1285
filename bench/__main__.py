"""``python -m bench``: run the benchmarks, print a table, write JSON under bench/results/."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.baseline_tree import DEFAULT_COMMIT
from bench.common import SIZES, Context, Figure, env_dsn
from ebbtide.runtime.settings import Settings

BENCHMARKS = ("stamping", "deletion", "pending", "latency", "recovery", "replay")
RESULTS = Path(__file__).resolve().parent / "results"
DESCRIPTION = """\
Ebbtide benchmarks on the local stack. Each figure is reported with a baseline or ceiling
measured in the same run, as a ratio, and the goal it is held to.

  stamping  lifecycle events/s through one worker, against: the output-matched passthrough
            (the worker's own outputs and changelog records written per batch, acks=-1), today's
            worker (--baseline-commit) and a bare passthrough; bytes written per event
            (decisions, commands, other outputs, changelog) against today's worker; two worker
            processes against one; the processor alone, in process
  deletion  rows/s deleted by the executor and by the sink, against raw DELETE ... = ANY
  pending   due-index RAM per pending deadline, tick cost per due deadline as pending grows
  latency   tick -> row deleted, p50 and p99 under steady load, against a Kafka round trip
  recovery  restart of a SIGKILLed worker holding pending deadlines, against an empty start
  replay    ebbtide audit replay of the stamping log, against the worker's stamping of it
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--baseline-commit",
        default=DEFAULT_COMMIT,
        metavar="COMMIT",
        help="the commit whose worker the stamping benchmark measures as today's worker, beside the "
        f"current one (default {DEFAULT_COMMIT}, the start of issue 15; exported with git archive; "
        "'' to skip)",
    )
    args = parser.parse_args(argv)
    console = Console()
    size = SIZES[args.size]
    ctx = Context(
        size,
        Settings.from_env(),
        env_dsn(),
        Path(tempfile.mkdtemp(prefix="ebbtide-bench-")),
        lambda line: console.print(f"  [dim]{time.strftime('%H:%M:%S')}[/] {line}"),
        args.baseline_commit,
    )
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    for name in args.only or BENCHMARKS:
        console.rule(f"{name} ({size.name})")
        module = importlib.import_module(f"bench.{name}")
        try:
            figures += module.run(ctx)
        except Exception as exc:  # a failing benchmark is reported, and the others still run
            failures[name] = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]{name} failed: {failures[name]}")
    console.print(_table(figures))
    path = _write(size.name, figures, failures)
    console.print(f"results written to {path}")
    return 1 if failures else 0


def _table(figures: list[Figure]) -> Table:
    """Figures with their baseline values; what each baseline is goes in numbered notes below."""
    notes: list[str] = []
    table = Table(title="Ebbtide benchmarks (ratio = figure / baseline, same run)")
    for column in ("benchmark", "figure", "value", "baseline", "ratio", "goal met"):
        table.add_column(column, justify="right" if column in ("value", "baseline", "ratio") else "left")
    for f in figures:
        baseline = ""
        if f.baseline_value is not None and f.baseline:
            if f.baseline not in notes:
                notes.append(f.baseline)
            baseline = f"{f.baseline_value:,.2f} [{notes.index(f.baseline) + 1}]"
        ratio = "" if f.ratio is None else f"{f.ratio:.3g}"
        met = {True: "yes", False: "no", None: ""}[f.meets_goal]
        table.add_row(f.benchmark, f.name, f"{f.value:,.2f} {f.unit}", baseline, ratio, met)
    table.caption = "\n".join(f"[{n}] {text}" for n, text in enumerate(notes, start=1))
    table.caption_justify = "left"
    return table


def _write(size: str, figures: list[Figure], failures: dict[str, str]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{stamp}-{size}.json"
    payload: dict[str, Any] = {
        "size": size,
        "started": stamp,
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            # 1, 5 and 15 minute load averages at the end: other work on the machine skews the
            # absolute figures (the ratios less)
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "figures": [f.as_json() for f in figures],
        "failures": failures,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
