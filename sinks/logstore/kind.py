"""The ``logstore`` kind: the log store's one process (store ``log_store``, category ``auto_collected``)."""

from __future__ import annotations

import argparse
import threading

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.kind import SinkGroup, SinkKind, one_process, one_store
from ebbtide.sinks.logstore import CATEGORY, STORE


def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    """The log store's sink on ``EBBTIDE_PG_DSN`` (its partitioned table made if missing)."""
    from ebbtide.sinks.base.loop import CommandSink
    from ebbtide.sinks.logstore.executor import LogStoreExecutor

    executor = LogStoreExecutor(settings.require_pg_dsn(), stop=stop)
    return SinkGroup([CommandSink(settings, executor, stop=stop)], stop)


KIND = SinkKind(
    name="logstore",
    doc="server logs partitioned by day: a command for a day of logs drops that day's partition",
    build=build,
    covers=one_store("logstore", STORE, CATEGORY),
    processes=one_process("log store sink", "logstore"),
    code="sinks/logstore/",
    default_port=9314,
)
