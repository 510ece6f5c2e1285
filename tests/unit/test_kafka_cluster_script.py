"""deploy/local/kafka-cluster.sh refuses bad settings and arguments with one line naming them,
before it starts anything (no JVM here: the failover test runs the cluster itself)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka-cluster.sh"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env={**os.environ, "EBBTIDE_STATE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (
            ["start"],
            {"EBBTIDE_KAFKA_CLUSTER_PORTS": "21001 21002"},
            "EBBTIDE_KAFKA_CLUSTER_PORTS must list 3",
        ),
        (["start"], {"EBBTIDE_KAFKA_CLUSTER_PORTS": "21001 21002 x"}, "EBBTIDE_KAFKA_CLUSTER_PORTS: 'x'"),
        (
            ["start"],
            {"EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS": "9192 9293 9393"},
            "must be six different ports; repeated: 9192",
        ),
        (["start"], {"EBBTIDE_KAFKA_HEAP": "lots"}, "EBBTIDE_KAFKA_HEAP"),
        (["start"], {"EBBTIDE_KAFKA_START_TIMEOUT": "0"}, "EBBTIDE_KAFKA_START_TIMEOUT"),
        (["kill", "4"], {}, "no node '4' (the nodes are 1 2 3)"),
        (["status", "1"], {}, "status takes no node"),
    ],
)
def test_bad_input_is_one_line_naming_it(
    tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    done = run(tmp_path, *args, **env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and names in done.stderr, done.stderr
    assert not (tmp_path / "kafka-cluster").exists()  # nothing made, nothing started


def test_an_unknown_command_shows_the_usage(tmp_path: Path) -> None:
    done = run(tmp_path, "restart")
    assert done.returncode == 2
    assert "unknown command: restart" in done.stderr and "Usage:" in done.stderr


def test_status_of_a_cluster_never_started_says_each_node_is_stopped(tmp_path: Path) -> None:
    done = run(tmp_path, "status", EBBTIDE_KAFKA_CLUSTER_PORTS="21001 21002 21003")
    assert done.returncode == 3
    assert done.stdout.splitlines() == [
        f"kafka-cluster: node {n} stopped (127.0.0.1:{port})"
        for n, port in ((1, 21001), (2, 21002), (3, 21003))
    ]
