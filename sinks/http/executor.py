"""The HTTP vendor sink: one configurable REST call per deletion command, for a sub-processor.

:class:`HttpExecutor` is the :class:`~sinks.base.executor.BatchExecutor` of one vendor store
(``sinks/http/vendors.toml``). Per command it calls the vendor and classifies the answer:

- a ``deleted_statuses`` answer is DELETED (1 row), a ``not_found_statuses`` one NOT_FOUND;
- any other status not in ``retry_statuses`` is a permanent failure: FAILED at once, and the
  command is dead-lettered with the reason;
- a ``retry_statuses`` answer, a timeout or a connection error is retried, after an exponential
  backoff with full jitter (``Retry-After`` seconds are honoured, up to ``backoff_max``). After
  ``max_attempts`` failed attempts the command gives up: FAILED, dead-lettered with the reason
  (the loop counts ``ebbtide_sink_gave_up_total``). Never a silent drop.

A circuit breaker guards the vendor: ``breaker_threshold`` consecutive retryable failures (of
any commands) open it; while it is open :meth:`HttpExecutor.execute` raises
:class:`VendorUnavailable`, one of the executor's ``transient`` errors, so the loop commits
nothing and takes the same batch again later: commands wait for the vendor, they are neither
answered nor dead-lettered. After ``breaker_open_seconds`` one probe call is let through (the
command of the batch with the fewest failed attempts, so a command the vendor always refuses
does not keep a recovered vendor closed off); its success closes the breaker, its failure
opens it again. A failed probe does not count against the command's attempts.

Replays are cheap and consistent: answers are kept in a bounded in-memory cache by command id,
so a batch taken again (after the breaker opened part-way, or a broker hiccup) gets the same
receipts without calling the vendor again. FAILED answers leave the cache once returned, so a
command the pipeline orders again (same id, at the next tick) is tried afresh.

Reasons and logs carry status codes, timeouts and exception class names only: never request or
response bodies, never the vendor's token.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPException
from typing import Any

from ebbtide.runtime import metrics
from ebbtide.runtime.authenticity import MessageSigner
from ebbtide.sinks.base.receipts import Executed, executed
from ebbtide.sinks.http.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, backoff_delay, classify
from ebbtide.sinks.http.transport import Transport, http_transport
from ebbtide.sinks.http.vendors import Vendor

log = logging.getLogger(__name__)

CACHE_SIZE = 10_000  # command answers kept for replays


class VendorUnavailable(Exception):
    """The vendor cannot be called now (circuit open, or the sink is stopping): retry the batch later."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Attempt:
    result: str  # one of RESULTS
    reason: str  # "HTTP 503", "timeout after 10s", "ConnectionRefusedError"
    retry_after: float | None = None


