"""The topics the project owns: their specs (:mod:`.spec`, retention from the policy in
:mod:`.retention`), how a cluster differs from them (:mod:`.drift`), checking and applying them
on a live cluster (:mod:`.cluster`) and docs/topics.md's table (:mod:`.doc`). The command is
``ebbtide topics`` (:mod:`ebbtide.cli.topics`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ebbtide.runtime.settings import Settings
from ebbtide.runtime.topic_spec import TopicSpec
from ebbtide.tools.topics.spec import project_topics


def declared(
    settings: Settings, stores: Iterable[str] | None = None, rules: Path | None = None
) -> list[TopicSpec]:
    """Every topic of the project under ``settings``, with the policy a worker of these settings
    runs (the rules file ``rules``, default the shipped rules, with the settings' store map);
    command topics of ``stores`` (default: every store of the store map)."""
    from ebbtide import bootstrap

    return project_topics(settings, bootstrap.policy(settings, rules), stores)


__all__ = ["TopicSpec", "declared", "project_topics"]
