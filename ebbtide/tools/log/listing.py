"""``ebbtide log``'s listing: read a topic's messages, decode them and keep those selected."""

from __future__ import annotations

from collections.abc import Iterator

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.log.entries import Entry, decode
from ebbtide.tools.log.reading import read
from ebbtide.tools.log.selecting import Selection
from ebbtide.tools.log.topics import BROKER_TIME, LogTopic, topic_names


def entries(
    settings: Settings,
    spec: LogTopic,
    selection: Selection,
    *,
    stores: tuple[str, ...] = (),
    timeout: float = 30.0,
    follow: bool = False,
) -> Iterator[Entry]:
    """The selected entries of ``spec``'s topics (``stores``: whose command topics), in the
    order read: each partition in offset order. With a subject, a topic keyed by subject is
    read on that subject's partition only."""
    topics = topic_names(spec.name, Topics(settings.topic_prefix), stores)
    key = selection.subject.encode() if selection.subject is not None and spec.by_subject else None
    since = selection.since
    # where the time compared is the broker's, the partitions are read from that time on
    since_ms = (
        round(since.timestamp() * 1000) if since is not None and spec.time_field == BROKER_TIME else None
    )
    for message in read(settings, topics, timeout, key=key, since_ms=since_ms, follow=follow):
        entry = decode(spec, message)
        if selection.admits(spec, entry):
            yield entry
