"""The HTTP vendor sink's policy, with a scripted transport and injected time: status classes,
backoff schedule, circuit breaker, replays, and the vendor config's errors."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ebbtide.sinks.http.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, backoff_delay, classify
from ebbtide.sinks.http.executor import HttpExecutor, VendorUnavailable
from ebbtide.sinks.http.transport import Answer
from ebbtide.sinks.http.vendors import DEFAULT_VENDORS, Vendor, VendorConfigError, load_vendors
from tests.support import deletion_command

STORES = Path(__file__).resolve().parents[4] / "streams" / "policy" / "stores.v1.toml"
EXECUTED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

VENDOR = Vendor(
    store="acme",
    name="Acme",
    base_url="http://127.0.0.1:9/acme",
    path="/{category}/{record_key}",
    categories=("client",),
    max_attempts=4,
    breaker_threshold=10,
)

Script = Callable[[str], Answer]  # url -> answer (or raises)


class Time:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Vendorish:
    """A scripted transport: ``answers`` are used in order (the last one repeats), or ``by_key``
    answers per record key; records every call."""

    def __init__(
        self, *answers: Answer | BaseException, by_key: Callable[[str], Answer] | None = None
    ) -> None:
        self.answers = list(answers)
        self.by_key = by_key
        self.calls: list[tuple[str, str, dict[str, str], float]] = []

    def __call__(self, method: str, url: str, headers: Mapping[str, str], timeout: float) -> Answer:
        self.calls.append((method, url, dict(headers), timeout))
        if self.by_key is not None:
            return self.by_key(url.rsplit("/", 1)[-1])
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def urls(self) -> list[str]:
        return [url for _, url, _, _ in self.calls]


def command(
    key: str = "k1", category: str = "client", store: str = "acme", command_id: str | None = None
) -> dict[str, Any]:
    return deletion_command(store, category, key, command_id=command_id or f"cmd-{key}")


def make(
    transport: Vendorish,
    vendor: Vendor = VENDOR,
    time: Time | None = None,
    random: float = 1.0,
    **options: Any,
) -> tuple[HttpExecutor, Time]:
    time = time or Time()
    executor = HttpExecutor(
        vendor,
        transport=transport,
        clock=lambda: EXECUTED_AT,
        monotonic=time.monotonic,
        sleep=options.pop("sleep", time.sleep),
        random=lambda: random,
        **options,
    )
    return executor, time


def outcomes(done: list[Any]) -> list[tuple[str, str | None, bool, str | None]]:
    return [(d.receipt["outcome"], d.receipt["reason"], d.repeated, d.dead_letter) for d in done]


# -- classification and backoff ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (200, "deleted"),
        (202, "deleted"),
        (204, "deleted"),
        (404, "not_found"),
        (410, "not_found"),
        (429, "retryable"),
        (500, "retryable"),
        (503, "retryable"),
        (504, "retryable"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (422, "permanent"),
        (501, "permanent"),
        (201, "permanent"),  # not a status the vendor's config says means "deleted"
        (301, "permanent"),
    ],
)
def test_statuses_are_classified_by_the_vendors_config(status: int, result: str) -> None:
    assert classify(VENDOR, status) == result


def test_a_vendor_can_say_which_statuses_mean_what() -> None:
    odd = replace(VENDOR, deleted_statuses=frozenset({200}), not_found_statuses=frozenset({204, 404}))
    assert (classify(odd, 200), classify(odd, 204), classify(odd, 202)) == (
        "deleted",
        "not_found",
        "permanent",
    )


def test_the_backoff_is_exponential_capped_and_fully_jittered() -> None:
    top = [backoff_delay(n, 0.5, 30.0, lambda: 1.0) for n in range(1, 10)]
    assert top == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert [backoff_delay(n, 0.5, 30.0, lambda: 0.25) for n in (1, 3, 8)] == [0.125, 0.5, 7.5]
    assert backoff_delay(5, 0.5, 30.0, lambda: 0.0) == 0.0


# -- one command: retries, give-up, permanent failures ----------------------------------------


def test_a_vendor_failing_twice_then_answering_is_a_deletion_after_two_backoffs() -> None:
    vendor = Vendorish(Answer(500), Answer(503), Answer(204))
    executor, time = make(vendor, random=0.5)
    (done,) = executor.execute([command("k1")])
    assert outcomes([done]) == [("DELETED", None, False, None)]
    assert (done.receipt["rows"], done.receipt["executed_at"]) == (1, EXECUTED_AT)
    assert time.sleeps == [0.25, 0.5]  # random() * 0.5 * 2**(n-1)
    assert vendor.urls() == ["http://127.0.0.1:9/acme/client/k1"] * 3
    assert vendor.calls[0][0] == "DELETE" and vendor.calls[0][3] == 10.0


def test_a_record_the_vendor_does_not_have_is_not_found() -> None:
    executor, time = make(Vendorish(Answer(404)))
    (done,) = executor.execute([command()])
    assert outcomes([done]) == [("NOT_FOUND", None, False, None)]
    assert done.receipt["rows"] == 0 and time.sleeps == []


def test_a_refusal_fails_at_once_and_is_dead_lettered_with_its_status() -> None:
    vendor = Vendorish(Answer(403))
    executor, time = make(vendor)
    (done,) = executor.execute([command()])
    reason = "HTTP 403 from acme (permanent, not retried)"
    assert outcomes([done]) == [("FAILED", reason, False, reason)]
    assert len(vendor.calls) == 1 and time.sleeps == []


def test_after_max_attempts_the_command_gives_up_with_the_last_reason() -> None:
    vendor = Vendorish(Answer(502), TimeoutError(), ConnectionRefusedError(111, "refused"))
    executor, time = make(vendor)
    (done,) = executor.execute([command()])
    reason = "gave up after 4 attempts: ConnectionRefusedError"
    assert outcomes([done]) == [("FAILED", reason, False, reason)]
    assert len(vendor.calls) == 4 and time.sleeps == [0.5, 1.0, 2.0]


def test_a_timeout_is_retried_and_named_with_the_timeout() -> None:
    vendor = Vendorish(TimeoutError())
    executor, _ = make(vendor, replace(VENDOR, timeout=0.2, max_attempts=2))
    (done,) = executor.execute([command()])
    assert done.dead_letter == "gave up after 2 attempts: timeout after 0.2s"
    assert [timeout for *_, timeout in vendor.calls] == [0.2, 0.2]


def test_retry_after_is_honoured_up_to_the_backoff_cap() -> None:
    vendor = Vendorish(Answer(429, retry_after=7), Answer(503, retry_after=3600), Answer(204))
    executor, time = make(vendor, replace(VENDOR, backoff_max=60.0), random=0.0)
    assert outcomes(executor.execute([command()])) == [("DELETED", None, False, None)]
    assert time.sleeps == [7.0, 60.0]


def test_commands_for_another_store_or_an_unheld_category_fail_without_a_call() -> None:
    vendor = Vendorish(Answer(204))
    executor, _ = make(vendor)
    wrong_store, wrong_category = executor.execute(
        [command(store="other"), command("k2", category="invoice")]
    )
    assert wrong_store.dead_letter == "command for store other sent to acme"
    assert wrong_category.dead_letter == "vendor config of acme has no category invoice"
    assert vendor.calls == []


def test_record_keys_are_url_quoted_and_per_category_paths_apply() -> None:
    vendor = Vendorish(Answer(204))
    paths = {"client": "/users/{record_key}.json"}
    executor, _ = make(vendor, replace(VENDOR, paths=paths, categories=None))
    executor.execute([command("a/b c?", command_id="one"), command("x", category="ticket", command_id="two")])
    assert vendor.urls() == [
        "http://127.0.0.1:9/acme/users/a%2Fb%20c%3F.json",
        "http://127.0.0.1:9/acme/ticket/x",
    ]


def test_the_token_goes_in_the_configured_header_and_a_missing_one_is_a_config_error() -> None:
    vendor = Vendorish(Answer(204))
    authed = replace(VENDOR, auth_header="Authorization", auth_env="ACME_TOKEN", auth_scheme="Bearer")
    executor, _ = make(vendor, authed, environ={"ACME_TOKEN": "s3cret"})
    executor.execute([command()])
    assert vendor.calls[0][2] == {"Authorization": "Bearer s3cret"}
    with pytest.raises(
        VendorConfigError, match="vendor acme: auth_env: environment variable ACME_TOKEN is not set"
    ):
        make(vendor, authed, environ={})


def test_a_stopping_sink_does_not_sleep_on_nor_give_up() -> None:
    stop = threading.Event()
    stop.set()
    vendor = Vendorish(Answer(500))
    executor, _ = make(vendor, stop=stop, sleep=stop.wait)
    with pytest.raises(VendorUnavailable, match="stopping"):
        executor.execute([command()])
    assert len(vendor.calls) == 1


# -- the circuit breaker ------------------------------------------------------------------------


def test_the_breaker_opens_after_k_failures_probes_once_after_the_open_time_and_closes_on_success() -> None:
    time = Time()
    changes: list[str] = []
    breaker = CircuitBreaker(3, 30.0, time.monotonic, changes.append)
    assert not breaker.failure() and not breaker.failure()
    breaker.success()  # a success in between: the count starts again
    assert not breaker.failure() and not breaker.failure()
    assert breaker.state == CLOSED and breaker.allow()
    assert breaker.failure()  # the third in a row
    assert (breaker.state, breaker.allow(), breaker.retry_in()) == (OPEN, False, 30.0)
    time.now += 29.9
    assert breaker.state == OPEN and breaker.retry_in() == pytest.approx(0.1)
    time.now += 0.1
    assert (breaker.state, breaker.allow(), breaker.retry_in()) == (HALF_OPEN, True, 0.0)
    assert breaker.failure()  # the probe failed: open for another 30 s
    assert (breaker.state, breaker.retry_in()) == (OPEN, 30.0)
    time.now += 30
    assert breaker.state == HALF_OPEN
    breaker.success()
    assert (breaker.state, breaker.failures) == (CLOSED, 0)
    assert changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def circuit(store: str) -> float | None:
    return REGISTRY.get_sample_value("ebbtide_sink_circuit_open", {"store": store})


def test_while_the_vendor_is_down_the_batch_waits_and_nothing_is_answered_or_dead_lettered() -> None:
    vendor = Vendorish(Answer(503))
    down = replace(
        VENDOR, store="down_vendor", breaker_threshold=2, max_attempts=3, breaker_open_seconds=30.0
    )
    executor, time = make(vendor, down)
    batch = [command("k1", store="down_vendor"), command("k2", store="down_vendor")]
    for _ in range(10):  # ten open periods: far more failed calls than max_attempts
        with pytest.raises(VendorUnavailable):
            executor.execute(batch)
        assert circuit("down_vendor") == 1
        calls = len(vendor.calls)
        with pytest.raises(VendorUnavailable, match=r"circuit open for 30\.0s more"):
            executor.execute(batch)  # open: the vendor is not called at all
        assert len(vendor.calls) == calls
        executor.recover()  # waits out the open period (injected sleep)
    assert len(vendor.calls) == 2 + 9  # two to open it, then one probe per open period
    assert time.sleeps == [0.5] + [30.0] * 10  # one backoff, then recover() waits out each open period
    # k1 failed twice; the probes are k2's (fewest failures), which they do not count against
    assert (
        vendor.urls() == ["http://127.0.0.1:9/acme/client/k1"] * 2 + ["http://127.0.0.1:9/acme/client/k2"] * 9
    )
    vendor.answers = [Answer(204)]
    done = executor.execute(batch)
    assert outcomes(done) == [("DELETED", None, False, None)] * 2
    assert circuit("down_vendor") == 0


def test_the_probe_is_the_command_with_fewest_failures_so_a_poison_command_gives_up_alone() -> None:
    """The vendor refuses one record with 500s forever; the breaker it opens closes on another
    command's probe, and the poison command gives up after its own max_attempts."""
    vendor = Vendorish(by_key=lambda key: Answer(500 if key == "poison" else 204))
    poisoned = replace(VENDOR, breaker_threshold=3, max_attempts=5)
    executor, _ = make(vendor, poisoned)
    batch = [command("poison"), command("fine")]
    with pytest.raises(VendorUnavailable):
        executor.execute(batch)
    assert vendor.urls() == ["http://127.0.0.1:9/acme/client/poison"] * 3
    executor.recover()
    done = executor.execute(batch)
    reason = "gave up after 5 attempts: HTTP 500"
    assert outcomes(done) == [("FAILED", reason, False, reason), ("DELETED", None, False, None)]
    assert [u.rsplit("/", 1)[-1] for u in vendor.urls()[3:]] == ["fine", "poison", "poison"]
    assert executor.breaker.state == CLOSED


