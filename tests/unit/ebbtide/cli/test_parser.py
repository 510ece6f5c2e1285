"""`ebbtide`: every command is listed in its fixed order, and it and each clock mode have --help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from ebbtide.cli import build_parser

COMMANDS = [
    "topics",
    "schemas",
    "publish",
    "ingest",
    "worker",
    "sink",
    "vendor-standin",
    "sink-role",
    "acls",
    "backfill",
    "cdc",
    "backups",
    "dlq",
    "clock",
    "policy",
    "explain",
    "overdue",
    "certificate",
    "audit",
    "log",
    "answer",
    "demo",
]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def test_the_commands_in_the_order_help_lists_them() -> None:
    assert list(subcommands(build_parser())) == COMMANDS
    assert list(subcommands(subcommands(build_parser())["clock"])) == ["tick", "run", "wall"]


@pytest.mark.parametrize(
    "argv",
    [[c, "--help"] for c in COMMANDS]
    + [["clock", m, "--help"] for m in ("tick", "run", "wall")]
    + [["cdc", m, "--help"] for m in ("connect", "run")],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ebbtide {' '.join(argv[:-1])} ")


def test_help_loads_no_kafka_client() -> None:
    code = "import sys; from ebbtide.cli import build_parser; build_parser(); print('kafka' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"


HELP_WITHOUT_DRIVERS = """
import sys
from ebbtide.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(m for m in ("psycopg2", "faust", "confluent_kafka", "aiokafka") if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["sink", "--help"], ["sink", "logstore", "--help"]])
def test_help_loads_no_driver_or_stream_library(argv: list[str]) -> None:
    """`ebbtide --help` and the sink kinds' help list every kind without importing the database
    driver, Faust or the Kafka clients: they are imported where a process is built."""
    run = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_DRIVERS, *argv], capture_output=True, text=True, check=True
    )
    assert "usage: ebbtide" in run.stdout
    assert run.stdout.splitlines()[-1] == ""
