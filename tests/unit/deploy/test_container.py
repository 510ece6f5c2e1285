"""The image definition, deploy/container/Containerfile (Dockerfile syntax, read with
dockerfile-parse): two stages, the wheel built from what the build stage copies, installed into a
slim Python 3.11 and run as an unprivileged user, no secret in it, the `ebbtide` console script
as its entry point."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.support import build_wheel

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"


def parsed() -> DockerfileParser:
    # dockerfile-parse takes a path for a directory holding "Dockerfile": give it the file's bytes
    return DockerfileParser(fileobj=io.BytesIO(CONTAINERFILE.read_bytes()))


def instructions() -> list[dict[str, Any]]:
    structure: list[dict[str, Any]] = parsed().structure
    return structure


def stages() -> list[list[dict[str, Any]]]:
    split: list[list[dict[str, Any]]] = []
    for line in instructions():
        if line["instruction"] == "FROM":
            split.append([])
        if split:
            split[-1].append(line)
    return split


def copies(stage: list[dict[str, Any]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY of ``stage`` from the build context (no --from)."""
    found = []
    for line in stage:
        if line["instruction"] == "COPY" and "--from" not in line["value"]:
            *sources, target = line["value"].split()
            found.append((sources, target))
    return found


def test_two_stages_on_slim_python_3_11() -> None:
    build, run = stages()
    (base,) = [
        line["value"].split("=", 1)[1]
        for line in instructions()
        if line["instruction"] == "ARG" and line["value"].startswith("PYTHON_IMAGE=")
    ]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base)
    assert build[0]["value"] == "${PYTHON_IMAGE} AS build" and run[0]["value"] == "${PYTHON_IMAGE}"
    # the wheels of the worker's and the sinks' dependencies too (the `server` extra), installed
    assert any("pip wheel" in line["value"] and line["value"].endswith(" '.[server]'") for line in build)
    installs = [line["value"] for line in run if "pip install" in line["value"]]
    assert any(value.endswith(" 'ebbtide[server]'") for value in installs)
    assert copies(run) == [], "the run stage takes only the wheels"


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = [s for stage in stages() for group, _ in copies(stage) for s in group]
    assert sources
    assert [s for s in sources if not (ROOT / s).exists()] == []


def test_the_build_stage_copies_what_the_wheel_is_built_from(tmp_path: Path) -> None:
    """The wheel builds from a context holding only what the build stage copies (with the
    links under ebbtide/ as the context has them), and carries the policy and the schemas."""
    (build, _) = stages()
    for sources, target in copies(build):
        for source in sources:
            origin = ROOT / source
            copy = tmp_path / "src" / (Path(target) / source if target.endswith("/") else target)
            if origin.is_dir():
                shutil.copytree(origin, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, copy)
    built = build_wheel(tmp_path / "src", tmp_path / "dist")
    names = set(subprocess.run(["unzip", "-Z1", str(built)], capture_output=True, text=True).stdout.split())
    assert {"ebbtide/streams/policy/retention.v1.toml", "ebbtide/streams/policy/stores.v1.toml"} <= names
    assert any(n.startswith("ebbtide/schemas/") and n.endswith(".avsc") for n in names)


def test_it_runs_the_ebbtide_console_script_as_an_unprivileged_user() -> None:
    run = stages()[-1]
    last = {line["instruction"]: line["value"] for line in run}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = json.loads(last["ENTRYPOINT"])
    assert entry[0] in scripts and scripts[entry[0]] == "ebbtide.cli:main"
    user = last["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000


def test_no_secret_is_baked_in() -> None:
    for line in instructions():
        if line["instruction"] in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", line["value"])
            assert not [n for n in names if re.search(r"PASSWORD|TOKEN|SECRET|DSN|KEY", n, re.I)], line
    sources = [s for stage in stages() for group, _ in copies(stage) for s in group]
    assert not [s for s in sources if s in (".", ".state", ".env") or s.endswith(".key")]


def test_it_exposes_the_default_metrics_port_of_each_process_kind_and_not_the_worker_web() -> None:
    from ebbtide.cli import build_parser
    from ebbtide.runtime.settings import Settings
    from ebbtide.sinks import registry

    defaults = Settings()
    sinks = {k.port(defaults, build_parser().parse_args(["sink", k.name])) for k in registry.kinds()}
    exposed = {
        int(p) for line in instructions() if line["instruction"] == "EXPOSE" for p in line["value"].split()
    }
    assert exposed == {defaults.worker_metrics_port, defaults.clock_metrics_port, *sinks}
    assert defaults.worker_web_port not in exposed  # the subject pages stay on loopback
