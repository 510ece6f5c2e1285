"""The auditor's reading of the pipeline's topics: ``ebbtide log`` and ``ebbtide answer get``
(:mod:`ebbtide.cli.log`, :mod:`ebbtide.cli.answer`).

:mod:`.topics` says what each topic holds (decoding, subject, kind, time); :mod:`.reading` reads
them without a consumer group; :mod:`.entries` is one decoded message and its JSON form;
:mod:`.selecting` filters by subject, kind and time; :mod:`.rendering` makes a readable line;
:mod:`.listing` puts them together. :mod:`.answers` finds an erasure answer, and
:mod:`.answer_texts` and :mod:`.answer_page` render it for the person, in Norwegian or English.
"""

from ebbtide.tools.log.entries import Entry, as_json, json_safe
from ebbtide.tools.log.listing import entries
from ebbtide.tools.log.reading import LogUnavailable
from ebbtide.tools.log.rendering import line
from ebbtide.tools.log.selecting import Selection
from ebbtide.tools.log.topics import NAMES, LogTopic, UnknownKind, log_topic

__all__ = [
    "NAMES",
    "Entry",
    "LogTopic",
    "LogUnavailable",
    "Selection",
    "UnknownKind",
    "as_json",
    "entries",
    "json_safe",
    "line",
    "log_topic",
]
