"""The HTTP vendor sink against the real vendor stand-in on 127.0.0.1 and, for the loop, the
real broker: retries, timeouts, slow answers, refusals, giving up, and the circuit breaker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks.base.loop import CommandSink
from ebbtide.sinks.http.executor import HttpExecutor, VendorUnavailable
from ebbtide.sinks.http.vendors import Vendor, load_vendors
from tests.support import (
    TopicReader,
    deletion_command,
    free_port,
    make_topics,
    signed_command,
    wait_until,
    worker_signer,
)

ROOT = Path(__file__).resolve().parents[4]


def command(store: str, key: str, category: str | None = None) -> dict[str, Any]:
    category = category or {"support_desk": "client", "chat_vendor": "client"}.get(store, "domain_contact")
    return deletion_command(store, category, key, command_id=f"cmd-{store}-{key}")


@pytest.fixture
def standin() -> Iterator[VendorStandIn]:
    server = VendorStandIn(tokens={"registry_nicse": ("Authorization", "Bearer t0k3n")})
    server.start()
    yield server
    server.stop()


def vendor(standin: VendorStandIn, store: str, **changes: Any) -> Vendor:
    """A shipped vendor pointed at the stand-in (EBBTIDE_VENDOR_URL), with test-sized timings."""
    shipped = load_vendors(environ={"EBBTIDE_VENDOR_URL": standin.url})[store]
    fast = {"timeout": 0.2, "backoff_base": 0.01, "backoff_max": 0.05, "breaker_open_seconds": 0.3}
    return replace(shipped, **{**fast, **changes})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def outcome(done: Any) -> tuple[str, str | None]:
    return done.receipt["outcome"], done.receipt["reason"]


# -- the executor against the stand-in ---------------------------------------------------------


def test_a_vendor_failing_twice_then_answering_deletes_after_retries(standin: VendorStandIn) -> None:
    standin.seed("support_desk", "client", "c-1")
    standin.set_mode("support_desk", "fail", count=2)
    (done,) = HttpExecutor(vendor(standin, "support_desk")).execute([command("support_desk", "c-1")])
    assert outcome(done) == ("DELETED", None) and done.receipt["rows"] == 1
    assert standin.requests("support_desk", "DELETE") == 3
    assert standin.keys("support_desk", "client") == set()


def test_a_timeout_is_retried_within_the_client_timeout(standin: VendorStandIn) -> None:
    standin.seed("support_desk", "client", "c-2")
    standin.set_mode("support_desk", "timeout", count=1)  # held far longer than the client waits
    timeouts = sample("ebbtide_vendor_attempts_total", store="support_desk", result="timeout")
    started = time.monotonic()
    (done,) = HttpExecutor(vendor(standin, "support_desk")).execute([command("support_desk", "c-2")])
    assert outcome(done) == ("DELETED", None)
    assert time.monotonic() - started < 2.0
    assert sample("ebbtide_vendor_attempts_total", store="support_desk", result="timeout") == timeouts + 1
    assert standin.requests("support_desk") == 2


def test_a_slow_answer_within_the_timeout_is_waited_for(standin: VendorStandIn) -> None:
    standin.seed("chat_vendor", "client", "c-3")
    standin.set_mode("chat_vendor", "slow", delay=0.05)
    (done,) = HttpExecutor(vendor(standin, "chat_vendor")).execute([command("chat_vendor", "c-3")])
    assert outcome(done) == ("DELETED", None)
    assert standin.requests("chat_vendor") == 1


def test_a_vendor_that_deletes_after_the_client_gave_up_waiting_is_answered_by_the_retry(
    standin: VendorStandIn,
) -> None:
    standin.seed("chat_vendor", "client", "c-4")
    standin.set_mode("chat_vendor", "slow", count=1, delay=0.6)  # the first call outlives the timeout
    (done,) = HttpExecutor(vendor(standin, "chat_vendor")).execute([command("chat_vendor", "c-4")])
    assert done.receipt["outcome"] in ("DELETED", "NOT_FOUND")  # gone either way: DELETE is idempotent
    assert standin.keys("chat_vendor", "client") == set()
    # the slow call is applied later and finds the record already gone
    wait_until(lambda: standin.stats("chat_vendor")["answers"].get("404"), 5, "the slow call's answer")


def test_a_record_the_vendor_does_not_have_is_not_found(standin: VendorStandIn) -> None:
    (done,) = HttpExecutor(vendor(standin, "ssl_vendor")).execute(
        [command("ssl_vendor", "never-seeded", "ssl_contact")]
    )
    assert outcome(done) == ("NOT_FOUND", None) and done.dead_letter is None


def test_a_refusal_fails_at_once_without_retries(standin: VendorStandIn) -> None:
    standin.set_mode("registry_rtr", "fail", status=422)
    (done,) = HttpExecutor(vendor(standin, "registry_rtr")).execute([command("registry_rtr", "example.com")])
    reason = "HTTP 422 from registry_rtr (permanent, not retried)"
    assert (outcome(done), done.dead_letter) == (("FAILED", reason), reason)
    assert standin.requests("registry_rtr") == 1


def test_n_retryable_failures_give_up_with_the_reason(standin: VendorStandIn) -> None:
    standin.set_mode("registry_norid", "fail")
    executor = HttpExecutor(vendor(standin, "registry_norid", max_attempts=3, breaker_threshold=10))
    (done,) = executor.execute([command("registry_norid", "example.no")])
    reason = "gave up after 3 attempts: HTTP 500"
    assert (outcome(done), done.dead_letter) == (("FAILED", reason), reason)
    assert standin.requests("registry_norid") == 3


def test_a_vendor_nobody_listens_for_is_a_connection_error(standin: VendorStandIn) -> None:
    nowhere = replace(
        vendor(standin, "hosting", max_attempts=2), base_url=f"http://127.0.0.1:{free_port()}/x"
    )
    (done,) = HttpExecutor(nowhere).execute([command("hosting", "site-1", "hosted")])
    assert done.dead_letter == "gave up after 2 attempts: ConnectionRefusedError"


def test_the_token_is_sent_and_a_wrong_one_is_refused(standin: VendorStandIn) -> None:
    authed = replace(
        vendor(standin, "registry_nicse"),
        auth_header="Authorization",
        auth_env="NICSE_TOKEN",
        auth_scheme="Bearer",
    )
    standin.seed("registry_nicse", "domain_contact", "example.se", "example.nu")
    right = HttpExecutor(authed, environ={"NICSE_TOKEN": "t0k3n"})
    assert outcome(right.execute([command("registry_nicse", "example.se")])[0]) == ("DELETED", None)
    wrong = HttpExecutor(authed, environ={"NICSE_TOKEN": "stale"})
    (refused,) = wrong.execute([command("registry_nicse", "example.nu")])
    assert refused.dead_letter == "HTTP 401 from registry_nicse (permanent, not retried)"
    assert standin.keys("registry_nicse", "domain_contact") == {"example.nu"}


def test_the_breaker_opens_on_a_down_vendor_and_closes_when_it_is_back(standin: VendorStandIn) -> None:
    standin.seed("hosting", "hosted", "site-1", "site-2")
    standin.set_mode("hosting", "down")
    executor = HttpExecutor(vendor(standin, "hosting", breaker_threshold=2, max_attempts=5))
    batch = [command("hosting", "site-1", "hosted"), command("hosting", "site-2", "hosted")]
    with pytest.raises(VendorUnavailable):
        executor.execute(batch)
    assert standin.requests("hosting") == 2
    assert sample("ebbtide_sink_circuit_open", store="hosting") == 1
    with pytest.raises(VendorUnavailable):
        executor.execute(batch)  # open: the vendor is left alone
    assert standin.requests("hosting") == 2
    standin.set_mode("hosting", "ok")
    executor.recover()  # waits out the open period
    assert [outcome(d) for d in executor.execute(batch)] == [("DELETED", None)] * 2
    assert sample("ebbtide_sink_circuit_open", store="hosting") == 0
    assert standin.requests("hosting") == 4


def test_the_stand_in_is_driven_over_http_too(standin: VendorStandIn) -> None:
    def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(standin.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            return error.code, None

    assert call("PUT", "/support_desk/client/c-9") == (201, None)
    assert call("GET", "/support_desk/client") == (200, ["c-9"])
    assert call("POST", "/_admin/support_desk", {"mode": "down", "count": 1})[0] == 200
    assert call("DELETE", "/support_desk/client/c-9") == (503, None)
    assert call("DELETE", "/support_desk/client/c-9") == (204, None)
    assert call("DELETE", "/support_desk/client/c-9") == (404, None)
    status, stats = call("GET", "/_admin/support_desk")
    assert (status, stats["mode"], stats["requests"]) == (200, "ok", {"PUT": 1, "GET": 1, "DELETE": 3})
    assert call("POST", "/_admin/support_desk", {"mode": "sideways"})[0] == 400


# -- the sink loop on the real broker ----------------------------------------------------------


class RunningSink:
    def __init__(self, settings: Settings, executor: HttpExecutor, stop: threading.Event) -> None:
        self.stop = stop
        worker_signer(settings)  # the worker key whose .pub the sink verifies commands with
        self.thread = threading.Thread(target=CommandSink(settings, executor, stop).run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def send(settings: Settings, *commands: dict[str, Any]) -> None:
    out = producer(settings)
    codec = codec_for(DELETION_COMMAND)
    for cmd in commands:
        out.send(
            Topics(settings.topic_prefix).commands(cmd["store"]),
            key=cmd["subject_id"].encode(),
            value=codec.encode(signed_command(settings, cmd)),
        )
    out.flush()
    out.close()


def committed(settings: Settings, store: str) -> int:
    """Offsets the store's sink committed, summed over partitions."""
    admin = kafka.admin(settings, client_id=None)
    try:
        group = f"{settings.topic_prefix}-sink-{store}"
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return sum(max(o.offset, 0) for o in offsets.values())


