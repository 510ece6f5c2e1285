"""Which entries ``ebbtide log`` lists: by subject, kind and time window (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ebbtide.tools.log.entries import Entry, kind_of, time_of
from ebbtide.tools.log.topics import LogTopic


@dataclass(frozen=True)
class Selection:
    """``--subject``, ``--kind``, ``--since`` (at or after) and ``--until`` (before)."""

    subject: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, spec: LogTopic, entry: Entry) -> bool:
        """Whether ``entry`` is listed. One that could not be decoded has no kind: it is listed
        whatever ``--kind`` says, and judged by its key and broker timestamp."""
        if self.subject is not None and entry.subject != self.subject:
            return False
        if self.kind is not None and entry.value is not None and kind_of(spec, entry) != self.kind:
            return False
        if self.since is None and self.until is None:
            return True
        moment = time_of(spec, entry)
        if moment is None:
            return False
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)
