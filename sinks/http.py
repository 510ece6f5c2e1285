"""The HTTP vendor sink: one configurable REST call per deletion command, for a sub-processor.

:class:`HttpExecutor` is the :class:`~sinks.receipts.BatchExecutor` of one vendor store
(``sinks/vendors.toml``). Per command it calls the vendor and classifies the answer:

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
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ebbtide import metrics
from ebbtide.authenticity import MessageSigner
from ebbtide.settings import Settings
from sinks.receipts import Executed, executed
from sinks.runner import CommandSink
from sinks.vendors import DEFAULT_VENDORS, Vendor, VendorConfigError, load_vendors

log = logging.getLogger(__name__)

HTTP_BATCH = 50  # commands per poll: one HTTP call each, so smaller batches than the database sinks
HTTP_METRICS_PORT = 9311  # beside the PostgreSQL sink's 9309 (deploy/prometheus job ebbtide-sink-http)
CACHE_SIZE = 10_000  # command answers kept for replays
USER_AGENT = "ebbtide-http-sink/1"

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# Result classes of one call (the `result` label of ebbtide_vendor_attempts_total).
RESULTS = ("deleted", "not_found", "permanent", "retryable", "timeout", "connection_error")
_RETRIED = frozenset({"retryable", "timeout", "connection_error"})


class VendorUnavailable(Exception):
    """The vendor cannot be called now (circuit open, or the sink is stopping): retry the batch later."""


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- the call ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a vendor answered: the status, and its Retry-After in seconds if it gave one."""

    status: int
    retry_after: float | None = None


class Transport(Protocol):
    """Makes one HTTP call. Raises ``TimeoutError`` on a timeout, ``OSError`` or
    ``http.client.HTTPException`` when there is no (valid) answer."""

    def __call__(self, method: str, url: str, headers: Mapping[str, str], timeout: float) -> Answer: ...


def http_transport(method: str, url: str, headers: Mapping[str, str], timeout: float) -> Answer:
    """One call with the standard library, on a connection of its own; the body is never read."""
    parts = urlsplit(url)
    connection = (HTTPSConnection if parts.scheme == "https" else HTTPConnection)(
        parts.hostname or "", parts.port, timeout=timeout
    )
    try:
        connection.request(method, parts.path or "/", headers={"User-Agent": USER_AGENT, **headers})
        response = connection.getresponse()
        return Answer(response.status, _seconds(response.getheader("Retry-After")))
    finally:
        connection.close()


def _seconds(header: str | None) -> float | None:
    """Retry-After in seconds (the delay-seconds form; an HTTP date is ignored)."""
    if header is None or not header.strip().isdigit():
        return None
    return float(header.strip())


# -- pure policy: classification, backoff, breaker -----------------------------------------------


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


# -- the executor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attempt:
    result: str  # one of RESULTS
    reason: str  # "HTTP 503", "timeout after 10s", "ConnectionRefusedError"
    retry_after: float | None = None


class HttpExecutor:
    """The :class:`~sinks.receipts.BatchExecutor` of one vendor store (see the module docstring).

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


# -- the sink process ----------------------------------------------------------------------------


class HttpSink(CommandSink):
    """The sink of one vendor store: :class:`~sinks.runner.CommandSink` driving an :class:`HttpExecutor`."""

    def __init__(
        self,
        settings: Settings,
        vendor: Vendor,
        stop: threading.Event | None = None,
        on_batch: Callable[[int], None] | None = None,
        batch_size: int = HTTP_BATCH,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        stop = stop or threading.Event()
        self.vendor = vendor
        super().__init__(
            settings, HttpExecutor(vendor, stop=stop, environ=environ), stop, on_batch, batch_size
        )


def select_vendors(vendors: Mapping[str, Vendor], stores: Sequence[str] | None, source: Path) -> list[Vendor]:
    """The vendors of ``stores`` (all when None or empty), in that order; unknown ids are an error."""
    if not stores:
        return list(vendors.values())
    unknown = [s for s in stores if s not in vendors]
    if unknown:
        raise VendorConfigError(
            f"{source}: no vendor for store(s) {', '.join(unknown)}; known: {', '.join(vendors)}"
        )
    return [vendors[s] for s in dict.fromkeys(stores)]


def run_sinks(settings: Settings, vendors: Sequence[Vendor], stop: threading.Event) -> int:
    """One :class:`HttpSink` thread per vendor until ``stop`` is set or a sink fails (then all stop).
    0 on a clean stop, 1 if a sink failed."""
    sinks = [HttpSink(settings, vendor, stop=stop) for vendor in vendors]  # tokens checked before any runs
    failed: list[str] = []

    def run(sink: HttpSink) -> None:
        try:
            sink.run()
        except Exception:
            log.exception("http sink for %s failed; stopping the others", sink.store)
            failed.append(sink.store)
            stop.set()

    threads = [threading.Thread(target=run, args=(s,), name=f"sink-{s.store}") for s in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short joins: the main thread must stay free for SIGTERM/SIGINT
    return 1 if failed else 0


def run_cli(
    settings: Settings, config: str | None, stores: str | None, metrics_port: int | None, loglevel: str
) -> int:
    """``ebbtide sink http``: the vendor sinks of ``stores`` (comma-separated; default all) in one process."""
    import signal
    import sys

    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = Path(config) if config else DEFAULT_VENDORS
    try:
        wanted = [s.strip() for s in (stores or "").split(",") if s.strip()]
        vendors = select_vendors(load_vendors(path), wanted, path)
        for vendor in vendors:
            vendor.auth_headers()  # a missing token is a config error, before anything starts
    except VendorConfigError as exc:
        print(f"ebbtide sink http: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = HTTP_METRICS_PORT if metrics_port is None else metrics_port
    metrics.serve(port)
    logging.getLogger(__name__).warning(
        "http sink for %s: metrics on 127.0.0.1:%d", ", ".join(v.store for v in vendors), port
    )
    return run_sinks(settings, vendors, stop)
