"""The systemd units of deploy/systemd/: systemd's own checks (``systemd-analyze verify`` and the
offline ``security`` score), the hardening they promise, and one example sink instance for each
sink process the store map needs, with arguments the ``ebbtide`` parser takes."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ebbtide.cli import build_parser
from ebbtide.sinks import registry
from ebbtide.streams.policy.stores import load_store_map
from tests.unit.deploy.kube import ADDED_IN_ISSUE_13, ROOT, SETTINGS_NAMES, env_file

pytestmark = pytest.mark.unit

UNITS = ROOT / "deploy" / "systemd"
ENV = UNITS / "env"
EXECUTABLE = "/opt/ebbtide/bin/ebbtide"  # the virtualenv the docs install the wheel into
SERVICES = ("ebbtide-worker.service", "ebbtide-clock.service", "ebbtide-sink@.service")
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)  # keys repeat (EnvironmentFile)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def instances() -> list[str]:
    """The example sink instances: env/sink-<instance>.env."""
    return sorted(p.stem.removeprefix("sink-") for p in ENV.glob("sink-*.env"))


def as_installed(tmp_path: Path) -> list[str]:
    """The units copied with ExecStart's program pointing at a stand-in that exists (systemd checks
    that it is executable); the instance names to verify."""
    program = tmp_path / "bin" / "ebbtide"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    for name in SERVICES:
        (tmp_path / name).write_text((UNITS / name).read_text().replace(EXECUTABLE, str(program)))
    return ["ebbtide-worker.service", "ebbtide-clock.service"] + [
        f"ebbtide-sink@{i}.service" for i in instances()
    ]


@needs_systemd
def test_systemd_verifies_every_unit_without_a_warning(tmp_path: Path) -> None:
    names = as_installed(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (0, "")


@needs_systemd
def test_each_unit_is_hardened_to_an_exposure_of_at_most_2(tmp_path: Path) -> None:
    for name in as_installed(tmp_path)[:3]:
        done = subprocess.run(  # the threshold is the exposure times ten
            ["systemd-analyze", "security", "--offline=yes", "--threshold=20", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout.splitlines()[-1]


@pytest.mark.parametrize("name", SERVICES)
def test_each_unit_runs_ebbtide_restarting_on_failure_with_its_settings(name: str) -> None:
    service = unit(name)["Service"]
    assert service["ExecStart"].startswith(f"{EXECUTABLE} ")
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "ebbtide"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["User"] == "ebbtide"  # made by ebbtide.sysusers.conf
    files = [
        line.split("=", 1)[1]
        for line in (UNITS / name).read_text().splitlines()
        if "EnvironmentFile=" in line
    ]
    assert files[0] == "/etc/ebbtide/ebbtide.env" and len(files) == 2


def test_an_example_sink_instance_for_each_sink_process_of_the_store_map() -> None:
    needed = registry.sink_processes(load_store_map().stores).values()
    given = [shlex.split(env_file(ENV / f"sink-{i}.env")["SINK_ARGS"]) for i in instances()]
    for args in needed:
        assert len([g for g in given if g[: len(args)] == args]) == 1, args
    assert len(given) == len(needed)
    for args in given:
        build_parser().parse_args(["sink", *args])
    ports = [env_file(ENV / f"sink-{i}.env").get("EBBTIDE_SINK_METRICS_PORT") for i in instances()]
    assert len({p for p in ports if p}) == len([p for p in ports if p]), "one metrics port per sink"


def test_the_env_files_set_only_settings_that_exist() -> None:
    other = {"SINK_ARGS"}  # the sink template's own: `ebbtide sink $SINK_ARGS`
    names = {n for f in ENV.glob("*.env") for n in env_file(f)}
    unknown = {n for n in names if n.startswith("EBBTIDE_")} - SETTINGS_NAMES - ADDED_IN_ISSUE_13
    assert unknown == set()
    assert {n for n in names if not n.startswith("EBBTIDE_")} - other == {
        f"{s.upper()}_TOKEN" for s in (x.id for x in load_store_map().stores if x.kind == "http")
    }
