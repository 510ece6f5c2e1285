"""A kind of sink as the registry (:mod:`sinks.registry`) lists it, and the process it runs.

A kind is one package under ``sinks/`` plus one line in the registry. Its :class:`SinkKind` says
how to build its process from the settings and the ``ebbtide sink <kind>`` arguments, which
options that command takes, whether its configuration covers a store of the store map, and which
sink processes serve the stores of that kind (for the demo and the chaos run).
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ebbtide.runtime.settings import Settings
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.stores import Store

if TYPE_CHECKING:  # the loop imports the Kafka client: not needed to list the kinds
    from ebbtide.sinks.base.loop import CommandSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Option:
    """One option of ``ebbtide sink <kind>``: ``--flag VALUE``, stored as ``args.<flag>``."""

    flag: str  # e.g. "--map"
    help: str
    type: Callable[[str], Any] = str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class SinkGroup:
    """The command sinks of one process: one sink is run in the calling thread; several run in a
    thread each, and the first to fail stops the others."""

    def __init__(self, sinks: Sequence[CommandSink], stop: threading.Event, label: str | None = None) -> None:
        self.sinks = list(sinks)
        self.stop = stop
        self.label = label or "store " + ", ".join(s.store for s in self.sinks)

    def run(self) -> int:
        """Run until ``stop`` is set: 0 on a clean stop, 1 if one of several sinks failed (one
        sink alone raises what it raised)."""
        if len(self.sinks) == 1:
            self.sinks[0].run()
            return 0
        failed: list[str] = []
        from confluent_kafka import KafkaException  # only a running group needs the client

        def run(sink: CommandSink) -> None:
            try:
                sink.run()
            except KafkaException as exc:  # its consumer failed for good (e.g. fenced): one line
                error = exc.args[0] if exc.args else exc
                log.error(
                    "sink for %s: its Kafka consumer failed (%s); stopping the others", sink.store, error
                )
                failed.append(sink.store)
                self.stop.set()
            except Exception:
                log.exception("sink for %s failed; stopping the others", sink.store)
                failed.append(sink.store)
                self.stop.set()

        threads = [threading.Thread(target=run, args=(s,), name=f"sink-{s.store}") for s in self.sinks]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # short joins: the main thread must stay free for SIGTERM/SIGINT
        return 1 if failed else 0


Build = Callable[[Settings, argparse.Namespace, threading.Event], SinkGroup]


def settings_port(settings: Settings, args: argparse.Namespace) -> int | None:
    """The /metrics port of a sink process by default: ``EBBTIDE_SINK_METRICS_PORT`` (None when
    unset: the kind's own default port)."""
    return settings.sink_metrics_port


def no_refs(policy: Policy, store: Store) -> list[str]:
    """A kind that announces no records of its own can leave none undeletable."""
    return []


@dataclass(frozen=True)
class SinkKind:
    """One kind of sink: the ``kind`` of the store map's stores it serves, and ``ebbtide sink <name>``.

    - ``build``: the process of ``ebbtide sink <name>`` from the settings and its arguments (it
      raises :class:`~sinks.base.errors.SinkConfigError` or
      :class:`~sinks.base.errors.SinkSetupError` for a config or database that cannot be used);
    - ``options``: the options that command takes, besides ``--loglevel``;
    - ``covers``: what a store of the store map of this kind holds that the kind's shipped
      configuration cannot delete, in words (``[]``: covered);
    - ``processes``: the sink processes that serve these stores, name -> ``ebbtide sink``
      arguments (the demo and the chaos run start them);
    - ``ref_problems``: records the kind announces (``ebbtide backfill``) that the policy could
      never delete, in words;
    - ``metrics_port``: the port the settings or options choose for /metrics, /healthz and
      /readyz (None: ``default_port``, each kind its own so that one host can run one process of
      every kind); ``port_setting`` names the setting (or option) that chooses it, for the error
      when it is taken;
    - ``code``: the package, for the docs' table of kinds.
    """

    name: str
    doc: str
    build: Build
    covers: Callable[[Store], list[str]]
    processes: Callable[[Sequence[Store]], dict[str, list[str]]]
    code: str
    options: tuple[Option, ...] = ()
    ref_problems: Callable[[Policy, Store], list[str]] = no_refs
    metrics_port: Callable[[Settings, argparse.Namespace], int | None] = settings_port
    port_setting: str = "EBBTIDE_SINK_METRICS_PORT"
    default_port: int = 9309

    def port(self, settings: Settings, args: argparse.Namespace) -> int:
        """Where this kind's process serves /metrics, /healthz and /readyz."""
        chosen = self.metrics_port(settings, args)
        return self.default_port if chosen is None else chosen

    def usage(self) -> str:
        """``ebbtide sink <name> [--option VALUE] ...``"""
        shown = " ".join(f"[{o.flag} {o.metavar or o.dest.upper()}]" for o in self.options)
        return f"ebbtide sink {self.name}" + (f" {shown}" if shown else "")


def one_store(kind: str, store_id: str, category: str) -> Callable[[Store], list[str]]:
    """``covers`` of a kind that serves one fixed store and category (the log store, backups)."""

    def covers(store: Store) -> list[str]:
        if store.id != store_id or [h.category for h in store.holds] != [category]:
            return [f"{store.id}: the {kind} sink answers store {store_id}, category {category} only"]
        return []

    return covers


def one_process(title: str, *args: str) -> Callable[[Sequence[Store]], dict[str, list[str]]]:
    """``processes`` of a kind whose one process serves all its stores: ``{title: args}``."""

    def processes(stores: Sequence[Store]) -> dict[str, list[str]]:
        return {title: list(args)} if stores else {}

    return processes
