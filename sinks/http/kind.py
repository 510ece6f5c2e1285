"""The ``http`` kind: one process for the vendor stores, one thread per vendor of the vendors file."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.kind import Option, SinkGroup, SinkKind, one_process
from ebbtide.sinks.http.vendors import (
    DEFAULT_VENDORS,
    Vendor,
    VendorConfigError,
    load_vendors,
    select_vendors,
)
from ebbtide.streams.policy.stores import Store


def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    """The sinks of the vendors ``--stores`` names (comma-separated; default all) of ``--config``
    (default: the shipped vendors file); a vendor whose token is missing stops it before any runs."""
    from ebbtide.sinks.http.sink import HttpSink

    config, stores = getattr(args, "config", None), getattr(args, "stores", None)
    path = Path(config) if config else DEFAULT_VENDORS
    wanted = [s.strip() for s in (stores or "").split(",") if s.strip()]
    vendors = select_vendors(load_vendors(path), wanted, path)
    for vendor in vendors:
        vendor.auth_headers()  # a missing token is a config error, before anything starts
    sinks = [HttpSink(settings, vendor, stop=stop) for vendor in vendors]
    return SinkGroup(sinks, stop, label=", ".join(v.store for v in vendors))


def metrics_port(settings: Settings, args: argparse.Namespace) -> int:
    """``--metrics-port``, else ``EBBTIDE_HTTP_SINK_METRICS_PORT`` (9311, beside the other sinks'
    ``EBBTIDE_SINK_METRICS_PORT``; deploy/prometheus job ebbtide-sink-http)."""
    port = getattr(args, "metrics_port", None)
    return settings.http_sink_metrics_port if port is None else int(port)


def shipped_vendors() -> dict[str, Vendor]:
    """The shipped vendors file, as written (no URL overrides from the environment)."""
    return load_vendors(DEFAULT_VENDORS, environ={})


def covers(store: Store) -> list[str]:
    """The categories ``store`` holds that its vendor's entry does not let the sink delete."""
    try:
        vendor = shipped_vendors().get(store.id)
    except VendorConfigError as exc:
        return [str(exc)]
    if vendor is None:
        return [f"{store.id}: no vendor of that store in the vendors config"]
    return [
        f"{store.id}: the vendors config does not let it delete {holding.category}"
        for holding in store.holds
        if not vendor.holds(holding.category)
    ]


KIND = SinkKind(
    name="http",
    doc="the vendor stores, one thread per vendor of the vendors file: one REST call per command, "
    "retries with backoff, a circuit breaker, a dead letter on giving up",
    build=build,
    covers=covers,
    processes=one_process("vendor sinks", "http"),
    code="sinks/http/",
    options=(
        Option("--config", "vendors TOML (default: sinks/http/vendors.toml)", metavar="FILE"),
        Option("--stores", "comma-separated vendor store ids (default: every vendor)", metavar="A,B"),
        Option(
            "--metrics-port",
            "/metrics, /healthz and /readyz port (default EBBTIDE_HTTP_SINK_METRICS_PORT, 9311)",
            type=int,
            metavar="PORT",
        ),
    ),
    metrics_port=metrics_port,
    port_setting="--metrics-port or EBBTIDE_HTTP_SINK_METRICS_PORT",
)
