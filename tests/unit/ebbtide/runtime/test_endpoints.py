"""Every process's /metrics, /healthz and /readyz (ebbtide.runtime.endpoints): served on the
configured address and port, refused in one line naming the setting when the port is taken.
Real sockets on loopback; no broker."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

from ebbtide import bootstrap
from ebbtide.cli import main
from ebbtide.runtime import endpoints
from ebbtide.runtime.endpoints import CannotServe, Readiness, check_free, client_host, serve
from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.sinks import registry
from ebbtide.sinks.base.kind import SinkGroup, SinkKind, one_process, one_store

ROOT = Path(__file__).resolve().parents[4]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def taken() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_healthz_readyz_and_metrics_share_one_port() -> None:
    registry_, readiness = CollectorRegistry(), Readiness()
    Counter("unit_endpoint_things", "a metric of this test", registry=registry_).inc()
    readiness.ready("store s")
    readiness.waiting("broker t", "no partitions assigned yet")
    port = serve("127.0.0.1", 0, "EBBTIDE_TEST_PORT", registry_, readiness)

    status, body = get(port, "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "not ready",
        "waiting": {"broker t": "no partitions assigned yet"},
        "checks": {"store s": "ok"},
    }
    assert get(port, "/healthz") == (200, '{"status": "alive"}')
    readiness.ready("broker t", "partitions assigned: 0,1")
    status, body = get(port, "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ready",
        "checks": {"broker t": "partitions assigned: 0,1", "store s": "ok"},
    }
    status, body = get(port, "/metrics")
    assert status == 200 and "unit_endpoint_things_total 1.0" in body


def test_a_taken_port_is_one_line_naming_the_setting(taken: int) -> None:
    with pytest.raises(CannotServe) as refused:
        serve("127.0.0.1", taken, "EBBTIDE_WORKER_METRICS_PORT")
    message = str(refused.value)
    assert f"127.0.0.1:{taken}" in message and "EBBTIDE_WORKER_METRICS_PORT" in message
    assert "in use" in message and "\n" not in message
    with pytest.raises(
        CannotServe, match=f"127.0.0.1:{taken}.*EBBTIDE_WORKER_WEB_PORT.*or EBBTIDE_WORKER_WEB_HOST$"
    ):
        check_free("127.0.0.1", taken, "EBBTIDE_WORKER_WEB_PORT", "EBBTIDE_WORKER_WEB_HOST")
    with pytest.raises(CannotServe, match="EBBTIDE_HTTP_HOST"):  # an address this host does not have
        serve("192.0.2.1", 0, "EBBTIDE_SINK_METRICS_PORT")


def test_clients_reach_a_wildcard_bind_on_loopback() -> None:
    assert client_host("0.0.0.0") == "127.0.0.1"
    assert client_host("::") == "[::1]"
    assert client_host("10.0.0.5") == "10.0.0.5"
    assert client_host("fd00::5") == "[fd00::5]"


def test_host_ports_and_log_format_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings.from_env({})
    assert defaults.http_host == "127.0.0.1" and defaults.log_format == "text"
    assert defaults.sink_metrics_port is None  # each sink kind its own default
    unset = argparse.Namespace(metrics_port=None)
    ports = (
        defaults.worker_metrics_port,
        defaults.worker_web_port,
        defaults.clock_metrics_port,
        *(registry.get(kind).port(defaults, unset) for kind in registry.names()),
    )
    # each process kind its own (deploy/prometheus/prometheus.yml scrapes them there)
    assert ports == (9308, 9310, 9312, 9309, 9311, 9314, 9315, 9316)
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    scraped = {t for job in shipped["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {f"127.0.0.1:{port}" for port in ports if port != defaults.worker_web_port} <= scraped
    assert registry.get("logstore").port(Settings(sink_metrics_port=9400), unset) == 9400
    chosen = Settings.from_env(
        {
            "EBBTIDE_HTTP_HOST": "0.0.0.0",
            "EBBTIDE_HTTP_SINK_METRICS_PORT": "9411",
            "EBBTIDE_LOG_FORMAT": "json",
        }
    )
    assert (chosen.http_host, chosen.http_sink_metrics_port, chosen.log_format) == ("0.0.0.0", 9411, "json")
    http = registry.get("http")
    assert http.metrics_port(chosen, argparse.Namespace(metrics_port=None)) == 9411
    assert http.metrics_port(chosen, argparse.Namespace(metrics_port=9500)) == 9500
    with pytest.raises(SettingsError, match="EBBTIDE_LOG_FORMAT must be text or json"):
        Settings.from_env({"EBBTIDE_LOG_FORMAT": "xml"})


def test_the_worker_member_id_is_the_host_or_pod_name_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "ebbtide-worker-1")  # a StatefulSet's pod
    assert Settings().worker_member_id == "ebbtide-worker-1"
    assert Settings(worker_instance_id="w-2").worker_member_id == "w-2"
    monkeypatch.delenv("HOSTNAME")
    assert Settings().worker_member_id == socket.gethostname()


def _hold_keys_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(bootstrap, "partition_mismatch", lambda settings: None)
    return Settings(state_dir=tmp_path, clock_mode="replay", app_id="unit-endpoints")  # local hold keys


def test_the_worker_does_not_start_on_a_taken_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: int
) -> None:
    settings = _hold_keys_ready(tmp_path, monkeypatch)
    served: list[int] = []
    monkeypatch.setattr(endpoints, "serve", lambda host, port, setting, *more: served.append(port) or port)
    with pytest.raises(bootstrap.CannotStart, match=f"127.0.0.1:{taken}.*EBBTIDE_WORKER_WEB_PORT"):
        bootstrap.worker(replace(settings, worker_web_port=taken))
    assert served == []  # checked before anything is served
    monkeypatch.undo()
    settings = _hold_keys_ready(tmp_path, monkeypatch)
    with pytest.raises(bootstrap.CannotStart, match=f"127.0.0.1:{taken}.*EBBTIDE_WORKER_METRICS_PORT"):
        bootstrap.worker(replace(settings, worker_metrics_port=taken, worker_web_port=0))


def test_a_sink_does_not_start_on_a_taken_port(taken: int) -> None:
    def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
        return SinkGroup([], stop, label="store nothing")

    kind = SinkKind(
        name="unit_endpoints",
        doc="a kind for this test",
        build=build,
        covers=one_store("unit_endpoints", "nothing", "client"),
        processes=one_process("unit sink", "unit_endpoints"),
        code="tests/unit/ebbtide/runtime/test_endpoints.py",
    )
    registry.register(kind)
    try:
        with pytest.raises(bootstrap.CannotStart, match=f"127.0.0.1:{taken}.*EBBTIDE_SINK_METRICS_PORT"):
            bootstrap.sink(
                Settings(sink_metrics_port=taken), "unit_endpoints", argparse.Namespace(), threading.Event()
            )
    finally:
        registry.unregister("unit_endpoints")


@pytest.mark.usefixtures("root_logging")
def test_the_clock_on_a_taken_port_exits_2_with_one_line(
    taken: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EBBTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached
    assert main(["clock", "wall", "--count", "1", "--metrics-port", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ebbtide clock: cannot listen on 127.0.0.1:{taken}")
    assert "EBBTIDE_CLOCK_METRICS_PORT or --metrics-port" in err and "\n" not in err


def test_the_worker_is_not_ready_before_its_partitions_are_recovered(tmp_path: Path) -> None:
    from ebbtide.runtime.authenticity import HoldKeys
    from ebbtide.streams.worker.app import READY_CHECK, create_app

    settings = Settings(state_dir=tmp_path, topic_prefix="unit.ready", app_id="unit-ready")
    endpoints.READINESS.forget(READY_CHECK)
    create_app(settings, bootstrap.policy(settings), HoldKeys())
    ready, _, waiting = endpoints.READINESS.state()
    endpoints.READINESS.forget(READY_CHECK)
    # (the process's other checks, of sinks an earlier test ran in this process, are not its)
    assert not ready and waiting[READY_CHECK] == "no partitions assigned yet"
