"""What a message must be before the engine sees it; each check raises
:class:`~schemas.InvalidMessage` (the message is dead-lettered with the reason, never applied).

Security refusals (an unsigned hold, a forged tick, a receipt for a command never issued) are
counted as security events too. Every reason names fields, never values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ebbtide.runtime import authenticity, metrics
from ebbtide.schemas import InvalidMessage
from ebbtide.streams.engine.events import DeletionReported
from ebbtide.streams.engine.firing import order_id
from ebbtide.streams.engine.model import SubjectState, record_id
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.worker.routing import SECURITY
from ebbtide.streams.worker.translate import tick_time

# Event times the worker accepts by default: 1990 to 2100 (EBBTIDE_EVENT_YEARS). A time outside
# is a producer's error (e.g. a placeholder 9999-12-31), not something to keep data for.
DEFAULT_EVENT_WINDOW = (631_152_000_000, 4_102_444_800_000)


def check_event_time(time: int, window: tuple[int, int]) -> None:
    """An event's time must be in the accepted window [from, until) in epoch ms."""
    if not window[0] <= time < window[1]:
        raise InvalidMessage(
            f"lifecycle_event: event_time outside the accepted window "
            f"[{calendar.iso(window[0])}, {calendar.iso(window[1])})"
        )


def check_hold(hold_keys: authenticity.HoldKeys, record: dict[str, Any]) -> None:
    """A legal hold event must be signed by a trusted hold signer's key, over its fields (its
    subject, time and what it holds), or anyone who can write to the events topic could keep a
    subject's data forever or lift a real hold. One that is not is refused as a security event
    (an :class:`InvalidMessage`: dead-lettered, not applied). The keys are fixed for the
    worker's life, so a replay of the same log gets the same answer."""
    try:
        hold_keys.check(record)
    except authenticity.Refused as refused:
        metrics.SECURITY_EVENTS.labels("events", refused.kind).inc()
        raise InvalidMessage(f"security: {refused.reason}") from None


def check_tick(
    tick: dict[str, Any],
    partition: int,
    clock_key: authenticity.ClockKey | None,
    tick_problem: Callable[[int], str | None] | None,
) -> tuple[int, int]:
    """A decoded tick's time and ``events_end`` (how many of the partition's events precede it),
    once it is known to be signed by the clock's key for its partition (unless no key is set),
    at a time the worker accepts (``tick_problem``, e.g. not far ahead of its wall clock), and
    with ``events_end`` 0 or more."""
    if clock_key is not None:
        try:
            clock_key.check(tick, partition)  # the clock's key, for this partition
        except authenticity.Refused as refused:
            metrics.SECURITY_EVENTS.labels("clock", refused.kind).inc()
            raise InvalidMessage(f"security: {refused.reason}") from None
    now, events_end = tick_time(tick), int(tick["events_end"])
    problem = tick_problem(now) if tick_problem is not None else None
    if problem is not None:
        metrics.SECURITY_EVENTS.labels("clock", "tick_time").inc()
        raise InvalidMessage(f"{SECURITY}clock_tick: {problem}")  # counted as one: labelled so
    if events_end < 0:
        raise InvalidMessage("clock_tick: events_end is negative")
    return now, events_end


def check_issued(state: SubjectState, report: DeletionReported, policy: Policy) -> None:
    """Refuse a receipt for a command the worker never issued for that copy (the engine would
    ignore it; here it is a security event). A copy whose order failed forgets its command id
    until it is ordered again with the same id, so a late answer to that order is let through
    (the engine ignores it). So is an answer to the order a copy not ordered in this state gets
    at its deadline: a worker that crashed after sending that command, before its state said so,
    left it to the tick replayed here, which sends it again with the same id (the store answers
    that with the same receipt). Only for a copy that such a tick can order: pending, with a
    deadline and nothing suspending its deletion (a legal hold, a restriction)."""
    record = state.records.get(record_id(report.store, report.category, report.record_key))
    if record is None or (
        record.command_id != report.command_id
        and (record.command_id is not None or record.failures == 0)
        and not (
            record.command_id is None
            and record.status == "pending"
            and record.deadline is not None
            and not record.blockers
            and report.command_id == order_id(state.subject_id, record, policy)
        )
    ):
        why = "deletion_receipt: answers a command the worker never issued for this copy"
        raise authenticity.Refused(authenticity.NOT_ISSUED, why)
