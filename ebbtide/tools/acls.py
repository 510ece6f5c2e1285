"""Kafka ACLs per principal: who may read and write which of the pipeline's topics and groups.

The broker must run an authorizer (KRaft: ``StandardAuthorizer``) and authenticate its clients
(a SASL listener): an ACL names a principal, ``User:<name>``. Each process of the pipeline gets
exactly what it uses (``plan``), nothing else:

- the **worker** (the Faust lifecycle agent) reads events, clock ticks and receipts in its consumer
  group (the app id); writes the command topic of every store, decisions, answers, certificates and
  dead letters; creates, reads and writes its own topics, named ``<app id>-...`` (the table's
  changelog and Faust's assignor topic);
- each store's **sink** reads its store's command topic in its group (``<prefix>-sink-<store>``)
  and writes receipts and dead letters;
- the **clock** writes ticks, and may look up the end offsets of the events topic it puts in them;
- the **producers** (backend services) write events only.

No principal of the pipeline uses a transactional id (the worker is at-least-once; the sinks'
idempotent producers need no more than WRITE on their topics). Creating topics, applying these
ACLs and the operator's tools (``dlq``, ``certificate get``, ``explain --source changelog``,
``overdue``) are for an administrator: a super user of the broker (``super.users``).

``apply`` creates the missing ACLs with :class:`kafka.admin.KafkaAdminClient` and is idempotent;
it removes nothing, but names the ACLs on the pipeline's topics and groups that are not planned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebbtide.runtime.settings import Settings, Topics

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
    sorted by principal, without duplicates."""
    who = who or Principals()
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


