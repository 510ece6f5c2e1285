"""The one progress bar of Ebbtide's long commands (demo, backfill, dlq replay): what, a bar,
done of total, time elapsed."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(console: Console, transient: bool = False) -> Progress:
    """A progress bar on ``console`` (``transient``: gone from the terminal when done)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )
