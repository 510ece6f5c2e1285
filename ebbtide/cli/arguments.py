"""Argument types and defaults the commands share."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TypeAlias

# What a command module adds its subparsers to (``ArgumentParser.add_subparsers()``).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def iso_time(text: str) -> datetime:
    """An ISO-8601 time (``Z`` for UTC); a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds(text: str) -> float:
    """A ``--timeout``: between 1 and 3600 seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("give between 1 and 3600 seconds")
    return value


def timeout(args: argparse.Namespace) -> float:
    """``--timeout``, or the delivery timeout of ebbtide.runtime.kafka (imported late: kafka is slow)."""
    from ebbtide.runtime.kafka import DELIVERY_TIMEOUT

    return float(args.timeout) if args.timeout is not None else DELIVERY_TIMEOUT
