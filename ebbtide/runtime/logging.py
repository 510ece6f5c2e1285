"""How a process of Ebbtide logs: the one place that configures it.

Sinks (and any process without a logging setup of its own) log one line per record to stderr:
time, level, logger, message. The worker's logging is Faust's, at its ``--loglevel``. Logs carry
no personal data: identifiers of commands and stores, never a subject's values.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | int) -> None:
    """Log records of ``level`` (a name such as ``WARNING``, or a number) and above to stderr."""
    logging.basicConfig(level=level, format=FORMAT)
