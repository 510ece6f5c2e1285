"""The output-matched passthrough writes exactly the records a worker wrote (to the same
partitions, with their keys, values and headers), and the bench reads them back byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.matched import passthrough
from bench.outputs import Record, Recording, Written, record
from tests.support import drop_topics, servers, unique_settings

pytestmark = pytest.mark.integration

EVENTS = 40


def _recording() -> Recording:
    outputs = [
        Record("decisions", ".decisions", n % 4, n, b"cust-%d" % n, b"d" * (100 + n), (("seq", b"%d" % n),))
        for n in range(25)
    ]
    commands = ".commands.customer_db"
    outputs += [Record("commands", commands, n % 2, 100 + n, b"copy-%d" % n, b"c" * 300) for n in range(5)]
    changelog = [
        Record("changelog", "-state-changelog", n % 4, 200 + n, f"s:{n % 4}:cust-{n}".encode(), b"s" * 2000)
        for n in range(10)
    ]
    written = Written(EVENTS)
    for one in outputs + changelog:
        written.add(one)
    partitions = {".decisions": 4, ".commands.customer_db": 4, "-state-changelog": 4}
    return Recording(written, outputs, changelog, partitions)


def _as_written(records: list[Record]) -> list[tuple[object, ...]]:
    return sorted((r.suffix, r.partition, r.key, r.value, r.headers) for r in records)


def test_the_passthrough_writes_the_workers_records_and_they_read_back_byte_for_byte(tmp_path: Path) -> None:
    bootstrap, _ = servers()
    settings = unique_settings(bootstrap, tmp_path)
    recorded = _recording()
    try:
        run = passthrough(settings, [(b"cust-%d" % n, b"event") for n in range(EVENTS)], recorded)
        back = record(settings, EVENTS, keep=True)
    finally:
        drop_topics(settings)
    assert run.events == EVENTS and run.seconds > 0
    assert _as_written(back.outputs) == _as_written(recorded.outputs)
    assert _as_written(back.changelog) == _as_written(recorded.changelog)
    assert back.written.bytes == recorded.written.bytes and back.written.records == recorded.written.records
