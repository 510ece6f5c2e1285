"""docs/topics.md's table of topics, generated from the specs the code uses:
``python -m ebbtide.tools.topics.doc`` prints it (a unit test compares it with the page)."""

from __future__ import annotations

from ebbtide.runtime.settings import Settings
from ebbtide.runtime.topic_spec import CLEANUP, COMPACT, MIN_INSYNC, SEGMENT, TopicSpec
from ebbtide.streams.policy.rules import Policy
from ebbtide.tools.topics.spec import project_topics

# The placeholders the table shows for the names that depend on the settings and the store map.
PLACEHOLDERS = Settings(topic_prefix="<prefix>", app_id="<app id>")
STORE = "<store>"


def _days(ms: int) -> str:
    if ms % 86_400_000:
        return f"{ms} ms"
    days = ms // 86_400_000
    return f"{days} day{'s' if days != 1 else ''}"


def retention_cell(spec: TopicSpec) -> str:
    """``27 days (daily segments)``, ``2196 days``, ``none (compacted)``, ``the broker's default``."""
    if spec.config.get(CLEANUP) == COMPACT:
        return "none: compacted"
    ms = spec.retention_ms
    if ms is None:
        return "the broker's default"
    segment = spec.config.get(SEGMENT)
    return _days(ms) + (f", segments of {_days(int(segment))}" if segment else "")


def markdown_table(policy: Policy) -> str:
    """The table of every topic of the project: name, partitions, cleanup policy, retention,
    ``min.insync.replicas``, key, and why it is kept so long."""
    lines = [
        "| topic | partitions | cleanup | retention | min.insync.replicas | key | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in project_topics(PLACEHOLDERS, policy, [STORE]):
        partitions = (
            "EBBTIDE_PARTITIONS" if spec.partitions == PLACEHOLDERS.partitions else str(spec.partitions)
        )
        min_isr = "EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS" if MIN_INSYNC in spec.config else "the broker's default"
        lines.append(
            f"| `{spec.name}` | {partitions} | {spec.cleanup} | {retention_cell(spec)} | {min_isr} "
            f"| {spec.key} | {spec.reason} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from ebbtide.streams.policy.rules import default_policy

    print(markdown_table(default_policy()))
