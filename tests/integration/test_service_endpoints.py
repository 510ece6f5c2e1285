"""/healthz and /readyz of a sink and of the worker, and their JSON logs, on the real broker and
PostgreSQL: a sink is not ready while it cannot reach the broker and ready once its group gives
it its partitions; the worker is ready once its partitions are assigned and its table recovered."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ebbtide.runtime.logging import KEYS
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.logstore.partitions import STORE
from ebbtide.tools import processes
from tests.support import make_topics, wait_until


def get(port: int, path: str) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON body) of ``path``, or None while nothing answers on ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def ready_answer(port: int) -> tuple[int, dict[str, Any]] | None:
    got = get(port, "/readyz")
    return got if got is not None and got[0] == 200 else None


class Gate:
    """A TCP forwarder to the broker's bootstrap address that refuses connections until
    :meth:`open` (a broker out of reach, then back); the broker's other addresses are direct."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.port = processes.free_port()
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            target.close()

    def close(self) -> None:
        for each in self.sockets:
            each.close()


@pytest.fixture
def gate(settings: Settings) -> Iterator[Gate]:
    made = Gate(settings.kafka_bootstrap)
    yield made
    made.close()


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a child's output (stdout and stderr) as JSON; fails on a line that is not."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    for entry in parsed:
        assert {"time", "level", "logger", "process", "message"} <= set(entry) <= set(KEYS), entry
    return parsed


def test_a_sink_is_ready_once_it_reaches_its_store_and_the_broker(
    settings: Settings, gate: Gate, tmp_path: Path
) -> None:
    make_topics(settings, [STORE])
    port = processes.free_port()
    sink = replace(
        settings, kafka_bootstrap=f"127.0.0.1:{gate.port}", sink_metrics_port=port, log_format="json"
    )
    child = processes.start("log_store", ["sink", "logstore", "--loglevel", "INFO"], sink, tmp_path)
    try:
        first = wait_until(lambda: get(port, "/readyz"), 60, "the sink's /readyz")
        assert first[0] == 503, first
        assert first[1]["waiting"] == {
            f"broker {settings.topic_prefix}.commands.{STORE}": "not connected to the broker, or no "
            "partitions assigned yet"
        }
        assert first[1]["checks"] == {f"store {STORE}": "ok"}  # its database answered at start
        assert get(port, "/healthz") == (200, {"status": "alive"})
        gate.open()
        ready = wait_until(lambda: ready_answer(port), 60, "the sink ready")
        assert ready[1]["checks"][f"broker {settings.topic_prefix}.commands.{STORE}"] == (
            "partitions assigned: 0,1,2,3"
        )
        assert get(port, "/healthz") == (200, {"status": "alive"})
        assert child.stop() == 0
    finally:
        child.kill()
    logged = json_lines(child.log)
    assert {entry["process"] for entry in logged} == {"sink-logstore"}
    assert any("/readyz" in entry["message"] for entry in logged)  # its own start line


def test_the_worker_is_ready_once_its_partitions_are_recovered(settings: Settings, tmp_path: Path) -> None:
    worker = replace(settings, log_format="json")
    port = settings.worker_metrics_port
    child = processes.start("worker", ["worker", "--loglevel", "INFO"], worker, tmp_path)
    try:
        ready = wait_until(lambda: ready_answer(port), 90, "the worker ready")
        assert ready[1]["checks"] == {"partitions": "assigned and recovered: 0,1,2,3"}
        assert get(port, "/healthz") == (200, {"status": "alive"})
        assert child.stop() == 0
    finally:
        child.kill()
    logged = json_lines(child.log)
    assert {entry["process"] for entry in logged} == {"worker"}
    loggers = {entry["logger"] for entry in logged}
    assert any(name.startswith(("faust.", "mode.")) for name in loggers), loggers  # Faust's own
    assert "ebbtide.bootstrap" in loggers  # ours, before Faust's worker took over logging