@pytest.fixture
def readers(settings: Settings) -> Iterator[tuple[TopicReader, TopicReader]]:
    topics = make_topics(settings, stores=["support_desk", "chat_vendor"])
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
    dlq = TopicReader(settings, topics.dlq)
    yield receipts, dlq
    receipts.close()
    dlq.close()


def test_the_sink_retries_refuses_and_gives_up_loudly(
    settings: Settings, standin: VendorStandIn, readers: tuple[TopicReader, TopicReader]
) -> None:
    receipts, dlq = readers
    stop = threading.Event()
    executor = HttpExecutor(vendor(standin, "support_desk", max_attempts=3, breaker_threshold=10), stop=stop)
    sink = RunningSink(settings, executor, stop)
    gave_up = sample("ebbtide_sink_gave_up_total", store="support_desk")
    try:
        standin.seed("support_desk", "client", "c-1")
        standin.set_mode("support_desk", "fail", count=2)
        send(settings, command("support_desk", "c-1"), command("support_desk", "c-404"))
        receipts.wait_for(lambda seen: len(seen) >= 2, 30, "two receipts")
        standin.set_mode("support_desk", "fail", status=403)
        send(settings, command("support_desk", "c-403"))
        receipts.wait_for(lambda seen: len(seen) >= 3, 30, "the refusal's receipt")
        standin.set_mode("support_desk", "fail", status=503)
        send(settings, command("support_desk", "c-503"))
        got = receipts.wait_for(lambda seen: len(seen) >= 4, 30, "the given-up receipt")
        dead = dlq.wait_for(lambda seen: len(seen) >= 2, 30, "two dead letters")
    finally:
        sink.close()
    assert [(r.value["record_key"], r.value["outcome"], r.value["reason"]) for r in got if r.value] == [
        ("c-1", "DELETED", None),
        ("c-404", "NOT_FOUND", None),
        ("c-403", "FAILED", "HTTP 403 from support_desk (permanent, not retried)"),
        ("c-503", "FAILED", "gave up after 3 attempts: HTTP 503"),
    ]
    codec = codec_for(DELETION_COMMAND)
    assert [(codec.decode(d.raw)["record_key"], d.headers["reason"]) for d in dead] == [
        ("c-403", b"HTTP 403 from support_desk (permanent, not retried)"),
        ("c-503", b"gave up after 3 attempts: HTTP 503"),
    ]
    assert dead[0].headers["source_topic"] == Topics(settings.topic_prefix).commands("support_desk").encode()
    assert sample("ebbtide_sink_gave_up_total", store="support_desk") == gave_up + 2
    assert standin.requests("support_desk", "DELETE") == 3 + 1 + 1 + 3


