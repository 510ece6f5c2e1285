"""Kafka security settings: refused at start with the setting's name when they do not fit together,
and the same protocol, credentials and trust given to every client library."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from confluent_kafka import KafkaError

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka_security import KafkaSecurity, _verdict, security
from ebbtide.runtime.settings import Settings, SettingsError

CA = Path(__file__).parent / "test-ca.pem"  # a self-signed CA certificate (CN=Test CA), no key


def secured(tmp_path: Path, **env: str) -> dict[str, str]:
    password = tmp_path / "password"
    password.write_text("s3cret-pw\n")
    return {
        "EBBTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "EBBTIDE_KAFKA_SASL_USERNAME": "worker",
        "EBBTIDE_KAFKA_SASL_PASSWORD_FILE": str(password),
        "EBBTIDE_KAFKA_SSL_CAFILE": str(CA),
        **env,
    }


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    plain = security(Settings.from_env({}))
    assert plain == KafkaSecurity()
    assert plain.python_config() == plain.librdkafka_config() == plain.faust_config() == {}


def test_sasl_ssl_reads_the_password_from_its_file_and_never_shows_it(tmp_path: Path) -> None:
    settings = Settings.from_env(secured(tmp_path))
    chosen = security(settings)
    assert (chosen.protocol, chosen.mechanism, chosen.username) == ("SASL_SSL", "SCRAM-SHA-512", "worker")
    assert chosen.password == "s3cret-pw"
    assert "s3cret" not in repr(chosen) and "s3cret" not in repr(settings)
    from_env = Settings.from_env(
        {**secured(tmp_path), "EBBTIDE_KAFKA_SASL_PASSWORD_FILE": "", "EBBTIDE_KAFKA_SASL_PASSWORD": "pw2"}
    )
    assert security(from_env).password == "pw2"
    assert "pw2" not in repr(from_env)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"EBBTIDE_KAFKA_SASL_USERNAME": ""}, "EBBTIDE_KAFKA_SASL_USERNAME is not set"),
        ({"EBBTIDE_KAFKA_SASL_PASSWORD_FILE": ""}, "EBBTIDE_KAFKA_SASL_PASSWORD_FILE is not set"),
        ({"EBBTIDE_KAFKA_SASL_PASSWORD": "x"}, "both set"),
        (
            {"EBBTIDE_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
            "EBBTIDE_KAFKA_SASL_PASSWORD_FILE: cannot read",
        ),
        ({"EBBTIDE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "EBBTIDE_KAFKA_SASL_MECHANISM must be one of"),
        ({"EBBTIDE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "EBBTIDE_KAFKA_SECURITY_PROTOCOL must be one of"),
        (
            {"EBBTIDE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "EBBTIDE_KAFKA_SSL_CAFILE": ""},
            "EBBTIDE_KAFKA_SASL_USERNAME is set but",
        ),
        ({"EBBTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "EBBTIDE_KAFKA_SSL_CAFILE is set but"),
        ({"EBBTIDE_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "EBBTIDE_KAFKA_SSL_CAFILE: no such file"),
        ({"EBBTIDE_KAFKA_SSL_CERTFILE": str(CA)}, "go together"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start_by_name(
    tmp_path: Path, change: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named) as refused:
        Settings.from_env(secured(tmp_path, **change))
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match="EBBTIDE_KAFKA_SSL_CAFILE: not a usable PEM file"):
        Settings.from_env(secured(tmp_path, EBBTIDE_KAFKA_SSL_CAFILE=str(junk)))


def test_every_library_gets_the_same_protocol_user_and_trust() -> None:
    chosen = KafkaSecurity("SASL_SSL", "PLAIN", "sink", "pw", cafile=str(CA))
    assert chosen.librdkafka_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "sink",
        "sasl.password": "pw",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(CA),
    }
    credentials = chosen.faust_config()["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", "PLAIN")
    assert (credentials.username, credentials.password) == ("sink", "pw")
    assert credentials.ssl_context is not None and credentials.ssl_context.get_ca_certs()
    tls_only = KafkaSecurity("SSL", cafile=str(CA)).faust_config()["broker_credentials"]
    assert isinstance(tls_only, faust.SSLCredentials) and tls_only.protocol.value == "SSL"
    sasl_plaintext = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u", "p").python_config()
    assert sasl_plaintext == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }


def test_the_clients_of_secured_settings_are_checked_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    checks: list[str] = []
    monkeypatch.setattr(kafka.kafka_security, "check", lambda bootstrap, chosen: checks.append(bootstrap))
    monkeypatch.setattr(kafka, "_checked", set())
    settings = Settings.from_env(secured(tmp_path, EBBTIDE_KAFKA_BOOTSTRAP="b:9095"))
    assert kafka.librdkafka_config(settings)["sasl.username"] == "worker"
    assert kafka.connection(settings)["sasl_plain_username"] == "worker"
    assert kafka.faust_config(settings)["broker_credentials"].username == "worker"
    assert checks == ["b:9095"]


def test_a_refused_user_and_an_untrusted_certificate_name_their_settings() -> None:
    chosen = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "worker", "pw", cafile="/ca.pem")
    refused = KafkaError(
        KafkaError._AUTHENTICATION,
        "SASL authentication error: Authentication failed during authentication due to invalid "
        "credentials with SASL mechanism SCRAM-SHA-512",
    )
    assert _verdict(refused, "b:9095", chosen) == (
        "EBBTIDE_KAFKA_SASL_USERNAME / EBBTIDE_KAFKA_SASL_PASSWORD_FILE: the broker at b:9095 refused "
        "user worker (SCRAM-SHA-512): wrong user name or password"
    )
    untrusted = KafkaError(KafkaError._SSL, "SSL handshake failed: error:0A000086:certificate verify failed")
    verdict = _verdict(untrusted, "b:9095", chosen)
    assert verdict is not None and verdict.startswith(
        "EBBTIDE_KAFKA_SSL_CAFILE: the certificate of the broker"
    )
    assert _verdict(KafkaError(KafkaError._TRANSPORT, "Connection refused"), "b:9095", chosen) is None
