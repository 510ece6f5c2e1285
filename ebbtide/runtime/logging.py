"""How a process of Ebbtide logs: the one place that configures it, for our records and Faust's.

Two formats (``EBBTIDE_LOG_FORMAT``), both one line per record on stderr:

- ``text`` (the default, for terminals): ``time level logger: message``;
- ``json`` (for log collectors): one JSON object per line with ``time`` (ISO 8601, UTC),
  ``level``, ``logger``, ``process`` (the process kind: ``worker``, ``sink-<kind>``, ``clock``,
  ``cli``), ``message``, and ``topic`` and ``partition`` where a record is about one (given as
  ``extra``), ``exc_info`` with a traceback. Other ``extra`` fields are left out: a record carries
  these keys and nothing else.

The worker's logging is set up by Faust's worker (mode's ``setup_logging``, which replaces the
root handlers); :func:`faust_logging_config` is the ``logging_config`` that makes it ours. Logs
carry no personal data: identifiers of commands, stores, topics and partitions, never a subject's
values.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
KEYS = ("time", "level", "logger", "process", "message", "topic", "partition", "exc_info", "stack_info")


class JsonLines(JsonFormatter):
    """One JSON object per record, with :data:`KEYS` only (python-json-logger does the encoding)."""

    def __init__(self, process: str) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"process": process},
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: log_data[key] for key in KEYS if key in log_data}


def formatter(log_format: str, process: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``) for a process of kind ``process``."""
    if log_format == "json":
        return JsonLines(process)
    return logging.Formatter(FORMAT)


def configure(level: str | int, log_format: str = "text", process: str = "cli") -> None:
    """Log records of ``level`` (a name such as ``WARNING``, or a number) and above to stderr, in
    ``log_format``, as a process of kind ``process``; replaces handlers set before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, process))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def faust_logging_config(level: str | int, log_format: str, process: str = "worker") -> dict[str, Any] | None:
    """The ``logging_config`` (dictConfig) for Faust's worker: ``json`` records of Faust and ours on
    stderr; None for ``text`` (Faust's own colour log, as on a terminal)."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines, "process": process}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level if isinstance(level, int) else level.upper(), "handlers": ["default"]},
    }
