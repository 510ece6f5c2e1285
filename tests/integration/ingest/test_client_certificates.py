"""mTLS: the service over TLS with no tokens takes a client certificate its client CA signed (its
common name is the producer) and no other connection."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from tests.ingest_service import IngestService
from tests.support import TopicReader


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(
    out: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, usage: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 key and certificate for ``name`` (a CA if no ``issuer``), written to out/NAME.pem|.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage == "server":
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    elif usage == "client":
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (out / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (out / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate, key


def client_context(tls: Path, client: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    if client is not None:
        context.load_cert_chain(tls / f"{client}.pem", tls / f"{client}.key")
    return context


def test_a_client_certificate_of_the_client_ca_publishes_as_its_common_name(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = issue(tls, "ca", None, "ca")
    issue(tls, "server", ca, "server")
    issue(tls, "shop-mtls", ca, "client")
    stranger_ca = issue(tls, "stranger-ca", None, "ca")
    issue(tls, "stranger", stranger_ca, "client")
    service = IngestService.start(
        ingest_settings,
        tmp_path / "logs",
        tokens=False,
        ingest_tls_certfile=tls / "server.pem",
        ingest_tls_keyfile=tls / "server.key",
        ingest_tls_client_ca=tls / "ca.pem",
    )
    try:
        service.wait_ready(client_context(tls, "shop-mtls"))
        event = {
            "event_id": "mtls-1",
            "type": "AccountClosed",
            "subject_id": "cust-mtls",
            "event_time": "2024-03-01T12:00:00Z",
        }
        answer = service.post(event, token=None)
        assert answer.status == 200, answer.body
        for refused in (None, "stranger"):
            service.context = client_context(tls, refused)
            with pytest.raises(OSError):  # the TLS handshake refuses it: no HTTP answer at all
                service.post(event, token=None)
    finally:
        service.stop()
    reader = TopicReader(
        ingest_settings, Topics(ingest_settings.topic_prefix).events, codec_for(LIFECYCLE_EVENT)
    )
    try:
        got = reader.wait_for(
            lambda seen: any(r.value and r.value["event_id"] == "mtls-1" for r in seen), 30, "the event"
        )
    finally:
        reader.close()
    assert [r.value["producer"] for r in got if r.value and r.value["event_id"] == "mtls-1"] == ["shop-mtls"]
