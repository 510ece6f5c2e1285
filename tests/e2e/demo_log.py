"""One run of the demo (a small world, the same code as `make demo`) whose topics the auditors'
tests read: replay, export, verify. Run once per session, on first use; its topics are deleted at
the end of the session.

``tests/e2e/conftest.py`` registers the fixture: ask for ``demo_log`` (typed :class:`DemoLog`).
Do not import the fixture into a test module: each module importing it would get its own
definition, and pytest would run the demo once per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from ebbtide.demo import run as demo_run
from ebbtide.demo import scenario as demo_scenario
from ebbtide.runtime.settings import Settings

CUSTOMERS = 30
SEED = 20261128
UNTIL = datetime(2032, 1, 1, tzinfo=UTC)
STEP_DAYS = 28


@dataclass(frozen=True)
class DemoLog:
    """A finished demo run: its settings (topic prefix, app id, state dir with its keys) and
    the synthetic world it published."""

    settings: Settings
    scenario: demo_scenario.Scenario


@pytest.fixture(scope="session")
def demo_log(stack: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLog]:
    """The demo, run to its end on the local stack with its own checks passing."""
    from tests.support import drop_topics, scratch_database, unique_settings

    got: dict[str, Any] = {}
    build, start = demo_scenario.build, demo_run._start

    def building(customers: int, seed: int) -> demo_scenario.Scenario:
        got["scenario"] = build(customers, seed)
        return got["scenario"]

    def starting(*args: Any) -> demo_run.Running:
        got["running"] = start(*args)
        return got["running"]

    with scratch_database(stack[1]) as dsn, pytest.MonkeyPatch.context() as patch:
        base = unique_settings(stack[0], tmp_path_factory.mktemp("demo-log"), dsn)
        patch.setattr(demo_scenario, "build", building)
        patch.setattr(demo_run, "_start", starting)
        patch.setenv("COLUMNS", "400")
        code = demo_run.run_demo(base, customers=CUSTOMERS, seed=SEED, until=UNTIL, step_days=STEP_DAYS)
        patch.undo()
        running = got.get("running")
        assert running is not None and code == 0, "the demo run the audit tests read failed its checks"
        try:
            yield DemoLog(settings=running.settings, scenario=got["scenario"])
        finally:
            drop_topics(running.settings)
