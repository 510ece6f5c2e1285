"""Kafka ACLs per principal: who may read and write which of the pipeline's topics and groups.

The broker must run an authorizer (KRaft: ``StandardAuthorizer``) and authenticate its clients
(a SASL listener): an ACL names a principal, ``User:<name>``. Each process of the pipeline gets
exactly what it uses (``plan``), nothing else:

- the **worker** (the Faust lifecycle agent) reads events, clock ticks and receipts in its consumer
  group (the app id); writes the command topic of every store, decisions, answers, certificates,
  chain checkpoints and dead letters; creates, reads and writes its own topics, named
  ``<app id>-...`` (the table's changelog and Faust's assignor topic);
- each store's **sink** (and the key store's, store ``keys``) reads its store's command topic in
  its group (``<prefix>-sink-<store>``) and writes receipts and dead letters;
- the **clock** writes ticks, and may look up the end offsets of the events topic it puts in them;
- the **producers** (backend services) write events only.

No principal of the pipeline uses a transactional id (the worker is at-least-once; the sinks'
idempotent producers need no more than WRITE on their topics). Creating topics, applying these
ACLs and the operator's tools (``dlq``, ``certificate get``, ``explain --source changelog``,
``overdue``) are for an administrator: a super user of the broker (``super.users``).

Applying the plan to a broker is :mod:`ebbtide.tools.acls.applying`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.streams.engine.shredding import KEY_STORE

DEFAULT_WORKER = "User:worker"
DEFAULT_SINK = "User:sink"
DEFAULT_CLOCK = "User:clock"
DEFAULT_PRODUCER = "User:producer"
TOPIC = "topic"
GROUP = "group"
LITERAL = "literal"
PREFIXED = "prefixed"
_PRINCIPAL = re.compile(r"[A-Za-z][A-Za-z0-9]*:[^\s:]+")
_NAME = re.compile(r"[^\s:]+")


class AclError(RuntimeError):
    """An ACL plan or its application failed; the message is one line for the user."""


def principal(text: str) -> str:
    """``worker`` -> ``User:worker``; ``User:worker`` (or another ``Type:name``) as it is."""
    if _PRINCIPAL.fullmatch(text):
        return text
    if _NAME.fullmatch(text):
        return f"User:{text}"
    raise AclError(f"not a principal: {text!r} (give NAME or User:NAME, no spaces)")


@dataclass(frozen=True)
class Principals:
    """Who runs each part of the pipeline. Every store's sink is ``sink`` unless ``sinks`` names
    the store's own principal (``{store: principal}``)."""

    worker: str = DEFAULT_WORKER
    clock: str = DEFAULT_CLOCK
    producers: tuple[str, ...] = (DEFAULT_PRODUCER,)
    sink: str = DEFAULT_SINK
    sinks: Mapping[str, str] = field(default_factory=dict)

    def sink_for(self, store: str) -> str:
        return self.sinks.get(store, self.sink)


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL (any host): ``principal`` may ``operation`` the ``resource`` (topic or
    group) named ``name``, or every one whose name starts with it (``pattern`` prefixed)."""

    principal: str
    resource: str
    name: str
    operation: str
    pattern: str = LITERAL
    why: str = field(default="", compare=False)

    def describe(self) -> str:
        what = f"{self.resource} {self.name}" + ("*" if self.pattern == PREFIXED else "")
        return f"{self.principal} {self.operation} {what}"

    def acl(self) -> Any:
        """The kafka-python :class:`kafka.admin.ACL` of this grant."""
        from kafka.admin import (
            ACL,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourceType,
        )

        resource = ResourceType.TOPIC if self.resource == TOPIC else ResourceType.GROUP
        pattern = (
            ACLResourcePatternType.PREFIXED if self.pattern == PREFIXED else ACLResourcePatternType.LITERAL
        )
        return ACL(
            principal=self.principal,
            host="*",
            operation=ACLOperation[self.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(resource, self.name, pattern),
        )


def sink_group(settings: Settings, store: str) -> str:
    """The consumer group of ``store``'s sink (sinks.base.loop.consumer_config)."""
    return f"{settings.topic_prefix}-sink-{store}"


