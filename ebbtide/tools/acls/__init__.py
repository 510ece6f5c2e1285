"""Kafka ACLs per principal: who may read and write which of the pipeline's topics and groups.

:mod:`.plan` computes them from the settings and the stores (and renders them); :mod:`.applying`
creates those a broker does not have yet. The command is ``ebbtide acls`` (:mod:`ebbtide.cli.admin`).
"""

from ebbtide.tools.acls.applying import Applied, Connection, apply, password_for
from ebbtide.tools.acls.plan import (
    DEFAULT_CLOCK,
    DEFAULT_PRODUCER,
    DEFAULT_SINK,
    DEFAULT_WORKER,
    GROUP,
    LITERAL,
    PREFIXED,
    TOPIC,
    AclError,
    Grant,
    Principals,
    plan,
    principal,
    render,
    sink_group,
)

__all__ = [
    "DEFAULT_CLOCK",
    "DEFAULT_PRODUCER",
    "DEFAULT_SINK",
    "DEFAULT_WORKER",
    "GROUP",
    "LITERAL",
    "PREFIXED",
    "TOPIC",
    "AclError",
    "Applied",
    "Connection",
    "Grant",
    "Principals",
    "apply",
    "password_for",
    "plan",
    "principal",
    "render",
    "sink_group",
]