# -- replays ------------------------------------------------------------------------------------


def test_a_replayed_command_gets_the_same_receipt_without_calling_the_vendor() -> None:
    vendor = Vendorish(Answer(204))
    executor, _ = make(vendor)
    (first,) = executor.execute([command()])
    (again,) = executor.execute([command()])
    assert again.repeated and again.encoded == first.encoded
    assert len(vendor.calls) == 1


def test_the_same_command_twice_in_a_batch_is_called_once() -> None:
    vendor = Vendorish(Answer(403))
    executor, _ = make(vendor)
    first, second = executor.execute([command(), command()])
    assert (first.repeated, second.repeated) == (False, True)
    assert first.dead_letter and second.dead_letter is None  # dead-lettered once
    assert second.encoded == first.encoded and len(vendor.calls) == 1


def test_a_batch_retried_after_the_breaker_opened_reuses_the_answers_it_had() -> None:
    vendor = Vendorish(Answer(204), Answer(503))
    executor, _ = make(vendor, replace(VENDOR, breaker_threshold=1))
    batch = [command("k1"), command("k2")]
    with pytest.raises(VendorUnavailable):
        executor.execute(batch)
    executor.recover()
    vendor.answers = [Answer(204)]
    done = executor.execute(batch)
    # k1 was deleted in the aborted attempt: its first receipt, still first (never returned before)
    assert outcomes(done) == [("DELETED", None, False, None)] * 2
    assert vendor.urls() == [f"http://127.0.0.1:9/acme/client/{k}" for k in ("k1", "k2", "k2")]


