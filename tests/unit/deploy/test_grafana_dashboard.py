"""The committed Grafana dashboard is what its generator makes, and covers what issue 13 asks
operations to see. (tests/integration/test_prometheus_run.py runs its queries.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

GRAFANA = Path(__file__).resolve().parents[3] / "deploy" / "grafana"


def dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ebbtide_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboard_is_what_its_generator_makes() -> None:
    committed = (GRAFANA / "ebbtide.json").read_text()
    assert committed == dashboard_module().render(), (
        "run: python deploy/grafana/dashboard.py > deploy/grafana/ebbtide.json"
    )


def test_the_dashboard_shows_what_operations_needs() -> None:
    board = json.loads((GRAFANA / "ebbtide.json").read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for metric in (
        "ebbtide_events_consumed_total",
        "ebbtide_ticks_deferred",
        "ebbtide_records_waiting",
        'ebbtide_decisions_total{kind="DELETION_ORDERED"}',
        "ebbtide_commands_sent_total",
        "ebbtide_deletions_overdue",
        "ebbtide_receipts_total",
        "ebbtide_certificates_total",
        "ebbtide_dlq_messages_total",
        "ebbtide_duties_open",
        "ebbtide_duties_overdue_total",
        "ebbtide_records_held",
    ):
        assert metric in exprs, metric
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)  # the one chosen at import
    assert len({p["title"] for p in panels}) == len(panels)
