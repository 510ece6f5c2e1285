"""`pip install ebbtide` is the client alone: it runs without the `server` extra's packages.

Each check runs in a fresh interpreter where those packages cannot be imported (a finder refuses
them, as if they were not installed), so a module of the client that imports one fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ebbtide.cli import SERVER_MODULES
from ebbtide.tools.processes import free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[4]

WITHOUT_SERVER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

CLIENT = """
from datetime import UTC, datetime
import ebbtide.client, ebbtide.tools.client
from ebbtide.client import ServiceOrdered, Settings
from ebbtide.client.outgoing import Outgoing

outgoing = Outgoing(Settings.from_env({}))  # the policy and store map of a worker, no key store
event = ServiceOrdered(event_id="e1", subject_id="c1", event_time=datetime.now(UTC), producer="p",
                       service_id="s1", kind="SSL")
key, value = outgoing.message(outgoing.record(event))
assert key == b"c1" and value[:2] == b"\\xc3\\x01"
try:
    from ebbtide.client.sealing import key_store
    key_store(Settings.from_env({"EBBTIDE_KEYS_DSN": "postgresql://nobody@127.0.0.1/keys"}))
except Exception as exc:
    print(type(exc).__name__, exc)
heavy = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
assert not heavy, heavy
"""


def run(code: str, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBBTIDE_")}
    env["EBBTIDE_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"  # no broker: nothing is reached
    env["EBBTIDE_STATE_DIR"] = str(state)
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER + code, ",".join(sorted(SERVER_MODULES)), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_client_publishes_without_the_server_extra(tmp_path: Path) -> None:
    result = run(CLIENT, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # a key store needs psycopg2: one line naming the setting and the extra
    assert result.stdout.strip() == (
        "SettingsError EBBTIDE_KEYS_DSN (or EBBTIDE_PG_DSN): the key store needs psycopg2: "
        "pip install 'ebbtide[keys]'"
    )


@pytest.mark.parametrize("command", [["worker"], ["sink", "postgres", "--map", "customer_db"], ["--help"]])
def test_a_server_command_without_the_extra_says_which_extra_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    cli = "from ebbtide.cli import main\nsys.exit(main(sys.argv[2:]))\n"
    result = run(cli, tmp_path, *command)
    if command == ["--help"]:  # the command list needs no extra
        assert "usage: ebbtide" in result.stdout, result.stderr[-2000:]
        return
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    needs = f"ebbtide {command[0]}: needs the worker's and the sinks' dependencies (no module "
    assert lines[0].startswith(needs)
    assert lines[0].endswith("pip install 'ebbtide[server]'")


def test_the_server_modules_are_the_server_extra_s() -> None:
    """The CLI's list of what `pip install ebbtide` leaves out matches pyproject.toml: each
    package of the `server` extra and of the extras it includes (its import name), and none of the
    client's dependencies. The registry extra's helpers of confluent-kafka (Authlib, cachetools,
    httpx2) are not named: only confluent-kafka's own modules import them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    import_names = {
        "faust-streaming": {"faust", "mode"},
        "rocksdict": {"rocksdict"},
        "psycopg2": {"psycopg2"},
        "confluent-kafka": {"confluent_kafka"},
        "avro": {"avro"},
        "prometheus-client": {"prometheus_client"},
        "python-json-logger": {"pythonjsonlogger"},
        "rich": {"rich"},
    }
    extras = project["optional-dependencies"]
    server = [
        r.split("==")[0].split("[")[0]
        for r in extras["server"] + extras["keys"] + extras["registry"][:1]
        if not r.startswith("ebbtide[")
    ]
    assert extras["registry"][0].startswith("confluent-kafka[avro]==")
    assert sorted(server) == sorted(import_names)
    assert set().union(*import_names.values()) == SERVER_MODULES
    client = {r.split("==")[0] for r in project["dependencies"]}
    assert client == {"kafka-python", "aiokafka", "fastavro", "msgspec", "cryptography", "tzdata"}
