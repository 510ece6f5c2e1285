"""Start and stop Ebbtide's own processes (worker, sink) as children, and read their metrics."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ebbtide.runtime.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings: every field of ``Settings``
    as its ``EBBTIDE_<NAME>`` variable (one that is None is unset, so the child takes the same
    default rather than whatever this process's environment says)."""
    env = dict(os.environ)
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            env.pop(f"EBBTIDE_{f.name.upper()}", None)
        else:
            env[f"EBBTIDE_{f.name.upper()}"] = str(value)
    return env


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout`` seconds."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, for restart tests."""
        if self.alive():
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start(
    name: str, args: list[str], settings: Settings, log_dir: Path, env: dict[str, str] | None = None
) -> Child:
    """Run ``python -m ebbtide ARGS`` with ``settings`` (and ``env`` on top), output to
    ``log_dir/NAME.log``. The worker's signing key is made first if missing (as the worker would
    on its first start), so a sink started beside it finds the public key it verifies commands
    with; so is the default legal hold key pair of a worker (``holds.key``, for the publisher
    beside it to sign holds with)."""
    from ebbtide.runtime.keys import read_or_make_key

    if settings.worker_public_key is None:
        read_or_make_key(settings.signing_key, "certificate signing key")
    if args[:1] == ["worker"] and settings.hold_keys is None:  # trusted explicitly, as on the wall clock
        read_or_make_key(settings.local_hold_signing_key, "legal hold signing key")
        settings = replace(settings, hold_keys=str(settings.local_hold_signing_key.with_suffix(".pub")))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ebbtide", *args],
            env={**settings_env(settings), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Child(name, process, log)


# Below the kernel's ephemeral range (32768-60999 on Linux), from which every outgoing connection
# (a Kafka client's, say) takes its local port: a port picked there may be taken by one of them
# before the child binds it, which failed a test run once.
_PORTS = (20000, 32000)
_HANDED_OUT: set[int] = set()  # a port given to one child is not given to the next before it binds


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a child's metrics), outside the ephemeral range,
    and not one this process handed out before (its child may not have bound it yet)."""
    for _ in range(200):
        port = random.randrange(*_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as probe:  # a crowded range: any free port
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(port: int, timeout: float = 2.0) -> Samples:
    """Samples of a process's /metrics: name -> labels -> value. Empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    return sum(
        value for key, value in samples.get(name, {}).items() if all((k, v) in key for k, v in labels.items())
    )
