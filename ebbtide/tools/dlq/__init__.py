"""Dead letters: the messages the worker and the sinks could not process, on ``<prefix>.dlq``.

Each dead letter keeps the original message's key and value and says why and where from in its
headers (``reason``, ``source_topic``, ``source_partition``, ``source_offset``; see
``streams.worker.routing`` and ``sinks.base.loop``). ``ebbtide dlq`` (:mod:`ebbtide.cli.dlq`)
lists them by reason, shows them (headers, offsets and sizes: never a key or a value, which may
hold personal data) and replays them to their source topic after a fix.

:mod:`.letters` is a dead letter and how they are selected, grouped and shown; :mod:`.reading`
reads the topic; :mod:`.replaying` sends them back.
"""

from ebbtide.tools.dlq.letters import (
    NO_REASON,
    REASON,
    REPLAY_OF,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    DeadLetter,
    DlqError,
    ReasonGroup,
    group_by_reason,
    render_list,
    render_show,
    select,
    source_matches,
)
from ebbtide.tools.dlq.reading import read
from ebbtide.tools.dlq.replaying import (
    Replay,
    ReplayFailed,
    ReplayPlan,
    plan_replay,
    replay,
    replayable_topics,
)

__all__ = [
    "NO_REASON",
    "REASON",
    "REPLAY_OF",
    "SOURCE_OFFSET",
    "SOURCE_PARTITION",
    "SOURCE_TOPIC",
    "DeadLetter",
    "DlqError",
    "ReasonGroup",
    "Replay",
    "ReplayFailed",
    "ReplayPlan",
    "group_by_reason",
    "plan_replay",
    "read",
    "render_list",
    "render_show",
    "replay",
    "replayable_topics",
    "select",
    "source_matches",
]
