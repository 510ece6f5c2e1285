"""The ``backups`` kind: the backup catalogue's one process (store ``hosting_backups``, category
``hosted``)."""

from __future__ import annotations

import argparse
import threading

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.backups import CATEGORY, STORE
from ebbtide.sinks.base.kind import SinkGroup, SinkKind, one_process, one_store


def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    """The backups' sink on ``EBBTIDE_PG_DSN`` (its catalogue made if missing)."""
    from ebbtide.sinks.backups.executor import BackupsExecutor
    from ebbtide.sinks.base.loop import CommandSink

    executor = BackupsExecutor(settings.require_pg_dsn(), stop=stop)
    return SinkGroup([CommandSink(settings, executor, stop=stop)], stop)


KIND = SinkKind(
    name="backups",
    doc="immutable backups: a record held in them is answered EXPIRES (when the last copy expires) "
    "and put on the restore suppression list",
    build=build,
    covers=one_store("backups", STORE, CATEGORY),
    processes=one_process("backups sink", "backups"),
    code="sinks/backups/",
    default_port=9315,
)
