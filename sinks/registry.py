"""The kinds of sink: one line per kind, naming the module that defines its :class:`SinkKind`.

``ebbtide sink <kind>`` (its options and its run), the coverage check of ``ebbtide policy check``
(:mod:`sinks.coverage`), the demo, the chaos run and the docs' table of kinds iterate this
registry, and :mod:`ebbtide.bootstrap` builds a sink through it: a new kind is its package
(with a ``kind.py`` defining ``KIND``) plus one line in :data:`BUILT_IN`. A kind that is not
shipped (a test's, a deployment's own) is added at run time with :func:`register`.

Each kind module is imported when the registry is first asked; what a kind's process needs (the
Kafka client, the database driver) is imported when it is built.

``python -m ebbtide.sinks.registry`` prints the docs' table of kinds for the shipped store map.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from ebbtide.sinks.base.kind import SinkKind
from ebbtide.streams.policy.stores import Store, StoreMap

# kind name (the store map's `kind`, `ebbtide sink <kind>`) -> the module defining its KIND
BUILT_IN: dict[str, str] = {
    "postgres": "ebbtide.sinks.postgres.kind",
    "http": "ebbtide.sinks.http.kind",
    "logstore": "ebbtide.sinks.logstore.kind",
    "backups": "ebbtide.sinks.backups.kind",
    "keys": "ebbtide.sinks.keys.kind",  # the key store (no store of the map: the demo starts it)
}

_added: dict[str, SinkKind] = {}


class UnknownSinkKind(KeyError):
    """No kind of sink has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no sink kind {self.name!r} (known: {', '.join(names())})"


def register(kind: SinkKind) -> SinkKind:
    """Add a kind at run time (after the built-in ones); ValueError if its name is taken."""
    if kind.name in BUILT_IN or kind.name in _added:
        raise ValueError(f"sink kind {kind.name!r} is already registered")
    _added[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind added with :func:`register` (the built-in ones stay)."""
    _added.pop(name, None)


def names() -> tuple[str, ...]:
    """Every kind's name: the built-in ones in registry order, then the added ones."""
    return (*BUILT_IN, *_added)


def get(name: str) -> SinkKind:
    """The kind called ``name``; :class:`UnknownSinkKind` if there is none."""
    if name in _added:
        return _added[name]
    if name not in BUILT_IN:
        raise UnknownSinkKind(name)
    kind = importlib.import_module(BUILT_IN[name]).KIND
    if not isinstance(kind, SinkKind) or kind.name != name:
        raise TypeError(f"{BUILT_IN[name]}.KIND is not the SinkKind {name!r}")
    return kind


def kinds() -> tuple[SinkKind, ...]:
    """Every kind, in the order of :func:`names`."""
    return tuple(get(name) for name in names())


def sink_processes(stores: Iterable[Store]) -> dict[str, list[str]]:
    """The sink processes that serve ``stores``, name -> ``ebbtide sink`` arguments, kind by kind
    in registry order (stores of a kind no sink has are left out: the coverage check names them)."""
    listed = list(stores)
    processes: dict[str, list[str]] = {}
    for kind in kinds():
        served = [s for s in listed if s.kind == kind.name]
        if served:
            processes.update(kind.processes(served))
    return processes


def markdown_table(stores: StoreMap) -> str:
    """The docs' table of kinds: name, command, stores of ``stores`` it serves, code, what it does."""
    lines = ["| kind | command | stores of the shipped map | code | what it does |", "|---|---|---|---|---|"]
    for kind in kinds():
        served = ", ".join(f"`{s.id}`" for s in stores.stores if s.kind == kind.name) or "none"
        lines.append(f"| `{kind.name}` | `{kind.usage()}` | {served} | `{kind.code}` | {kind.doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from ebbtide.streams.policy.stores import load_store_map

    print(markdown_table(load_store_map()))
