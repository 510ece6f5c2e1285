"""The HTTP vendor sinks: one :class:`~sinks.base.loop.CommandSink` per vendor store, each driving
an :class:`~sinks.http.executor.HttpExecutor`, in threads of one process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ebbtide.runtime import metrics
from ebbtide.runtime.settings import Settings
from sinks.base.loop import CommandSink
from sinks.http.executor import HttpExecutor
from sinks.http.vendors import DEFAULT_VENDORS, Vendor, VendorConfigError, load_vendors

log = logging.getLogger(__name__)

HTTP_BATCH = 50  # commands per poll: one HTTP call each, so smaller batches than the database sinks
HTTP_METRICS_PORT = 9311  # beside the PostgreSQL sink's 9309 (deploy/prometheus job ebbtide-sink-http)


class HttpSink(CommandSink):
    """The sink of one vendor store: :class:`~sinks.base.loop.CommandSink` driving an
    :class:`~sinks.http.executor.HttpExecutor`."""

    def __init__(
        self,
        settings: Settings,
        vendor: Vendor,
        stop: threading.Event | None = None,
        on_batch: Callable[[int], None] | None = None,
        batch_size: int = HTTP_BATCH,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        stop = stop or threading.Event()
        self.vendor = vendor
        super().__init__(
            settings, HttpExecutor(vendor, stop=stop, environ=environ), stop, on_batch, batch_size
        )


def select_vendors(vendors: Mapping[str, Vendor], stores: Sequence[str] | None, source: Path) -> list[Vendor]:
    """The vendors of ``stores`` (all when None or empty), in that order; unknown ids are an error."""
    if not stores:
        return list(vendors.values())
    unknown = [s for s in stores if s not in vendors]
    if unknown:
        raise VendorConfigError(
            f"{source}: no vendor for store(s) {', '.join(unknown)}; known: {', '.join(vendors)}"
        )
    return [vendors[s] for s in dict.fromkeys(stores)]


def run_sinks(settings: Settings, vendors: Sequence[Vendor], stop: threading.Event) -> int:
    """One :class:`HttpSink` thread per vendor until ``stop`` is set or a sink fails (then all stop).
    0 on a clean stop, 1 if a sink failed."""
    sinks = [HttpSink(settings, vendor, stop=stop) for vendor in vendors]  # tokens checked before any runs
    failed: list[str] = []

    def run(sink: HttpSink) -> None:
        try:
            sink.run()
        except Exception:
            log.exception("http sink for %s failed; stopping the others", sink.store)
            failed.append(sink.store)
            stop.set()

    threads = [threading.Thread(target=run, args=(s,), name=f"sink-{s.store}") for s in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short joins: the main thread must stay free for SIGTERM/SIGINT
    return 1 if failed else 0


def run_cli(
    settings: Settings, config: str | None, stores: str | None, metrics_port: int | None, loglevel: str
) -> int:
    """``ebbtide sink http``: the vendor sinks of ``stores`` (comma-separated; default all) in one process."""
    import signal
    import sys

    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = Path(config) if config else DEFAULT_VENDORS
    try:
        wanted = [s.strip() for s in (stores or "").split(",") if s.strip()]
        vendors = select_vendors(load_vendors(path), wanted, path)
        for vendor in vendors:
            vendor.auth_headers()  # a missing token is a config error, before anything starts
    except VendorConfigError as exc:
        print(f"ebbtide sink http: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = HTTP_METRICS_PORT if metrics_port is None else metrics_port
    metrics.serve(port)
    logging.getLogger(__name__).warning(
        "http sink for %s: metrics on 127.0.0.1:%d", ", ".join(v.store for v in vendors), port
    )
    return run_sinks(settings, vendors, stop)