def test_a_failure_once_returned_is_forgotten_so_the_reissued_command_is_tried_again() -> None:
    vendor = Vendorish(Answer(403), Answer(204))
    executor, _ = make(vendor)
    (failed,) = executor.execute([command()])
    (done,) = executor.execute([command()])  # the pipeline orders it again, same id
    assert (failed.receipt["outcome"], done.receipt["outcome"], done.repeated) == ("FAILED", "DELETED", False)
    assert len(vendor.calls) == 2


# -- the vendors file ---------------------------------------------------------------------------


def test_the_shipped_vendors_are_the_http_stores_of_the_store_map_with_their_categories() -> None:
    vendors = load_vendors(environ={})
    stores = tomllib.loads(STORES.read_text())["stores"]
    http = {s["id"]: {h["category"] for h in s["holds"]} for s in stores if s["kind"] == "http"}
    assert {v.store: set(v.categories or ()) for v in vendors.values()} == http
    for vendor in vendors.values():  # nothing leaves loopback unless a deployment says so
        assert vendor.base_url == f"http://127.0.0.1:9320/{vendor.store}"


def test_base_urls_can_come_from_the_environment() -> None:
    shared = load_vendors(environ={"EBBTIDE_VENDOR_URL": "http://127.0.0.1:5000/"})
    assert shared["chat_vendor"].base_url == "http://127.0.0.1:5000/chat_vendor"
    both = {
        "EBBTIDE_VENDOR_URL": "http://127.0.0.1:5000",
        "EBBTIDE_VENDOR_HOSTING_URL": "https://h.example/v1",
    }
    vendors = load_vendors(environ=both)
    assert vendors["hosting"].base_url == "https://h.example/v1"
    assert vendors["hosting"].url("hosted", "site 1") == "https://h.example/v1/hosted/site%201"
    with pytest.raises(
        VendorConfigError, match=r"vendor hosting: base_url \(from EBBTIDE_VENDOR_HOSTING_URL\)"
    ):
        load_vendors(environ={"EBBTIDE_VENDOR_HOSTING_URL": "ftp://h.example"})


