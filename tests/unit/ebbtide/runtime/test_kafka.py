"""The Kafka client factory: every client gets its connection from one module, with the ids,
acknowledgements and timeouts each had before (what a client says to the broker is observable)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka_security import KafkaSecurity
from ebbtide.runtime.settings import Settings
from ebbtide.tools.acls import Connection

CA = Path(__file__).parent / "test-ca.pem"  # a self-signed CA certificate (CN=Test CA), no key
SETTINGS = Settings(kafka_bootstrap="broker-1:9092,broker-2:9092", session_timeout=30.0)


class Recorded:
    """Stands in for a kafka-python client class: keeps the keywords it was built with."""

    def __init__(self, *topics: str, **config: Any) -> None:
        self.topics, self.config = topics, config


def test_kafka_python_clients_connect_as_ebbtide_or_as_the_librarys_default() -> None:
    brokers = SETTINGS.kafka_bootstrap
    assert kafka.connection(SETTINGS) == {"bootstrap_servers": brokers, "client_id": "ebbtide"}
    assert kafka.connection(SETTINGS, client_id=None) == {"bootstrap_servers": SETTINGS.kafka_bootstrap}


def test_the_producer_is_durable_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "KafkaProducer", Recorded)
    made: Any = kafka.producer(SETTINGS, timeout=10.0)
    assert made.config == {
        "bootstrap_servers": SETTINGS.kafka_bootstrap,
        "client_id": "ebbtide",
        "acks": "all",
        "linger_ms": 5,
        "max_in_flight_requests_per_connection": 1,
        "delivery_timeout_ms": 10_000,
        "request_timeout_ms": 9_995,
        "max_block_ms": 10_000,
        "bootstrap_timeout_ms": 10_000,
    }


def test_consumers_and_admin_clients_take_their_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "KafkaConsumer", Recorded)
    monkeypatch.setattr(kafka, "KafkaAdminClient", Recorded)
    reader: Any = kafka.consumer(SETTINGS, "t", client_id=None, enable_auto_commit=False)
    assert reader.topics == ("t",)
    assert reader.config == {"bootstrap_servers": SETTINGS.kafka_bootstrap, "enable_auto_commit": False}
    bounded: Any = kafka.offsets_reader(SETTINGS, timeout=2.5)
    assert bounded.config == {
        "bootstrap_servers": SETTINGS.kafka_bootstrap,
        "client_id": "ebbtide",
        "request_timeout_ms": 2500,
        "bootstrap_timeout_ms": 2500,
    }
    assert kafka.offsets_reader(SETTINGS).config == kafka.connection(SETTINGS)  # type: ignore[attr-defined]
    assert kafka.admin(SETTINGS).config == kafka.connection(SETTINGS)  # type: ignore[attr-defined]


def test_the_sinks_and_the_worker_get_their_brokers_here() -> None:
    assert kafka.librdkafka_config(SETTINGS) == {
        "bootstrap.servers": SETTINGS.kafka_bootstrap,
        "client.id": "ebbtide",
    }
    assert kafka.faust_config(SETTINGS) == {
        "broker": f"kafka://{SETTINGS.kafka_bootstrap}",
        "broker_session_timeout": 30.0,
        "broker_heartbeat_interval": 3.0,  # at most every 3 s ...
    }
    short = Settings(session_timeout=6.0)
    assert kafka.faust_config(short)["broker_heartbeat_interval"] == 2.0  # ... a third of the session


def test_sasl_and_tls_are_added_in_one_place() -> None:
    chosen = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "admin", "secret", cafile=str(CA))
    config = kafka.client_config("b:9093", "ebbtide-acls", chosen)
    context = config.pop("ssl_context")
    assert config == {
        "bootstrap_servers": "b:9093",
        "client_id": "ebbtide-acls",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "admin",
        "sasl_plain_password": "secret",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "Test CA"),),)]


def test_acls_apply_connects_as_before() -> None:
    plain = Connection("b:9092", timeout=12.0).admin_config()
    assert plain == {
        "bootstrap_servers": "b:9092",
        "client_id": "ebbtide-acls",
        "request_timeout_ms": 12_000,
        "bootstrap_timeout_ms": 12_000,
    }
    as_user = Connection("b:9093", user="admin", password="pw", mechanism="PLAIN").admin_config()
    assert as_user == {
        "bootstrap_servers": "b:9093",
        "client_id": "ebbtide-acls",
        "request_timeout_ms": 30_000,
        "bootstrap_timeout_ms": 30_000,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "admin",
        "sasl_plain_password": "pw",
    }


def test_acls_apply_without_a_user_connects_as_the_settings_say() -> None:
    chosen = KafkaSecurity("SASL_SSL", "PLAIN", "ops", "pw", cafile=str(CA))
    connection = Connection("b:9095", security=chosen)
    assert connection.admin_config()["sasl_plain_username"] == "ops"
    assert connection.who() == "b:9095 as User:ops"
    explicit = Connection("b:9095", user="admin", password="x", security=chosen)
    assert explicit.admin_config()["sasl_plain_username"] == "admin"
    assert explicit.admin_config()["security_protocol"] == "SASL_PLAINTEXT"
