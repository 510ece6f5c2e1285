"""What an export selects: one subject's messages, or every message of a period (``FROM..TO``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ebbtide.streams.policy.calendar import to_ms
from ebbtide.tools.export.decoding import ms_text
from ebbtide.tools.export.reading import Period

PERIOD_RULE = (
    "per partition, from the first message whose Kafka timestamp is at or after FROM up to, not "
    "including, the first one at or after TO (the broker's time index); checkpoints only of the "
    "decisions partitions that have decisions in the period"
)
SUBJECT_RULE = (
    "every message keyed by the subject; decisions.jsonl holds the whole hash chain of each "
    "decisions partition that has one of the subject's decisions, the subject's lines with "
    '"selected": true; checkpoints.jsonl holds every checkpoint of those partitions'
)


class SelectionError(ValueError):
    """A selection that cannot be made: the message is one line for the user."""


def _moment(text: str, which: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(f"--period: {which} {text!r} is not an ISO-8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_period(text: str) -> Period:
    """``FROM..TO``: ISO-8601 dates or times (UTC unless a zone is given); FROM before TO."""
    start, dots, end = text.partition("..")
    if not dots or not start.strip() or not end.strip():
        raise SelectionError(f"--period: {text!r} is not FROM..TO (e.g. 2026-01-01..2026-02-01)")
    period = Period(to_ms(_moment(start, "FROM")), to_ms(_moment(end, "TO")))
    if period.start >= period.end:
        raise SelectionError(f"--period: FROM must be before TO in {text!r}")
    return period


@dataclass(frozen=True)
class Selection:
    """``subject`` or ``period``, exactly one."""

    subject: str | None = None
    period: Period | None = None

    def __post_init__(self) -> None:
        if (self.subject is None) == (self.period is None):
            raise SelectionError("give exactly one of --subject and --period")
        if self.subject is not None and not self.subject.strip():
            raise SelectionError("--subject: give a subject id")

    def wants(self, key: str | None) -> bool:
        """Whether a message with this key is selected (every message read in a period is)."""
        return self.period is not None or key == self.subject

    def describe(self) -> dict[str, Any]:
        """The manifest's ``selection``: what was asked and the rule that applied."""
        if self.period is not None:
            return {
                "period": {"from": ms_text(self.period.start), "to": ms_text(self.period.end)},
                "rule": PERIOD_RULE,
            }
        return {"subject": self.subject, "rule": SUBJECT_RULE}

    def title(self) -> str:
        """One line naming the selection, for people."""
        if self.period is not None:
            return f"period {ms_text(self.period.start)} to {ms_text(self.period.end)} (end excluded)"
        return f"subject {self.subject}"
