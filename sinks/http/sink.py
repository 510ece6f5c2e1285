"""The HTTP vendor sinks: one :class:`~sinks.base.loop.CommandSink` per vendor store, each driving
an :class:`~sinks.http.executor.HttpExecutor`; ``ebbtide sink http`` runs them in threads of one
process (:class:`~sinks.base.kind.SinkGroup`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.loop import CommandSink
from ebbtide.sinks.http.executor import HttpExecutor
from ebbtide.sinks.http.vendors import Vendor

HTTP_BATCH = 50  # commands per poll: one HTTP call each, so smaller batches than the database sinks


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
