"""Which topics each export file comes from, and which of their messages it holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from kafka import KafkaConsumer

from ebbtide.runtime.settings import Topics
from ebbtide.tools.export.reading import Message, Span, partitions_of, read, spans
from ebbtide.tools.export.selection import Selection

# The export's files (each as .jsonl and, but checkpoints, .csv), in the order they are written.
FILES: tuple[str, ...] = (
    "events",
    "decisions",
    "commands",
    "receipts",
    "certificates",
    "answers",
    "checkpoints",
)


class Progress(Protocol):
    def __call__(self, description: str, total: int) -> Callable[[int], None]:
        """Start a task of ``total`` messages; the callable advances it."""
        ...


def topics_of(name: str, topics: Topics, existing: set[str]) -> list[str]:
    """The topics file ``name`` is read from: every store's commands topic that exists (by its
    name), one topic for the others."""
    if name == "commands":
        prefix = topics.commands("")
        return sorted(t for t in existing if t.startswith(prefix) and len(t) > len(prefix))
    return [getattr(topics, name)]


def _spans(consumer: KafkaConsumer, names: list[str], selection: Selection) -> list[Span]:
    found: list[Span] = []
    for topic in names:
        found += spans(consumer, partitions_of(consumer, topic), selection.period)
    return found


def messages(
    consumer: KafkaConsumer,
    name: str,
    names: list[str],
    selection: Selection,
    progress: Progress,
    chains: set[int] | None = None,
) -> Iterator[Message]:
    """The messages of file ``name`` from ``names`` (its topics), in topic, partition and offset
    order (the rules are :data:`.selection.SUBJECT_RULE` and :data:`.selection.PERIOD_RULE`).
    ``chains``: for a subject's checkpoints, the decisions partitions exported (a checkpoint
    signs its own partition's chain; one of a partition not exported could not be checked)."""
    chain = name == "decisions" and selection.subject is not None
    chosen = _spans(consumer, names, selection)
    if chain:
        chosen = _chain_spans(consumer, chosen, selection, progress)
    if name == "checkpoints" and chains is not None:
        chosen = [s for s in chosen if s.tp.partition in chains]
    advance = progress(f"{name}: reading", sum(s.size for s in chosen))
    for span in chosen:
        for fetched in read(consumer, span, advance):
            if name == "checkpoints":  # no personal data; each signs a partition's chain
                yield Message.of(fetched)
            elif chain:
                yield Message.of(fetched, selected=selection.wants(fetched.key))
            elif selection.wants(fetched.key):
                yield Message.of(fetched)


def _chain_spans(
    consumer: KafkaConsumer, chosen: list[Span], selection: Selection, progress: Progress
) -> list[Span]:
    """The spans that hold at least one of the subject's decisions (its keys read, nothing decoded)."""
    advance = progress("decisions: finding the subject's partitions", sum(s.size for s in chosen))
    return [s for s in chosen if any(selection.wants(f.key) for f in read(consumer, s, advance))]
