"""A PostgreSQL server of a test's own, to crash: the local stack's server is shared by every test.

Made with the same server binaries the local stack uses (``/usr/lib/postgresql/<version>/bin``),
run as the ``postgres`` OS user when the tests run as root (the server refuses root), on a free
port, trust authentication on 127.0.0.1 only, in a temporary directory removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ebbtide.tools.processes import free_port

PG_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"


def _bin_dir() -> Path:
    found = sorted(PG_ROOT.glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.skip(f"no PostgreSQL server binaries under {PG_ROOT}")
    return found[-1].parent


@dataclass
class Cluster:
    bin_dir: Path
    data: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://{OS_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd="/", timeout=120)

    def start(self) -> None:
        """Start the server and wait until it accepts connections (``pg_ctl -w``)."""
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.data / "server.log"),
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data}",
        )  # fmt: skip

    def crash(self) -> None:
        """Stop the server as a crash would: every process quits at once, no checkpoint, no WAL
        flush; the next start runs crash recovery (``pg_ctl stop -m immediate``)."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))


@contextmanager
def scratch_cluster() -> Iterator[Cluster]:
    """A running server of its own (see the module docstring), stopped and removed afterwards."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="ebbtide-pg-"))
    root.chmod(0o755)
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, OS_USER)
    cluster = Cluster(bin_dir, data, free_port())
    try:
        cluster._run("initdb", "-D", str(data), "-U", OS_USER, "-A", "trust", "--no-sync")
        cluster.start()
        try:
            yield cluster
        finally:
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data)],
                capture_output=True,
                check=False,
                user=OS_USER if os.geteuid() == 0 else None,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
