"""The errors a sink raises before it runs: its configuration or its database is not usable.

The loop's own failure modes are not here: an executor names the errors that mean "try the batch
again later" in its ``transient`` tuple (:class:`~sinks.base.executor.BatchExecutor`).
"""

from __future__ import annotations


class SinkConfigError(ValueError):
    """A sink's configuration (a table map, the vendors file) cannot be used as written; the
    message names the file and the field. ``ebbtide sink`` prints it and exits with 2."""


class SinkSetupError(RuntimeError):
    """The database is not set up for the sink (and the sink may not set it up itself)."""


class StoreSetupError(SinkSetupError):
    """The store's tables are missing and the sink may not create them."""
