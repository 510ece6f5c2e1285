"""The Prometheus config and alert rules are valid, and the alerts fire when they should (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from ebbtide.runtime.settings import Settings

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

    from ebbtide.runtime import metrics

    metrics.DLQ_MESSAGES.labels("events", "invalid").inc(0)  # a labelled sample too, not only HELP and TYPE
    done = promtool("check", "metrics", stdin=generate_latest().decode())
    assert done.returncode == 0, done.stdout + done.stderr
    done = promtool("check", "metrics", stdin=generate_latest(metrics.CLOCK_REGISTRY).decode())  # the clock's
    assert done.returncode == 0, done.stdout + done.stderr


# A real Prometheus (the prometheus package's server) scrapes a real `ebbtide clock wall`.


def test_the_shipped_config_scrapes_the_clock_on_its_default_port() -> None:
    shipped = (PROMETHEUS / "prometheus.yml").read_text()
    job = shipped[shipped.index("job_name: ebbtide-clock") :]
    assert f'targets: ["127.0.0.1:{Settings().clock_metrics_port}"]' in job.split("job_name:")[1]


class RealPrometheus:
    """``prometheus`` on a free port with the shipped alert rules, scraping ``targets`` (job ->
    127.0.0.1 port) every second; its HTTP API for queries."""

    def __init__(self, targets: dict[str, int], workdir: Path) -> None:
        import json

        from ebbtide.tools.processes import free_port

        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make test` installs Debian's prometheus package"
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(  # JSON is YAML
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(PROMETHEUS / "ebbtide.rules.yml")],
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                        for job, port in targets.items()
                    ],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def get(self, path: str) -> Any:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
        try:
            self.get("/api/v1/status/buildinfo")
        except OSError:
            return False
        return True

    def query(self, expr: str) -> dict[str, float]:
        """An instant query: the value of each series, keyed by its job."""
        from urllib.parse import quote

        answer = self.get(f"/api/v1/query?query={quote(expr)}")
        assert answer["status"] == "success", answer
        return {r["metric"].get("job", ""): float(r["value"][1]) for r in answer["data"]["result"]}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_a_real_prometheus_scrapes_the_clock_and_alerts_when_it_keeps_restarting(
    settings: Settings, tmp_path: Path
) -> None:
    import time

    from ebbtide.tools import processes
    from tests.support import wait_until

    port = processes.free_port()
    prometheus = RealPrometheus({"ebbtide-clock": port}, tmp_path)
    clock_args = ["clock", "wall", "--interval", "1", "--metrics-port", str(port)]
    clock = processes.start("clock", clock_args, settings, tmp_path / "logs")
    try:
        wait_until(prometheus.ready, 60, "prometheus to answer")
        started = time.time()
        # The clock's metrics, as Prometheus stores them: ticks counted, the time of the last one.
        ticks = wait_until(
            lambda: prometheus.query('ebbtide_clock_ticks_published_total{job="ebbtide-clock"} >= 2'),
            60,
            f"two ticks scraped from the clock (its log:\n{clock.tail()})",
        )
        assert set(ticks) == {"ebbtide-clock"}
        last = prometheus.query('ebbtide_clock_last_tick_seconds{job="ebbtide-clock"}')["ebbtide-clock"]
        assert started - 30 < last <= time.time()
        assert prometheus.query('up{job="ebbtide-clock"}') == {"ebbtide-clock": 1.0}
        assert prometheus.query('process_start_time_seconds{job="ebbtide-clock"}')
        # Nothing fires for a clock that runs.
        assert not prometheus.query('ALERTS{alertname="EbbtideProcessRestarting"}')

        # A crash loop: killed and started again three times, each start scraped.
        seen = prometheus.query('process_start_time_seconds{job="ebbtide-clock"}')["ebbtide-clock"]
        for restart in range(3):
            if restart == 2:  # two restarts are not a crash loop
                assert not prometheus.query('ALERTS{alertname="EbbtideProcessRestarting"}')
            clock.kill()
            clock = processes.start("clock", clock_args, settings, tmp_path / "logs")
            before = seen

            def restarted(before: float = before) -> float | None:
                now = prometheus.query('process_start_time_seconds{job="ebbtide-clock"}')
                return now["ebbtide-clock"] if now.get("ebbtide-clock", before) != before else None

            seen = wait_until(restarted, 60, f"restart {restart + 1} of the clock scraped")
        firing = wait_until(
            lambda: prometheus.query('ALERTS{alertname="EbbtideProcessRestarting",alertstate="firing"}'),
            30,
            "EbbtideProcessRestarting firing",
        )
        assert set(firing) == {"ebbtide-clock"}
        # Every shipped rule evaluated against the real series without an error.
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
        assert not broken, broken
        assert any(r["name"] == "EbbtideClockStalled" for g in groups for r in g["rules"])
    finally:
        clock.stop()
        prometheus.stop()