def test_while_the_vendor_is_down_the_sink_commits_nothing_and_delivers_when_it_is_back(
    settings: Settings, standin: VendorStandIn, readers: tuple[TopicReader, TopicReader]
) -> None:
    receipts, dlq = readers
    standin.seed("chat_vendor", "client", "c-1", "c-2")
    standin.set_mode("chat_vendor", "down")
    stop = threading.Event()
    executor = HttpExecutor(vendor(standin, "chat_vendor", breaker_threshold=2, max_attempts=3), stop=stop)
    sink = RunningSink(settings, executor, stop)
    try:
        send(settings, command("chat_vendor", "c-1"), command("chat_vendor", "c-2"))
        # the breaker opened, then the loop took the batch again and a probe failed too
        wait_until(lambda: standin.requests("chat_vendor") >= 3, 30, "a probe after the breaker opened")
        assert sample("ebbtide_sink_circuit_open", store="chat_vendor") == 1
        assert receipts.poll() == [] and dlq.poll() == []
        assert committed(settings, "chat_vendor") == 0
        standin.set_mode("chat_vendor", "ok")
        got = receipts.wait_for(lambda seen: len(seen) >= 2, 30, "receipts once the vendor is back")
        wait_until(lambda: committed(settings, "chat_vendor") == 2, 30, "the batch's offsets committed")
    finally:
        sink.close()
    assert sorted((r.value["record_key"], r.value["outcome"]) for r in got if r.value) == [
        ("c-1", "DELETED"),
        ("c-2", "DELETED"),
    ]
    assert dlq.poll() == []
    assert sample("ebbtide_sink_circuit_open", store="chat_vendor") == 0
    assert standin.keys("chat_vendor", "client") == set()


