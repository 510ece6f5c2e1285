"""The sinks' static group membership and the clock process's metrics (issue 11), without a broker."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ebbtide.runtime import metrics
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.loop import consumer_config


def test_a_sink_is_a_static_member_named_after_its_store_and_host_by_default() -> None:
    settings = Settings(session_timeout=30.0)
    customers, billing = consumer_config(settings, "customer_db"), consumer_config(settings, "billing_db")
    assert customers["group.instance.id"] == f"customer_db-{socket.gethostname()}"
    assert billing["group.instance.id"] != customers["group.instance.id"]  # two stores never share one
    assert customers["group.id"] == "ebbtide-sink-customer_db"
    assert customers["session.timeout.ms"] == 30_000


def test_the_instance_id_and_the_clock_port_are_settings() -> None:
    settings = Settings.from_env(
        {"EBBTIDE_SINK_INSTANCE_ID": "customer_db-b", "EBBTIDE_CLOCK_METRICS_PORT": "9400"}
    )
    assert consumer_config(settings, "customer_db")["group.instance.id"] == "customer_db-b"
    assert settings.clock_metrics_port == 9400
    assert Settings.from_env({}).clock_metrics_port == 9312  # the shipped scrape config's target


def test_the_clock_exports_its_ticks_and_process_start_and_the_worker_does_not() -> None:
    def samples() -> dict[str, float]:
        text = generate_latest(metrics.CLOCK_REGISTRY).decode()
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    metrics.clock_ticked(datetime(2031, 1, 1, tzinfo=UTC))
    before = samples()["ebbtide_clock_ticks_published_total"]
    metrics.clock_ticked(datetime(2031, 1, 2, tzinfo=UTC))
    after = samples()
    assert after["ebbtide_clock_ticks_published_total"] == before + 1
    assert after["ebbtide_clock_last_tick_seconds"] == datetime(2031, 1, 2, tzinfo=UTC).timestamp()
    assert after["process_start_time_seconds"] > 0  # what EbbtideProcessRestarting watches
    assert "ebbtide_clock_time_seconds" not in after  # the worker's metrics are not the clock's
    assert "ebbtide_clock_ticks_published" not in generate_latest(REGISTRY).decode()
