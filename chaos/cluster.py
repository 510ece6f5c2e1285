"""The chaos run's servers and processes, and the faults done to them.

The broker and PostgreSQL are the run's own (``make chaos`` starts them under
``.state/chaos`` on ports of their own with ``deploy/local``'s scripts): killing them never
touches a developer's stack. A kill is SIGKILL of the whole server (PostgreSQL's postmaster
and every backend, as a crashed machine would leave it); a restart is the same script's
``start``. Ebbtide's own processes are kept running by :class:`Supervisor`, as systemd or
Kubernetes would: one that exits is started again and counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from ebbtide.runtime.settings import Settings
from ebbtide.tools import processes

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "local"


class ChaosError(RuntimeError):
    pass


def _read_pid(path: Path, line: int = 0) -> int | None:
    try:
        text = path.read_text().splitlines()[line].strip()
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: only its exit status is left)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill(what: str, pid: int | None, tree: bool = False) -> None:
    """SIGKILL ``pid`` (and its children with ``tree``) and wait until they are gone: a kill
    that hit nothing is an error of the run, not a fault survived."""
    if pid is None or not _alive(pid):
        raise ChaosError(f"the {what} is not running (pid {pid}): nothing to kill")
    victims = [pid, *(_children(pid) if tree else [])]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(_alive(v) for v in victims):
        if time.monotonic() > deadline:
            raise ChaosError(f"the {what} (pid {pid}) outlived SIGKILL for 15 s")
        time.sleep(0.05)  # polling interval of a bounded wait for the processes to go


@dataclass
class Servers:
    """The run's broker and PostgreSQL, under ``state_dir`` (the EBBTIDE_STATE_DIR of the
    scripts, which ``make chaos`` sets)."""

    state_dir: Path

    def _script(self, name: str, command: str) -> None:
        done = subprocess.run(
            [str(DEPLOY / f"{name}.sh"), command], capture_output=True, text=True, timeout=240, check=False
        )
        if done.returncode != 0:
            raise ChaosError(f"{name}.sh {command} failed: {(done.stderr or done.stdout).strip()[-400:]}")

    def kill_broker(self) -> None:
        _kill("broker", _read_pid(self.state_dir / "kafka" / "kafka.pid"))

    def start_broker(self) -> None:
        self._script("kafka", "start")

    def kill_postgres(self) -> None:
        _kill(
            "PostgreSQL server", _read_pid(self.state_dir / "postgres" / "data" / "postmaster.pid"), tree=True
        )

    def start_postgres(self) -> None:
        self._script("postgres", "start")


@dataclass
class Spec:
    args: list[str]
    settings: Settings
    env: dict[str, str]
    metrics_port: int
    worker: bool = False


@dataclass
class Supervisor:
    """Ebbtide's processes of the run, each started again if it exits."""

    log_dir: Path
    specs: dict[str, Spec] = field(default_factory=dict)
    children: dict[str, processes.Child] = field(default_factory=dict)
    exits: Counter[str] = field(default_factory=Counter)  # exits nobody asked for
    kills: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, spec: Spec) -> None:
        self.specs[name] = spec
        self._start(name)

    def _start(self, name: str) -> None:
        spec = self.specs[name]
        self.children[name] = processes.start(
            name.replace(" ", "-"), spec.args, spec.settings, self.log_dir, env=spec.env
        )

    def kill(self, name: str) -> None:
        """SIGKILL, then start it again at once (as a supervisor would)."""
        self.children[name].kill()
        self.kills[name] += 1
        self._start(name)

    def remove(self, name: str) -> None:
        """SIGKILL and do not start it again (a worker taken away)."""
        self.children.pop(name).kill()
        self.specs.pop(name)
        self.kills[name] += 1

    def revive(self) -> list[str]:
        """Start again every process that exited on its own; their names."""
        dead = [name for name, child in self.children.items() if not child.alive()]
        for name in dead:
            self.exits[name] += 1
            self._start(name)
        return dead

    def workers(self) -> list[Spec]:
        return [spec for spec in self.specs.values() if spec.worker]

    def stop(self) -> None:
        for child in self.children.values():
            child.stop()

    def tail(self, name: str) -> str:
        return self.children[name].tail()


def second_worker(first: Settings, run_dir: Path) -> Settings:
    """A second worker of the same app: its own state directory, ports and instance id, the
    first's signing key and the keys it trusts (sinks', the clock's, the legal hold signers')."""
    return replace(
        first,
        state_dir=run_dir / "worker-2",
        certificate_key=first.signing_key,
        trusted_keys=first.trusted_keys_dir,
        hold_keys=",".join(str(path) for path in first.hold_public_keys),
        worker_metrics_port=processes.free_port(),
        worker_web_port=processes.free_port(),
        worker_instance_id="chaos-worker-2",
    )