# -- the command line ---------------------------------------------------------------------------


def ebbtide(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ebbtide", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_stand_in_command_prints_its_url_and_stops_on_sigterm() -> None:
    process = ebbtide("vendor-standin", "--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("vendor stand-in on http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(f"{url}/_admin/support_desk", timeout=5) as response:
            assert json.loads(response.read())["mode"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()


def test_the_http_sink_command_runs_the_vendors_and_stops_on_sigterm(
    settings: Settings, standin: VendorStandIn, readers: tuple[TopicReader, TopicReader]
) -> None:
    receipts, _ = readers
    standin.seed("support_desk", "client", "c-1")
    port = free_port()
    env = {
        "EBBTIDE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "EBBTIDE_TOPIC_PREFIX": settings.topic_prefix,
        "EBBTIDE_VENDOR_URL": standin.url,
        "EBBTIDE_STATE_DIR": str(settings.state_dir),  # the worker's public key; the sinks' keys
    }
    worker_signer(settings)
    process = ebbtide(
        "sink", "http", "--stores", "support_desk,chat_vendor", "--metrics-port", str(port), env=env
    )
    try:
        send(settings, command("support_desk", "c-1"), command("chat_vendor", "c-2"))
        got = receipts.wait_for(lambda seen: len(seen) >= 2, 60, "a receipt from each vendor")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            exposed = response.read().decode()
        assert 'ebbtide_sink_circuit_open{store="chat_vendor"} 0.0' in exposed
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert sorted((r.value["store"], r.value["outcome"]) for r in got if r.value) == [
        ("chat_vendor", "NOT_FOUND"),
        ("support_desk", "DELETED"),
    ]
    assert "http sink for support_desk, chat_vendor" in stderr


def test_the_http_sink_command_refuses_an_unknown_store() -> None:
    process = ebbtide("sink", "http", "--stores", "support_desk,fax_vendor")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "no vendor for store(s) fax_vendor" in stderr and "vendors.toml" in stderr
