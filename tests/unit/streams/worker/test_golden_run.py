"""The worker's processor sends, byte for byte, what the golden run recorded (tests/golden)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ebbtide.streams.engine import snapshot
from ebbtide.streams.worker import state_format, values
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


def stored(table: dict[str, bytes]) -> dict[str, Any]:
    """The table's values in the JSON form the golden run recorded (state format 0)."""
    return {
        key: snapshot.dump(state_format.decode(raw)) if key.startswith("s:") else values.decode(key, raw)
        for key, raw in table.items()
    }


def test_the_worker_sends_byte_for_byte_what_the_golden_run_recorded(run: Run) -> None:
    table: dict[str, bytes] = {}
    replay(run, table, on_batch=checker(run))
    recorded = {key: json.loads(value) for key, value in run.phases[-1].table.items()}
    assert all(raw[0] == state_format.VERSION for raw in table.values())
    assert stored(table) == recorded


def test_a_worker_restarted_on_states_of_the_old_format_goes_on_as_recorded(run: Run) -> None:
    """The table of the first phase as the old worker wrote it (JSON): the next phase makes the
    same decisions from it, and writes back in the new format every state it saves."""
    table = dict(run.phases[0].table)
    assert all(raw.startswith(b"{") for raw in table.values())
    replay(run, table, iter(range(1, len(run.phases))), on_batch=checker(run))
    recorded = {key: json.loads(value) for key, value in run.phases[-1].table.items()}
    assert stored(table) == recorded
    rewritten = [key for key, raw in table.items() if raw[0] == state_format.VERSION]
    assert len(rewritten) == len(table)  # each state saved again (all judged under the new policy)
