"""The ``keys`` kind: the key store's one process (store ``keys``, category ``key``), which
destroys a subject's data key when the worker orders it (key shredding)."""

from __future__ import annotations

import argparse
import threading

from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.kind import SinkGroup, SinkKind, one_process, one_store
from ebbtide.streams.engine.shredding import KEY_CATEGORY, KEY_STORE


def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    """The key store's sink on ``EBBTIDE_KEYS_DSN`` (else ``EBBTIDE_PG_DSN``)."""
    from ebbtide.sinks.base.loop import CommandSink
    from ebbtide.sinks.keys.executor import KeyShredder
    from ebbtide.sinks.keys.store import KeyStore

    keys = KeyStore(settings.require_keys_dsn())
    return SinkGroup([CommandSink(settings, KeyShredder(keys), stop=stop, keys=keys)], stop)


KIND = SinkKind(
    name="keys",
    doc="the key store: a command for a subject's data key destroys it (key shredding)",
    build=build,
    covers=one_store("keys", KEY_STORE, KEY_CATEGORY),
    processes=one_process("key store sink", "keys"),
    code="sinks/keys/",
    default_port=9316,
)

# Not a store of the store map (it holds no category of personal data, only the keys that seal
# them): the demo starts it beside the map's sinks.
PROCESS = {"key store sink": ["keys"]}
