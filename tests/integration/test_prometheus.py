"""The Prometheus config and alert rules are valid, and the alerts fire when they should (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_scrape_config_and_its_rule_files_are_valid() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_fire_when_they_should_and_not_before() -> None:
    done = promtool("test", "rules", "ebbtide.rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_metric_passes_promtool_lint() -> None:
    from prometheus_client import generate_latest

    from ebbtide import metrics

    metrics.DLQ_MESSAGES.labels("events").inc(0)  # a labelled sample too, not only HELP and TYPE lines
    done = promtool("check", "metrics", stdin=generate_latest().decode())
    assert done.returncode == 0, done.stdout + done.stderr
