"""``python -m tests.integration.sinks.postgres.die_before_receipts MAP``: ``ebbtide sink postgres
--map MAP``, killed by SIGKILL where it would send its first batch's receipts, after the batch's
transaction committed (for ``test_sink_crash``)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from ebbtide.cli import main
from ebbtide.sinks.base.loop import CommandSink


def _die(self: CommandSink, *args: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    CommandSink._publish = _die  # type: ignore[method-assign,assignment]
    sys.exit(main(["sink", "postgres", "--map", sys.argv[1]]))
