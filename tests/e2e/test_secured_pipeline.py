"""The pipeline over the broker's SASL_SSL listener: every process (worker, PostgreSQL sinks, the
publisher, the clock, the CLI) connects with TLS, trusting the local stack's CA, and SCRAM-SHA-512,
each as its own user with only the ACLs `ebbtide acls apply` grants it.
publish -> stamp -> tick -> command -> row deleted -> receipt -> signed certificate. A wrong
password or an untrusted CA stops a command, a worker and a sink with one line naming the setting.

The listener is the one deploy/local/kafka.sh starts (EBBTIDE_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP, its
CA in EBBTIDE_LOCAL_KAFKA_SSL_CAFILE, the users' passwords in EBBTIDE_LOCAL_KAFKA_USERS_DIR); the
administrator's part (topics, ACLs, reading results, `certificate get`) is its super user
``admin``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ebbtide.runtime import kafka
from ebbtide.runtime.keys import read_or_make_key
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import processes
from ebbtide.tools.acls import Principals, plan
from tests.e2e.test_pipeline import CLOSED_ACCOUNT, Pipeline, publish, rows, tick
from tests.e2e.test_pipeline import customer_db as customer_db  # the fixture: its demo database
from tests.support import TopicReader, revealed, wait_until

LISTENER = (
    "EBBTIDE_LOCAL_KAFKA_SASL_SSL_BOOTSTRAP",
    "EBBTIDE_LOCAL_KAFKA_SSL_CAFILE",
    "EBBTIDE_LOCAL_KAFKA_USERS_DIR",
)
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")  # a sink's, as it starts
UNTRUSTED_CA = Path(__file__).parents[1] / "unit" / "ebbtide" / "runtime" / "test-ca.pem"


@pytest.fixture
def secured(settings: Settings) -> Settings:
    """This test's settings (topics, database, ports) on the SASL_SSL listener as User:admin. A
    failure, not a skip, if the stack has no such listener."""
    missing = [name for name in LISTENER if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: restart the stack with this deploy/local/kafka.sh "
            "(it adds the SASL_SSL listener) and export $EBBTIDE_STATE_DIR/env"
        )
    bootstrap, cafile, users = (os.environ[name] for name in LISTENER)
    return replace(
        settings,
        kafka_bootstrap=bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="admin",
        kafka_sasl_password_file=Path(users) / "admin",
        kafka_ssl_cafile=Path(cafile),
    )


def as_user(settings: Settings, user: str) -> Settings:
    assert settings.kafka_sasl_password_file is not None
    return replace(
        settings,
        kafka_sasl_username=user,
        kafka_sasl_password_file=settings.kafka_sasl_password_file.with_name(user),
    )


class RolePipeline(Pipeline):
    """The worker as User:worker and the sinks as User:sink."""

    def start(self, name: str) -> processes.Child:
        admin = self.settings
        self.settings = as_user(admin, "worker" if name == "worker" else "sink")
        try:
            return super().start(name)
        finally:
            self.settings = admin


@pytest.fixture
def acls(secured: Settings) -> Iterator[None]:
    """The pipeline's ACLs for this test's topics, applied with `ebbtide acls apply` (as admin,
    over SASL_SSL); deleted afterwards (ACLs outlive their topics)."""
    applied = cli(secured, "acls", "apply", "--store", "customer_db", "--store", "billing_db")
    assert applied.returncode == 0, applied.stderr
    # ACLs reach the broker's authorizer through its metadata log, just after CreateAcls answers.
    worker = kafka.consumer(as_user(secured, "worker"), client_id=None)
    try:
        events = Topics(secured.topic_prefix).events
        wait_until(lambda: events in worker.topics(), 20, "User:worker seeing the events topic")
    finally:
        worker.close()
    yield
    admin = kafka.admin(secured, client_id=None)
    try:
        admin.delete_acls([g.acl() for g in plan(secured, ["customer_db", "billing_db"], Principals())])
    finally:
        admin.close()


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebbtide", *args],
        env=processes.settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_closed_account_is_deleted_and_certified_over_sasl_ssl(
    secured: Settings, customer_db: str, acls: None, tmp_path: Path
) -> None:
    made = cli(secured, "topics", "create", "--store", "customer_db", "--store", "billing_db")
    assert made.returncode == 0 and "exists  " in made.stdout, made.stderr  # made by the fixture
    pipeline = RolePipeline(secured, tmp_path / "logs")
    producer, clock = as_user(secured, "producer"), as_user(secured, "clock")
    try:
        publish(producer, CLOSED_ACCOUNT)
        tick(clock, datetime(2023, 6, 1, tzinfo=UTC))
        pipeline.wait_confirmed({"customer_db/client/1", "customer_db/correspondence/20"})
        assert rows(customer_db, "SELECT customer_id FROM customers") == [(2,)]
        tick(clock, datetime(2025, 1, 2, tzinfo=UTC))
        pipeline.wait_confirmed({"billing_db/invoice/10"})
        assert rows(customer_db, "SELECT count(*) FROM billing.invoices") == [(0,)]

        receipts = TopicReader(secured, pipeline.topics.receipts)
        receipts.wait_for(lambda seen: len(seen) >= 3, 30, "three receipts")
        receipts.close()
        certificates = TopicReader(secured, pipeline.topics.certificates)
        certificates.wait_for(
            lambda seen: any(r.key == b"cust-00001" for r in seen), 30, "the certificate of cust-00001"
        )
        certificates.close()
    finally:
        pipeline.stop()
    out = tmp_path / "certificates"
    got = cli(pipeline.settings, "certificate", "get", "cust-00001", "--out", str(out))
    assert got.returncode == 0, got.stderr
    documents = [json.loads(path.read_text()) for path in sorted(out.glob("certificate-*.json"))]
    entries = {e["record"] for d in documents for e in revealed(d["certificate"]["entries"], "cust-00001")}
    shredded = {record for record in entries if record.startswith("keys/key/")}
    assert len(shredded) == 1  # its data key, destroyed once no copy of it was left
    assert entries - shredded == {
        "customer_db/client/1",
        "customer_db/correspondence/20",
        "billing_db/invoice/10",
    }
    public = str(secured.signing_key.with_suffix(".pub"))
    valid = cli(secured, "certificate", "verify", str(out / "certificate-1.json"), "--public-key", public)
    assert valid.returncode == 0 and valid.stdout.startswith("VALID"), valid.stdout + valid.stderr


WRONG = {
    "password": (
        "EBBTIDE_KAFKA_SASL_USERNAME / EBBTIDE_KAFKA_SASL_PASSWORD_FILE: the broker at {bootstrap} "
        "refused user admin (SCRAM-SHA-512): wrong user name or password"
    ),
    "CA": "EBBTIDE_KAFKA_SSL_CAFILE: the certificate of the broker at {bootstrap} is not trusted",
}
PROCESSES = {
    "cli": ["topics", "create", "--store", "customer_db"],
    "worker": ["worker"],
    "sink": ["sink", "postgres"],
}


@pytest.mark.parametrize(
    ("wrong", "process"),
    [("password", "cli"), ("CA", "cli"), ("password", "sink"), ("CA", "sink"), ("password", "worker")],
)
def test_a_wrong_password_or_an_untrusted_ca_stops_a_process_with_one_line(
    secured: Settings, customer_db: str, tmp_path: Path, process: str, wrong: str
) -> None:
    if wrong == "password":
        password = tmp_path / "wrong-password"
        password.write_text("not-the-password\n")
        broken = replace(secured, kafka_sasl_password_file=password)
    else:
        broken = replace(secured, kafka_ssl_cafile=UNTRUSTED_CA)
    read_or_make_key(broken.signing_key, "certificate signing key")  # what a sink verifies with
    ran = cli(broken, *PROCESSES[process], timeout=60)
    *logged, last = ran.stderr.strip().splitlines()
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    assert last.startswith("ebbtide: ") and WRONG[wrong].format(bootstrap=secured.kafka_bootstrap) in last
    assert all(LOG_RECORD.match(line) for line in logged), ran.stderr  # before it: log records only
    assert "not-the-password" not in ran.stderr + ran.stdout
