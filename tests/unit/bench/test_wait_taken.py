"""A worker that stops taking events (one neither applied nor dead-lettered) fails the benchmark
with what it took, instead of hanging on a count that never comes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from bench.harness import wait_taken
from ebbtide.tools.processes import Child, free_port

pytestmark = pytest.mark.unit


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Child, int, Counter, Counter]]:
    """A live child process, and a metrics page with the worker's two counters."""
    registry = CollectorRegistry()
    consumed = Counter("ebbtide_events_consumed", "", ["type"], registry=registry)
    dead = Counter("ebbtide_dlq_messages", "", ["source"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    log = tmp_path / "worker.log"
    log.write_text("last line of the log\n")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield Child("worker", process, log), port, consumed, dead
    finally:
        process.kill()
        process.wait()
        server.shutdown()
        thread.join()


def test_events_applied_or_dead_lettered_all_count(worker: tuple[Child, int, Counter, Counter]) -> None:
    child, port, consumed, dead = worker
    consumed.labels(type="CustomerRegistered").inc(7)
    dead.labels(source="events").inc(3)
    dead.labels(source="receipts").inc(5)  # not an event
    _, taken = wait_taken([(child, port)], 10, poll=0.01)
    assert taken == 10


def test_a_stalled_worker_fails_with_its_counts_and_log(worker: tuple[Child, int, Counter, Counter]) -> None:
    child, port, consumed, dead = worker
    consumed.labels(type="CustomerRegistered").inc(7)
    dead.labels(source="events").inc(2)
    with pytest.raises(TimeoutError) as failed:
        wait_taken([(child, port)], 10, poll=0.01, stall=0.3)
    message = str(failed.value)
    assert "took 9 of 10 events" in message and "7 applied, 2 dead-lettered" in message
    assert "last line of the log" in message