class HttpExecutor:
    """The :class:`~sinks.base.executor.BatchExecutor` of one vendor store (see the module docstring).

    Time, sleep and randomness are injected: ``clock`` (wall, for receipts), ``monotonic`` (the
    breaker and call durations), ``sleep`` (backoff and :meth:`recover`; by default
    ``stop.wait``, so a stopping sink does not sleep on) and ``random`` (jitter)."""

    transient: tuple[type[BaseException], ...] = (VendorUnavailable,)
    receipt_signer: MessageSigner | None = None  # set by the sink loop

    def __init__(
        self,
        vendor: Vendor,
        *,
        stop: threading.Event | None = None,
        environ: Mapping[str, str] | None = None,
        transport: Transport = http_transport,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] = _random.random,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.vendor = vendor
        self.store = vendor.store
        self.stop = stop or threading.Event()
        self.headers = vendor.auth_headers(environ)  # raises VendorConfigError if the token is missing
        self.transport = transport
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep or self.stop.wait
        self.random = random
        self.cache_size = cache_size
        self.breaker = CircuitBreaker(
            vendor.breaker_threshold, vendor.breaker_open_seconds, monotonic, self._breaker_changed
        )
        self._answers: OrderedDict[str, tuple[Executed, bool]] = OrderedDict()  # id -> (answer, returned)
        self._failed: OrderedDict[str, int] = OrderedDict()  # id -> failed attempts so far
        self._last_reason = ""
        metrics.SINK_CIRCUIT_OPEN.labels(self.store).set(0)

    # BatchExecutor -------------------------------------------------------------------------------

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[Executed]:
        if not self.breaker.allow():
            raise VendorUnavailable(self._unavailable())
        order = list(range(len(commands)))
        if self.breaker.state == HALF_OPEN:  # probe with the command least likely to be the problem
            order.sort(key=lambda i: self._failed.get(commands[i]["command_id"], 0))
        results: list[Executed | None] = [None] * len(commands)
        answered: dict[str, Executed] = {}
        for i in order:
            command_id = commands[i]["command_id"]
            if command_id in answered:  # the same command twice in one batch
                results[i] = _again(answered[command_id])
                continue
            kept = self._answers.get(command_id)
            if kept is None:
                done = self._execute_one(commands[i])
                self._keep(command_id, done)
            else:
                done = _again(kept[0]) if kept[1] else kept[0]  # not yet returned: the first answer
            answered[command_id] = results[i] = done
        self._returned(answered)
        return [r for r in results if r is not None]

    def recover(self) -> None:
        """Wait (interruptibly) until the breaker lets a probe through."""
        delay = self.breaker.retry_in()
        if delay > 0:
            self.sleep(delay)

    def close(self) -> None:
        self._answers.clear()
        self._failed.clear()

    # one command -------------------------------------------------------------------------------

    def _execute_one(self, command: dict[str, Any]) -> Executed:
        problem = self._problem(command)
        if problem is not None:
            log.warning("%s: command %s refused: %s", self.store, command["command_id"], problem)
            return self._answer(command, "FAILED", problem, dead_letter=problem)
        url = self.vendor.url(command["category"], command["record_key"])
        command_id = command["command_id"]
        while True:
            if not self.breaker.allow():
                raise VendorUnavailable(self._unavailable())
            probe = self.breaker.state == HALF_OPEN
            attempt = self._call(url)
            if attempt.result in ("deleted", "not_found"):
                self.breaker.success()
                return self._answer(command, "DELETED" if attempt.result == "deleted" else "NOT_FOUND", None)
            if attempt.result == "permanent":
                self.breaker.success()  # the vendor is up: it answered, and refused
                reason = f"{attempt.reason} from {self.store} (permanent, not retried)"
                log.warning("%s: command %s failed: %s", self.store, command_id, reason)
                return self._answer(command, "FAILED", reason, dead_letter=reason)
            self._last_reason = attempt.reason
            opened = self.breaker.failure()
            if probe:  # the vendor is still failing; not this command's fault
                raise VendorUnavailable(f"{self.store}: probe failed ({attempt.reason}); circuit open again")
            failed = self._count_failure(command_id)
            if failed >= self.vendor.max_attempts:
                reason = f"gave up after {failed} attempts: {attempt.reason}"
                log.warning("%s: command %s %s", self.store, command_id, reason)
                return self._answer(command, "FAILED", reason, dead_letter=reason)
            if opened:
                raise VendorUnavailable(self._unavailable())
            delay = backoff_delay(failed, self.vendor.backoff_base, self.vendor.backoff_max, self.random)
            if attempt.retry_after is not None:
                delay = max(delay, min(attempt.retry_after, self.vendor.backoff_max))
            log.info(
                "%s: command %s attempt %d: %s; retrying in %.2fs",
                self.store,
                command_id,
                failed,
                attempt.reason,
                delay,
            )
            self.sleep(delay)
            if self.stop.is_set():
                raise VendorUnavailable(f"{self.store}: stopping")

    def _call(self, url: str) -> _Attempt:
        timeout = self.vendor.timeout
        started = self.monotonic()
        try:
            answer = self.transport(self.vendor.method, url, self.headers, timeout)
        except TimeoutError:
            attempt = _Attempt("timeout", f"timeout after {timeout:g}s")
        except (OSError, HTTPException) as exc:
            attempt = _Attempt("connection_error", type(exc).__name__)
        else:
            attempt = _Attempt(
                classify(self.vendor, answer.status), f"HTTP {answer.status}", answer.retry_after
            )
        metrics.VENDOR_REQUEST_SECONDS.labels(self.store).observe(max(0.0, self.monotonic() - started))
        metrics.VENDOR_ATTEMPTS.labels(self.store, attempt.result).inc()
        return attempt

    def _problem(self, command: dict[str, Any]) -> str | None:
        if command["store"] != self.store:
            return f"command for store {command['store']} sent to {self.store}"
        if not self.vendor.holds(command["category"]):
            return f"vendor config of {self.store} has no category {command['category']}"
        return None

    def _answer(
        self, command: dict[str, Any], outcome: str, reason: str | None, dead_letter: str | None = None
    ) -> Executed:
        rows = 1 if outcome == "DELETED" else 0
        return executed(
            command, outcome, rows, reason, self.clock(), dead_letter=dead_letter, signer=self.receipt_signer
        )

    # bookkeeping -------------------------------------------------------------------------------

    def _count_failure(self, command_id: str) -> int:
        failed = self._failed.pop(command_id, 0) + 1
        self._failed[command_id] = failed
        while len(self._failed) > self.cache_size:
            self._failed.popitem(last=False)
        return failed

    def _keep(self, command_id: str, done: Executed) -> None:
        self._answers[command_id] = (done, False)
        while len(self._answers) > self.cache_size:
            self._answers.popitem(last=False)

    def _returned(self, answered: Mapping[str, Executed]) -> None:
        """The batch is answered: successes stay for replays; failures go, so a re-issue is tried again."""
        for command_id, done in answered.items():
            self._failed.pop(command_id, None)
            if done.receipt["outcome"] == "FAILED":
                self._answers.pop(command_id, None)
            elif command_id in self._answers:
                self._answers[command_id] = (self._answers[command_id][0], True)

    def _unavailable(self) -> str:
        return (
            f"{self.store}: circuit open for {self.breaker.retry_in():.1f}s more after "
            f"{self.breaker.failures} consecutive failures (last: {self._last_reason or 'none'})"
        )

    def _breaker_changed(self, state: str) -> None:
        metrics.SINK_CIRCUIT_OPEN.labels(self.store).set(0 if state == CLOSED else 1)
        if state == OPEN and self.breaker.failures > self.breaker.threshold:  # a probe failed
            log.info("%s: probe failed (%s); circuit open again", self.store, self._last_reason)
        elif state == OPEN:
            log.error(
                "%s: circuit open after %d consecutive failures (last: %s); calls suspended for %gs",
                self.store,
                self.breaker.failures,
                self._last_reason,
                self.breaker.open_seconds,
            )
        elif state == CLOSED:
            log.warning("%s: circuit closed, the vendor answers again", self.store)


def _again(done: Executed) -> Executed:
    """An answer given again: the same receipt, not applied twice, not dead-lettered twice."""
    return Executed(done.receipt, done.encoded, repeated=True)
