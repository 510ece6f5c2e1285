"""The worker's processor sends, byte for byte, what the golden run recorded (tests/golden)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ebbtide.streams.worker.routing import Out
from tests.golden.run import Output, Run, first_difference, read, replay


@pytest.fixture(scope="module")
def run() -> Run:
    return read()


def checker(run: Run) -> Any:
    """An ``on_batch`` that fails at the first batch whose outputs differ from the recording."""

    def check(phase: int, batch: int, sent: list[Out]) -> None:
        recorded = run.phases[phase].batches[batch]
        problem = first_difference(recorded.outputs, [Output.of(o) for o in sent])
        if problem is not None:
            first = recorded.inputs[0]
            where = f"{len(recorded.inputs)} inputs from {first.source}/{first.partition}/{first.offset}"
            pytest.fail(f"phase {phase}, batch {batch} ({where}): {problem}")

    return check


def stored(table: dict[str, Any]) -> dict[str, Any]:
    """The table's values as plain JSON data."""
    return {key: json.loads(json.dumps(value)) for key, value in table.items()}


def test_the_worker_sends_byte_for_byte_what_the_golden_run_recorded(run: Run) -> None:
    table: dict[str, Any] = {}
    replay(run, table, on_batch=checker(run))
    recorded = {key: json.loads(value) for key, value in run.phases[-1].table.items()}
    assert stored(table) == recorded


def test_a_worker_restarted_on_the_recorded_table_goes_on_as_recorded(run: Run) -> None:
    table = {key: json.loads(value) for key, value in run.phases[0].table.items()}
    replay(run, table, iter(range(1, len(run.phases))), on_batch=checker(run))
    recorded = {key: json.loads(value) for key, value in run.phases[-1].table.items()}
    assert stored(table) == recorded
