"""The pure policy of the HTTP sink: how an answer is classified, how long to back off, and the
circuit breaker that stops calling a vendor that keeps failing."""

from __future__ import annotations

import time
from collections.abc import Callable

from ebbtide.sinks.http.vendors import Vendor

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# Result classes of one call (the `result` label of ebbtide_vendor_attempts_total).
RESULTS = ("deleted", "not_found", "permanent", "retryable", "timeout", "connection_error")
_RETRIED = frozenset({"retryable", "timeout", "connection_error"})


def classify(vendor: Vendor, status: int) -> str:
    """The result class of an HTTP status for this vendor: deleted, not_found, retryable or permanent."""
    if status in vendor.deleted_statuses:
        return "deleted"
    if status in vendor.not_found_statuses:
        return "not_found"
    if status in vendor.retry_statuses:
        return "retryable"
    return "permanent"


def backoff_delay(failed: int, base: float, cap: float, random: Callable[[], float]) -> float:
    """Seconds to wait after the ``failed``-th failed attempt: full jitter over an exponential,
    ``random() * min(cap, base * 2 ** (failed - 1))``."""
    return random() * min(cap, base * 2.0 ** (failed - 1))


class CircuitBreaker:
    """closed -> (``threshold`` consecutive failures) -> open -> (``open_seconds``) -> half-open:
    one probe; its success closes the breaker, its failure opens it again."""

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.monotonic = monotonic
        self.on_change = on_change
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self._state = CLOSED

    @property
    def state(self) -> str:
        if self._state == OPEN and self.monotonic() >= self.opened_at + self.open_seconds:
            self._set(HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a call be made now? (In half-open, the caller makes one probe and reports it.)"""
        return self.state != OPEN

    def retry_in(self) -> float:
        """Seconds until a probe may be made (0 when closed or half-open)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.open_seconds - self.monotonic())

    def success(self) -> None:
        self.failures = 0
        if self._state != CLOSED:
            self._set(CLOSED)

    def failure(self) -> bool:
        """Count a failed call; True if the breaker opened because of it."""
        self.failures += 1
        if self.state == HALF_OPEN or (self._state == CLOSED and self.failures >= self.threshold):
            self.opened_at = self.monotonic()
            self._set(OPEN)
            return True
        return False

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            if self.on_change is not None:
                self.on_change(state)