def plan(settings: Settings, stores: Sequence[str], who: Principals | None = None) -> list[Grant]:
    """Every ACL the pipeline of ``settings`` (its topic prefix and app id) needs for ``stores``,
    sorted by principal, without duplicates. The key store's sink (store ``keys``, which destroys
    shredded keys) is always covered: it is not a store of the store map."""
    who = who or Principals()
    stores = list(dict.fromkeys([*stores, KEY_STORE]))
    topics = Topics(settings.topic_prefix)
    grants: set[Grant] = set()

    def allow(
        p: str, resource: str, name: str, operations: Iterable[str], why: str, pattern: str = LITERAL
    ) -> None:
        for operation in operations:
            grants.add(Grant(p, resource, name, operation, pattern, why))

    w = who.worker
    for topic in (topics.events, topics.clock, topics.receipts):
        allow(w, TOPIC, topic, ["READ"], "the lifecycle agent's input")
    allow(w, GROUP, settings.app_id, ["READ"], "the worker's consumer group (app id)")
    for store in stores:
        allow(w, TOPIC, topics.commands(store), ["WRITE"], "deletion commands")
    allow(w, TOPIC, topics.decisions, ["WRITE"], "decisions")
    allow(w, TOPIC, topics.answers, ["WRITE"], "erasure answers")
    allow(w, TOPIC, topics.certificates, ["WRITE"], "signed certificates")
    allow(w, TOPIC, topics.checkpoints, ["WRITE"], "signed chain checkpoints")
    allow(w, TOPIC, topics.dlq, ["WRITE"], "dead letters")
    allow(
        w,
        TOPIC,
        f"{settings.app_id}-",
        ["CREATE", "READ", "WRITE"],
        "Faust's topics (state changelog, assignor), made at start",
        PREFIXED,
    )

    for store in stores:
        s = who.sink_for(store)
        allow(s, TOPIC, topics.commands(store), ["READ"], f"the commands of {store}")
        allow(s, GROUP, sink_group(settings, store), ["READ"], f"the consumer group of {store}'s sink")
        allow(s, TOPIC, topics.receipts, ["WRITE"], "signed receipts")
        allow(s, TOPIC, topics.dlq, ["WRITE"], "dead letters (refused commands)")

    allow(who.clock, TOPIC, topics.clock, ["WRITE"], "signed ticks")
    allow(who.clock, TOPIC, topics.events, ["DESCRIBE"], "the events end offsets each tick carries")

    for producer in who.producers:
        allow(producer, TOPIC, topics.events, ["WRITE"], "lifecycle events")
    return sorted(grants)


def render(grants: Sequence[Grant], settings: Settings, stores: Sequence[str]) -> str:
    """The plan as a table, one ACL a line, with what it is for."""
    width = max((len(g.principal) for g in grants), default=0)
    names = max((len(g.name) + (g.pattern == PREFIXED) for g in grants), default=0)
    lines = [
        f"Kafka ACLs for topic prefix {settings.topic_prefix!r}, app id {settings.app_id!r} and "
        f"{len(stores)} store(s): ALLOW, any host; everything else is denied"
    ]
    for g in grants:
        name = g.name + ("*" if g.pattern == PREFIXED else "")
        lines.append(f"  {g.principal:<{width}}  {g.operation:<8}  {g.resource:<5}  {name:<{names}}  {g.why}")
    principals = len({g.principal for g in grants})
    lines.append(
        f"{len(grants)} ACL(s) for {principals} principal(s). The administrator (topics create, acls apply, "
        "dlq, certificate get, explain --source changelog, overdue) is a super user of the broker."
    )
    return "\n".join(lines)
