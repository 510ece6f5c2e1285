"""The 3-node KRaft cluster of ``deploy/local/kafka-cluster.sh`` for the failover test: started
on free ports with a state directory of the test's own, killed (every node) afterwards."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings
from ebbtide.tools.processes import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka-cluster.sh"
NODES = (1, 2, 3)
REPLICATION = 3
MIN_INSYNC = 2


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class LocalCluster:
    state_dir: Path
    heap: str = "320m"
    ports: list[int] = field(default_factory=lambda: _distinct_ports(2 * len(NODES)))

    @property
    def client_ports(self) -> list[int]:
        return self.ports[: len(NODES)]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.client_ports)

    def _run(self, command: str, *nodes: int, timeout: float = 240) -> None:
        env = {
            **os.environ,
            "EBBTIDE_STATE_DIR": str(self.state_dir),
            "EBBTIDE_KAFKA_CLUSTER_PORTS": " ".join(map(str, self.client_ports)),
            "EBBTIDE_KAFKA_CLUSTER_CONTROLLER_PORTS": " ".join(map(str, self.ports[len(NODES) :])),
            "EBBTIDE_KAFKA_HEAP": self.heap,
        }
        done = subprocess.run(
            [str(SCRIPT), command, *map(str, nodes)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"kafka-cluster.sh {command} failed:\n{done.stdout}{done.stderr}"[-3000:])

    def start(self, *nodes: int) -> None:
        """Start the nodes (all by default) and wait until each is ready."""
        self._run("start", *nodes)

    def kill(self, *nodes: int) -> None:
        """SIGKILL the nodes (all by default) and wait until they are gone."""
        self._run("kill", *nodes, timeout=60)

    def log(self, node: int) -> Path:
        return self.state_dir / "kafka-cluster" / f"node-{node}" / "kafka.log"


def describe(settings: Settings, topics: Iterable[str]) -> list[dict[str, Any]]:
    """Every partition of ``topics``: leader_id, replica_nodes, isr_nodes (kafka-python's names)."""
    admin = kafka.admin(settings)
    try:
        return [p for t in admin.describe_topics(list(topics)) for p in t["partitions"]]
    finally:
        admin.close()


def leaders(settings: Settings, topics: Iterable[str]) -> Counter[int]:
    """How many partitions of ``topics`` each node leads."""
    return Counter(p["leader_id"] for p in describe(settings, topics) if p["leader_id"] >= 0)