GOOD = """
[defaults]
max_attempts = 3

[[vendors]]
store = "acme"
name = "Acme"
base_url = "http://127.0.0.1:9/acme"
path = "/{category}/{record_key}"
"""


def test_defaults_apply_and_a_vendor_overrides_them(tmp_path: Path) -> None:
    path = tmp_path / "vendors.toml"
    path.write_text(GOOD + "timeout = 2.5\nretry_statuses = [503]\n")
    (acme,) = load_vendors(path, environ={}).values()
    assert (acme.max_attempts, acme.timeout, acme.retry_statuses) == (3, 2.5, frozenset({503}))
    assert (acme.method, acme.breaker_threshold, acme.categories) == ("DELETE", 3, None)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ('name = ""', "vendor acme: name: must be a non-empty string"),
        ('method = "GET"', "vendor acme: method: must be one of DELETE, POST, PUT, PATCH"),
        ('path = "/{category}"', "vendor acme: path: must contain {record_key}"),
        (
            'path = "/{subject_id}/{record_key}"',
            r"vendor acme: path: unknown placeholder\(s\) \['subject_id'\]",
        ),
        ('path = "{record_key}"', "vendor acme: path: must be a path template starting with '/'"),
        ("timeout = 0", "vendor acme: timeout: must be a number >= 0.001"),
        ('timeout = "10"', "vendor acme: timeout: must be a number"),
        ("max_attempts = 0", "vendor acme: max_attempts: must be a whole number >= 1"),
        ("breaker_threshold = 1.5", "vendor acme: breaker_threshold: must be a whole number"),
        ("backoff_max = 0.1\nbackoff_base = 1.0", "vendor acme: backoff_max: must be >= backoff_base"),
        ("timout = 3", "vendor acme: timout: unknown field"),
        (
            "not_found_statuses = [404, 503]",
            "vendor acme: retry_statuses: status 503 is also in not_found_statuses",
        ),
        (
            "deleted_statuses = [200, 1000]",
            "vendor acme: deleted_statuses: must be a list of HTTP status codes",
        ),
        ('auth_header = "Authorization"', "vendor acme: auth_env: auth_header and auth_env go together"),
        ('auth_header = "Bad Header"\nauth_env = "T"', "vendor acme: auth_header: not an HTTP header name"),
        ('auth_header = "X-Token"\nauth_env = "s3cret-token"', "vendor acme: auth_env: must be the NAME"),
        (
            'categories = ["client"]\npaths = { ticket = "/t/{record_key}" }',
            "vendor acme: paths: category 'ticket'",
        ),
        (
            'base_url = "http://127.0.0.1:9/acme?x=1"',
            "vendor acme: base_url: must be an http:// or https:// URL",
        ),
        ('base_url = "http://127.0.0.1:port/acme"', "vendor acme: base_url: bad port"),
    ],
)
def test_a_bad_field_is_refused_naming_the_file_the_vendor_and_the_field(
    tmp_path: Path, change: str, error: str
) -> None:
    path = tmp_path / "vendors.toml"
    key = change.split("=")[0].strip()
    kept = "\n".join(line for line in GOOD.splitlines() if not line.startswith(f"{key} ="))
    path.write_text(kept + "\n" + change + "\n")
    with pytest.raises(VendorConfigError, match=error) as caught:
        load_vendors(path, environ={})
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no \\[\\[vendors\\]\\]"),
        ("[defaults]\nretries = 3\n" + GOOD.split("[[vendors]]")[1], "defaults: unknown field"),
        (GOOD + GOOD.split("max_attempts = 3")[1], "vendor acme: store: configured twice"),
        (
            GOOD.replace('store = "acme"', 'store = "Acme Inc"'),
            "vendors\\[0\\]: store: must be a lower-case store id",
        ),
        ("[[vendors]\n", "Expected"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "vendors.toml"
    path.write_text(text)
    with pytest.raises(VendorConfigError, match=error) as caught:
        load_vendors(path, environ={})
    assert str(caught.value).startswith(f"{path}: ")


def test_the_default_file_is_the_one_shipped_beside_the_code() -> None:
    assert DEFAULT_VENDORS.name == "vendors.toml" and DEFAULT_VENDORS.is_file()


def test_a_tuned_vendors_file_sets_the_value_for_every_vendor(tmp_path: Path) -> None:
    from ebbtide.sinks.http.vendors import load_vendors, tuned

    path = tmp_path / "vendors.toml"
    path.write_text(tuned({"timeout": 0.5, "breaker_open_seconds": 1.5}))
    vendors = load_vendors(path, environ={})
    assert {v.timeout for v in vendors.values()} == {0.5}  # the registries' own 20 s too
    assert {v.breaker_open_seconds for v in vendors.values()} == {1.5}
    with pytest.raises(VendorConfigError, match="cannot tune base_url"):
        tuned({"base_url": 1})
