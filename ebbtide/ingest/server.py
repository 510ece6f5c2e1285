"""Serving the ingestion application with uvicorn, over TLS if set, with client certificates.

uvicorn verifies a client certificate against ``EBBTIDE_INGEST_TLS_CLIENT_CA`` in the TLS
handshake (required when there are no tokens, optional beside them) but does not pass it to the
application; :class:`CertifiedH11` does, as the ASGI TLS extension's ``client_cert_name``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import uvicorn
from cryptography import x509
from uvicorn.protocols.http.h11_impl import H11Protocol

from ebbtide import bootstrap
from ebbtide.ingest.app import Service, create_app
from ebbtide.ingest.auth import PRODUCER, Access, Tokens, access
from ebbtide.ingest.batch import Accepted
from ebbtide.ingest.publishing import Ack, IngestPublisher
from ebbtide.runtime.endpoints import check_free
from ebbtide.runtime.settings import Settings, SettingsError, Topics
from ebbtide.tools.client import load_hold_signer
from ebbtide.tools.sealing import key_store

log = logging.getLogger("ebbtide.ingest")


class CertifiedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, giving each request of a connection the subject of its verified
    client certificate (``scope["extensions"]["tls"]["client_cert_name"]``, RFC 4514)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        name = _client_name(transport)
        if name is None:
            return
        app = self.app

        async def with_certificate(scope: dict[str, Any], receive: Any, send: Any) -> None:
            extensions = {**scope.get("extensions", {}), "tls": {"client_cert_name": name}}
            await app({**scope, "extensions": extensions}, receive, send)

        self.app = with_certificate


def _client_name(transport: asyncio.Transport) -> str | None:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def limits(settings: Settings) -> None:
    """SettingsError naming the limit that is not at least 1."""
    for name in ("ingest_max_body_bytes", "ingest_max_events", "ingest_remembered_events"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"EBBTIDE_{name.upper()} must be at least 1")
    if not 1 <= settings.ingest_timeout <= 600:
        raise SettingsError("EBBTIDE_INGEST_TIMEOUT must be from 1 to 600 seconds")


def hold_producers(settings: Settings) -> frozenset[str]:
    """The producers allowed to publish legal hold events; SettingsError for a name no token or
    certificate could authenticate as."""
    names = settings.ingest_hold_producer_names
    if any(not PRODUCER.fullmatch(name) for name in names):
        raise SettingsError(
            "EBBTIDE_INGEST_HOLD_PRODUCERS must be producer names (letters, digits, ._-), comma-separated"
        )
    return names


def service(settings: Settings) -> Service:
    """The service of ``settings``: its access (SettingsError if nobody could publish), the key
    store (SettingsError without one: personal values are sealed), the policy a worker with these
    settings runs, the legal hold signer (EBBTIDE_HOLD_SIGNING_KEY) and who may use it
    (EBBTIDE_INGEST_HOLD_PRODUCERS), and a publisher connected to Kafka (KafkaError if no broker
    answers within EBBTIDE_INGEST_TIMEOUT)."""
    limits(settings)
    timeout = settings.ingest_timeout
    allowed = access(settings)
    holders = hold_producers(settings)
    settings.require_keys_dsn()  # refused at start, naming the setting, not at the first event
    hold_key = settings.hold_signing_key
    try:
        signer = load_hold_signer(hold_key) if hold_key is not None else None
    except ValueError as exc:
        raise SettingsError(f"EBBTIDE_HOLD_SIGNING_KEY: {exc}") from None
    policy = bootstrap.policy(settings)
    publisher = IngestPublisher(settings, policy, key_store(settings), timeout)
    return Service(
        allowed,
        publisher,
        policy,
        signer,
        settings.ingest_max_body_bytes,
        settings.ingest_max_events,
        holders,
    )


class _NotServing:
    """The publisher of an application made only for its OpenAPI document."""

    def publish(self, accepted: list[Accepted]) -> list[Ack]:
        raise RuntimeError("not serving")

    def ready(self) -> tuple[bool, str]:
        return False, "not serving"

    def close(self) -> None:
        pass


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the application ``settings`` would serve (no Kafka needed)."""
    limits(settings)
    made = Service(
        Access(Tokens(), False),
        _NotServing(),
        bootstrap.policy(settings),
        None,
        settings.ingest_max_body_bytes,
        settings.ingest_max_events,
    )
    return create_app(made).openapi()


def serve(settings: Settings, made: Service) -> None:
    """Serve ``made`` on EBBTIDE_INGEST_HOST:EBBTIDE_INGEST_PORT until SIGTERM or Ctrl-C;
    :class:`~ebbtide.runtime.endpoints.CannotServe` if the address cannot be bound."""
    host, port = settings.ingest_host, settings.ingest_port
    check_free(host, port, "EBBTIDE_INGEST_PORT", "EBBTIDE_INGEST_HOST")
    tls: dict[str, Any] = {}
    if settings.ingest_tls_certfile is not None:
        tls = {
            "ssl_certfile": str(settings.ingest_tls_certfile),
            "ssl_keyfile": str(settings.ingest_tls_keyfile),
        }
    if settings.ingest_tls_client_ca is not None:
        required = not made.access.tokens.pairs
        tls["ssl_ca_certs"] = str(settings.ingest_tls_client_ca)
        tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    config = uvicorn.Config(
        create_app(made),
        host=host,
        port=port,
        http=CertifiedH11,
        access_log=False,  # a request's path and client address are logged nowhere
        log_config=None,  # the process's logging (ebbtide.runtime.logging)
        server_header=False,
        **tls,
    )
    scheme = "https" if tls else "http"
    who = f"{len(made.access.tokens.pairs)} token(s)" + (
        ", client certificates" if made.access.certificates else ""
    )
    log.info(
        "ingest: %s://%s:%d publishing to %s (%s)",
        scheme,
        host,
        port,
        Topics(settings.topic_prefix).events,
        who,
    )
    uvicorn.Server(config).run()