def password_for(path: Path, user: str) -> str:
    """``user``'s password from a file of NAME=PASSWORD lines (deploy/local/kafka.sh writes
    ``<state dir>/kafka/sasl-passwords``); '#' starts a comment line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AclError(f"cannot read the password file {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        name, sep, password = line.partition("=")
        if sep and not line.startswith("#") and name.strip() == user and password:
            return password
    raise AclError(f"the password file {path} has no line {user}=PASSWORD")


@dataclass(frozen=True)
class Connection:
    """How ``apply`` reaches the broker: without authentication (the local development
    listener), or as a SASL user, who must be allowed to alter ACLs (a super user)."""

    bootstrap: str
    user: str | None = None
    password: str | None = None
    mechanism: str = "PLAIN"
    security_protocol: str = "SASL_PLAINTEXT"
    ssl_cafile: str | None = None
    timeout: float = 30.0

    def admin_config(self) -> dict[str, Any]:
        from ebbtide.runtime import kafka  # imports kafka-python: only when apply runs

        ms = max(1000, round(self.timeout * 1000))
        sasl = None
        if self.user is not None:
            sasl = kafka.Sasl(
                self.user, self.password, self.mechanism, self.security_protocol, self.ssl_cafile
            )
        config = kafka.client_config(self.bootstrap, "ebbtide-acls", sasl)
        config.update(request_timeout_ms=ms, bootstrap_timeout_ms=ms)
        return config

    def who(self) -> str:
        return (
            f"{self.bootstrap} as User:{self.user}" if self.user else f"{self.bootstrap} (no authentication)"
        )


@dataclass
class Applied:
    created: list[Grant]
    present: list[Grant]
    unplanned: list[str]  # ACLs on the pipeline's topics and groups the plan does not have


def _key(acl: Any) -> tuple[str, str, str, str, str, str, str]:
    r = acl.resource_pattern
    return (
        acl.principal,
        acl.host,
        acl.operation.name,
        acl.permission_type.name,
        r.resource_type.name,
        r.resource_name,
        r.pattern_type.name,
    )


def _text(acl: Any) -> str:
    r = acl.resource_pattern
    star = "*" if r.pattern_type.name == "PREFIXED" else ""
    host = "" if acl.host == "*" else f" from {acl.host}"
    return (
        f"{acl.principal} {acl.permission_type.name} {acl.operation.name} "
        f"{r.resource_type.name.lower()} {r.resource_name}{star}{host}"
    )


def _ours(acl: Any, settings: Settings) -> bool:
    """Does the ACL reach one of the pipeline's topics or groups (its prefix, app id, sink groups)?
    A wildcard ``*`` reaches them all, and so does a prefixed ACL on a shorter prefix."""
    r = acl.resource_pattern
    name: str = r.resource_name
    kind = r.resource_type.name
    if kind == "TOPIC":
        mine = (f"{settings.topic_prefix}.", f"{settings.app_id}-")
    elif kind == "GROUP":
        mine = (f"{settings.topic_prefix}-sink-", settings.app_id)
    else:
        return False
    if name == "*" or name.startswith(mine):
        return True
    return r.pattern_type.name == "PREFIXED" and any(prefix.startswith(name) for prefix in mine)


def _connect_error(connection: Connection, exc: BaseException) -> AclError:
    causes = "wrong address, user or password" if connection.user else "wrong address"
    return AclError(
        f"could not talk to the broker at {connection.who()} within {connection.timeout:g} s "
        f"({type(exc).__name__}: {causes}, or no such listener?)"
    )


def _refused(connection: Connection, exc: BaseException) -> AclError | None:
    from kafka.errors import ClusterAuthorizationFailedError, SecurityDisabledError

    if isinstance(exc, SecurityDisabledError) or exc is SecurityDisabledError:
        return AclError(
            f"the broker at {connection.bootstrap} has no authorizer (authorizer.class.name): it "
            "cannot hold ACLs, and lets every client do anything"
        )
    if isinstance(exc, ClusterAuthorizationFailedError) or exc is ClusterAuthorizationFailedError:
        return AclError(
            f"{connection.who()} may not describe or alter ACLs: connect as a super user of the "
            "broker (--sasl-user)"
        )
    return None


def apply(
    settings: Settings, stores: Sequence[str], connection: Connection, who: Principals | None = None
) -> Applied:
    """Create the planned ACLs the broker does not have yet; AclError (one line) if it cannot."""
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import KafkaError

    grants = plan(settings, stores, who)
    try:
        admin = KafkaAdminClient(**connection.admin_config())
    except KafkaError as exc:
        raise _connect_error(connection, exc) from None
    try:
        everything = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        try:
            existing, _ = admin.describe_acls(everything)
        except KafkaError as exc:
            raise (_refused(connection, exc) or _connect_error(connection, exc)) from None
        have = {_key(acl) for acl in existing}
        wanted = {_key(g.acl()) for g in grants}
        missing = [g for g in grants if _key(g.acl()) not in have]
        present = [g for g in grants if _key(g.acl()) in have]
        unplanned = sorted(_text(acl) for acl in existing if _key(acl) not in wanted and _ours(acl, settings))
        if missing:
            try:
                result = admin.create_acls([g.acl() for g in missing])
            except KafkaError as exc:
                raise (_refused(connection, exc) or _connect_error(connection, exc)) from None
            failed = result.get("failed") or []
            if failed:
                first = failed[0][-1] if isinstance(failed[0], tuple) else failed[0]
                refused = _refused(connection, first)
                if refused is not None:
                    raise refused
                name = first.__name__ if isinstance(first, type) else type(first).__name__
                raise AclError(
                    f"the broker refused {len(failed)} of {len(missing)} new ACL(s) ({name}); "
                    "running `ebbtide acls apply` again is harmless"
                )
        return Applied(missing, present, unplanned)
    finally:
        admin.close()


# ---------------------------------------------------------------- the `ebbtide acls` command

DESCRIPTION = """plan: print the Kafka ACLs each principal of the pipeline needs, computed from the topic
prefix (EBBTIDE_TOPIC_PREFIX), the app id (EBBTIDE_APP_ID) and the stores of the store map: the worker
reads events, ticks and receipts and writes commands, decisions, answers, certificates and dead
letters; each store's sink reads its commands and writes receipts and dead letters; the clock writes
ticks; the producers write events only. apply: create those the broker does not have yet (running it
again is harmless); it removes nothing, and lists the ACLs on the pipeline's topics and groups that
the plan does not have. The broker must authenticate clients (a SASL listener) and run an authorizer;
apply must connect as a super user (--sasl-user), or, on the local development stack only, without
authentication to its PLAINTEXT listener."""


def _principal_arg(text: str) -> str:
    import argparse

    try:
        return principal(text)
    except AclError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _store_sink_arg(text: str) -> tuple[str, str]:
    import argparse

    store, sep, name = text.partition("=")
    if not sep or not store or not name:
        raise argparse.ArgumentTypeError(f"give STORE=NAME, not {text!r}")
    return store, _principal_arg(name)


def _seconds_arg(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("give between 1 and 3600 seconds")
    return value


def add_arguments(parser: Any) -> None:
    """The options of ``ebbtide acls`` (an argparse parser)."""
    parser.add_argument("action", choices=["plan", "apply"])
    parser.add_argument(
        "--store",
        action="append",
        default=None,
        help="a store whose command topic and sink to cover (repeatable; default: every store of the "
        "store map)",
    )
    who = parser.add_argument_group("principals (NAME means User:NAME)")
    who.add_argument("--worker", type=_principal_arg, default=DEFAULT_WORKER, help="default User:worker")
    who.add_argument(
        "--sink", type=_principal_arg, default=DEFAULT_SINK, help="every store's sink (default User:sink)"
    )
    who.add_argument(
        "--store-sink",
        type=_store_sink_arg,
        action="append",
        default=[],
        metavar="STORE=NAME",
        help="one store's sink as its own principal (repeatable)",
    )
    who.add_argument("--clock", type=_principal_arg, default=DEFAULT_CLOCK, help="default User:clock")
    who.add_argument(
        "--producer",
        type=_principal_arg,
        action="append",
        default=None,
        help="a backend service that publishes events (repeatable; default User:producer)",
    )
    conn = parser.add_argument_group("apply: how to reach the broker")
    conn.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="default EBBTIDE_KAFKA_BOOTSTRAP (for SASL: the SASL listener)",
    )
    conn.add_argument(
        "--sasl-user", metavar="NAME", help="a super user of the broker (default: no authentication)"
    )
    conn.add_argument(
        "--sasl-password-file",
        metavar="FILE",
        type=Path,
        help="a file of NAME=PASSWORD lines, one for the --sasl-user (the local stack's: "
        "$EBBTIDE_KAFKA_SASL_PASSWORDS)",
    )
    conn.add_argument(
        "--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], default="PLAIN"
    )
    conn.add_argument(
        "--ssl", action="store_true", help="SASL over TLS (SASL_SSL), as a production broker needs"
    )
    conn.add_argument("--ssl-cafile", metavar="FILE", help="with --ssl: the CA certificates to trust (PEM)")
    conn.add_argument(
        "--timeout",
        type=_seconds_arg,
        default=30.0,
        metavar="SECONDS",
        help="for the broker to answer (default 30)",
    )


def command(args: Any, settings: Settings) -> int:
    """``ebbtide acls plan|apply``: exit 0, or 1 with one line naming what went wrong."""
    import sys

    stores = list(dict.fromkeys(args.store))
    try:
        unknown = sorted({store for store, _ in args.store_sink} - set(stores))
        if unknown:
            raise AclError(f"--store-sink names store(s) not covered: {', '.join(unknown)}")
        who = Principals(
            worker=args.worker,
            clock=args.clock,
            producers=tuple(dict.fromkeys(args.producer or [DEFAULT_PRODUCER])),
            sink=args.sink,
            sinks=dict(args.store_sink),
        )
        grants = plan(settings, stores, who)
        if args.action == "plan":
            print(render(grants, settings, stores))
            return 0
        if args.sasl_user is not None and args.sasl_password_file is None:
            raise AclError("--sasl-user needs --sasl-password-file")
        connection = Connection(
            bootstrap=args.bootstrap or settings.kafka_bootstrap,
            user=args.sasl_user,
            password=password_for(args.sasl_password_file, args.sasl_user) if args.sasl_user else None,
            mechanism=args.sasl_mechanism,
            security_protocol="SASL_SSL" if args.ssl else "SASL_PLAINTEXT",
            ssl_cafile=args.ssl_cafile,
            timeout=args.timeout,
        )
        done = apply(settings, stores, connection, who)
    except AclError as exc:
        print(f"ebbtide acls: {exc}", file=sys.stderr)
        return 1
    for grant in done.created:
        print(f"created  {grant.describe()}")
    print(f"{len(done.created)} ACL(s) created, {len(done.present)} already there, on {connection.who()}")
    if done.unplanned:
        print(
            f"{len(done.unplanned)} ACL(s) on the pipeline's topics and groups are not in the plan "
            "(left as they are; remove them if nobody needs them):"
        )
        for text in done.unplanned:
            print(f"  {text}")
    return 0
