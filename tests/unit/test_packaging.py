"""The wheel installs one top-level package, ``ebbtide``, and works from there alone.

The source tree keeps ``streams/``, ``sinks/`` and ``schemas/`` at its top level (links under
``ebbtide/`` name them ``ebbtide.streams`` and so on); the wheel must not claim those names in a
user's site-packages, and must carry the Avro schemas and the policy files the code loads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ebbtide.bootstrap import policy
from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from tests.support import build_wheel

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAPPED = ("streams", "sinks", "schemas")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the tracked files (the checkout stays clean)."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        origin, copy = ROOT / name, source / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        elif origin.is_file():
            shutil.copy2(origin, copy)
    return build_wheel(source, base / "dist")


def test_the_wheel_claims_only_the_ebbtide_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"ebbtide", f"{wheel.name.split('-py')[0]}.dist-info"}
    top_level_txt = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level_txt).decode().split() == ["ebbtide"]


def test_every_tracked_module_and_data_file_of_the_mapped_packages_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", *MAPPED], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    assert tracked, "git ls-files found none of the mapped packages"
    missing = [name for name in tracked if f"ebbtide/{name}" not in names]
    assert missing == []


def test_without_an_extra_the_wheel_requires_only_the_client_s_dependencies(wheel: Path) -> None:
    """`pip install ebbtide` is the publishing client; the worker and the sinks are `ebbtide[server]`,
    the key store's driver `ebbtide[keys]` (which `server` includes)."""
    archive = zipfile.ZipFile(wheel)
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires: dict[str, set[str]] = {}
    for line in re.findall(r"^Requires-Dist: (.+)$", metadata, re.MULTILINE):
        spec, _, marker = line.partition(";")
        extra = re.search(r'extra == "(\w+)"', marker)
        requires.setdefault(extra[1] if extra else "", set()).add(re.split(r"[=\[ ]", spec.strip())[0])
    assert requires[""] == {"kafka-python", "aiokafka", "fastavro", "msgspec", "cryptography", "tzdata"}
    assert requires["keys"] == {"psycopg2"}
    assert {"ebbtide", "faust-streaming", "rocksdict", "prometheus-client"} <= requires["server"]
    assert "confluent-kafka" in requires["registry"]  # the server extra includes it


INSTALLED_CHECK = """
import importlib.util, sys
from pathlib import Path
site = Path(sys.argv[1]).resolve()
for name in ("streams", "sinks", "schemas"):
    assert importlib.util.find_spec(name) is None, f"top-level {name} is importable"
import ebbtide.streams.worker.app
import ebbtide.client
from ebbtide.bootstrap import policy, store_map
from ebbtide.runtime.settings import Settings
from ebbtide.schemas import codec
from ebbtide.sinks import registry
settings = Settings.from_env({})
loaded = policy(settings)
assert codec.SCHEMA_DIR.resolve().is_relative_to(site), codec.SCHEMA_DIR
assert Path(ebbtide.streams.worker.app.__file__).resolve().is_relative_to(site)
assert Path(ebbtide.client.__file__).resolve().is_relative_to(site)
print(loaded.content_hash, " ".join(registry.names()))
"""


def test_the_installed_wheel_runs_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBBTIDE_")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run(
        [sys.executable, "-P", "-c", INSTALLED_CHECK, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    label, kinds = run.stdout.split(" ", 1)
    # the same policy label as the source tree's: the same rules and store map were packaged
    assert label == policy(Settings.from_env({})).content_hash
    assert kinds.split() == list(registry.names())
    cli = subprocess.run(
        [sys.executable, "-P", "-m", "ebbtide", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "usage: ebbtide" in cli.stdout
