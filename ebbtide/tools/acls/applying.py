"""Applying the ACL plan: create the planned ACLs the broker does not have yet.

``apply`` creates the missing ACLs with :class:`kafka.admin.KafkaAdminClient` and is idempotent;
it removes nothing, but names the ACLs on the pipeline's topics and groups that are not planned.
It must connect as a super user of the broker (``super.users``), or, on the local development
stack only, without authentication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebbtide.runtime.kafka_security import KafkaSecurity
from ebbtide.runtime.settings import Settings
from ebbtide.tools.acls.plan import AclError, Grant, Principals, plan


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
    """How ``apply`` reaches the broker: as a SASL user given here, who must be allowed to alter
    ACLs (a super user), or else with ``security`` (the settings' EBBTIDE_KAFKA_SECURITY_PROTOCOL
    ...; None: no authentication, the local development listener)."""

    bootstrap: str
    user: str | None = None
    password: str | None = None
    mechanism: str = "PLAIN"
    security_protocol: str = "SASL_PLAINTEXT"
    ssl_cafile: str | None = None
    timeout: float = 30.0
    security: KafkaSecurity | None = None

    def credentials(self) -> KafkaSecurity | None:
        """The security ``apply`` connects with: the SASL user given here, else ``security``."""
        if self.user is None:
            return self.security
        return KafkaSecurity(
            self.security_protocol, self.mechanism, self.user, self.password, self.ssl_cafile
        )

    def admin_config(self) -> dict[str, Any]:
        from ebbtide.runtime import kafka  # imports kafka-python: only when apply runs

        ms = max(1000, round(self.timeout * 1000))
        config = kafka.client_config(self.bootstrap, "ebbtide-acls", self.credentials())
        config.update(request_timeout_ms=ms, bootstrap_timeout_ms=ms)
        return config

    def who(self) -> str:
        chosen = self.credentials()
        if chosen is not None and chosen.sasl:
            return f"{self.bootstrap} as User:{chosen.username}"
        return f"{self.bootstrap} (no authentication)"


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
    from kafka.errors import KafkaError

    grants = plan(settings, stores, who)
    try:
        admin = KafkaAdminClient(**connection.admin_config())
    except KafkaError as exc:
        raise _connect_error(connection, exc) from None
    try:
        try:
            existing, _ = admin.describe_acls(_every_acl())
        except KafkaError as exc:
            raise (_refused(connection, exc) or _connect_error(connection, exc)) from None
        have = {_key(acl) for acl in existing}
        wanted = {_key(g.acl()) for g in grants}
        missing = [g for g in grants if _key(g.acl()) not in have]
        present = [g for g in grants if _key(g.acl()) in have]
        unplanned = sorted(_text(acl) for acl in existing if _key(acl) not in wanted and _ours(acl, settings))
        if missing:
            _create(admin, missing, connection)
        return Applied(missing, present, unplanned)
    finally:
        admin.close()


def _every_acl() -> Any:
    """The kafka-python filter that matches every ACL of the broker."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    return ACLFilter(
        principal=None,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )


def _create(admin: Any, missing: list[Grant], connection: Connection) -> None:
    """Create ``missing`` with ``admin``; AclError naming why if the broker refuses any."""
    from kafka.errors import KafkaError

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
