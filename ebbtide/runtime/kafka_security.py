"""How every Kafka client of Ebbtide proves who it is and whom it trusts: the Kafka security
settings (``EBBTIDE_KAFKA_SECURITY_PROTOCOL``, ``..._SASL_*``, ``..._SSL_*``), checked at start,
as each client library wants them (kafka-python and aiokafka, librdkafka, Faust), and the check of
the first secured connection that turns a refused password or an untrusted certificate into one
line naming the setting. :mod:`ebbtide.runtime.kafka` applies them to every client it makes.

The password comes from a file (EBBTIDE_KAFKA_SASL_PASSWORD_FILE) or the environment
(EBBTIDE_KAFKA_SASL_PASSWORD); there is no default, and no message or ``repr`` shows it.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebbtide.runtime.settings import SettingsError

if TYPE_CHECKING:
    from ebbtide.runtime.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM = "SCRAM-SHA-512"
CHECK_TIMEOUT = 15.0  # seconds the first secured connection may take to give a verdict

PROTOCOL = "EBBTIDE_KAFKA_SECURITY_PROTOCOL"
MECHANISM = "EBBTIDE_KAFKA_SASL_MECHANISM"
USERNAME = "EBBTIDE_KAFKA_SASL_USERNAME"
PASSWORD_FILE = "EBBTIDE_KAFKA_SASL_PASSWORD_FILE"
PASSWORD = "EBBTIDE_KAFKA_SASL_PASSWORD"  # the variable's name, not a password
CAFILE = "EBBTIDE_KAFKA_SSL_CAFILE"
CERTFILE = "EBBTIDE_KAFKA_SSL_CERTFILE"
KEYFILE = "EBBTIDE_KAFKA_SSL_KEYFILE"


@dataclass(frozen=True)
class KafkaSecurity:
    """One client's security: the protocol, SASL credentials, and TLS files (PEM)."""

    protocol: str = "PLAINTEXT"
    mechanism: str = DEFAULT_MECHANISM
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None  # None: the system's CA certificates
    certfile: str | None = None  # a client certificate (mutual TLS), with its key
    keyfile: str | None = None
    password_source: str = PASSWORD_FILE  # which setting the password came from (for messages)

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a Python client (kafka-python, aiokafka, Faust): the broker's
        certificate verified against ``cafile`` (or the system's CAs), its host name checked."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def python_config(self) -> dict[str, Any]:
        """kafka-python's and aiokafka's keywords (both take the same names)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            config.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        if self.tls:
            config["ssl_context"] = self.ssl_context()
        return config

    def librdkafka_config(self) -> dict[str, Any]:
        """confluent-kafka's (librdkafka's) properties."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            config.update(
                {
                    "sasl.mechanism": self.mechanism,
                    "sasl.username": self.username,
                    "sasl.password": self.password,
                }
            )
        if self.tls:
            config["ssl.endpoint.identification.algorithm"] = "https"  # check the host name
            for key, value in (
                ("ssl.ca.location", self.cafile),
                ("ssl.certificate.location", self.certfile),
                ("ssl.key.location", self.keyfile),
            ):
                if value:
                    config[key] = value
        return config

    def faust_config(self) -> dict[str, Any]:
        """Faust's ``broker_credentials`` (which its aiokafka clients, topic creation included,
        connect with)."""
        if self.protocol == "PLAINTEXT":
            return {}
        import faust

        if self.sasl:
            credentials: Any = faust.SASLCredentials(
                username=self.username,
                password=self.password,
                mechanism=self.mechanism,
                ssl_context=self.ssl_context(),
            )
        else:
            credentials = faust.SSLCredentials(self.ssl_context())
        return {"broker_credentials": credentials}


def security(settings: Settings) -> KafkaSecurity:
    """The Kafka security of ``settings``, its password read; SettingsError naming the setting if
    the settings do not fit together or a file cannot be used (checked at start)."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise SettingsError(f"{PROTOCOL} must be one of {', '.join(PROTOCOLS)}, not {protocol}")
    cafile, certfile, keyfile = _tls_files(settings, protocol)
    if not protocol.startswith("SASL_"):
        for name, value in (
            (MECHANISM, settings.kafka_sasl_mechanism),
            (USERNAME, settings.kafka_sasl_username),
            (PASSWORD_FILE, settings.kafka_sasl_password_file),
            (PASSWORD, settings.kafka_sasl_password),
        ):
            if value:
                raise SettingsError(f"{name} is set but {PROTOCOL} is {protocol}: use SASL_SSL, or unset it")
        return KafkaSecurity(protocol, cafile=cafile, certfile=certfile, keyfile=keyfile)
    mechanism = (settings.kafka_sasl_mechanism or DEFAULT_MECHANISM).upper()
    if mechanism not in MECHANISMS:
        raise SettingsError(f"{MECHANISM} must be one of {', '.join(MECHANISMS)}")
    if not settings.kafka_sasl_username:
        raise SettingsError(f"{USERNAME} is not set: {protocol} needs the user to connect as")
    password, source = _password(settings)
    return KafkaSecurity(
        protocol, mechanism, settings.kafka_sasl_username, password, cafile, certfile, keyfile, source
    )


def _password(settings: Settings) -> tuple[str, str]:
    path = settings.kafka_sasl_password_file
    if path is not None and settings.kafka_sasl_password:
        raise SettingsError(f"{PASSWORD_FILE} and {PASSWORD} are both set: give the password once")
    if path is None:
        if not settings.kafka_sasl_password:
            raise SettingsError(
                f"{PASSWORD_FILE} is not set: SASL needs the password of {settings.kafka_sasl_username} "
                f"(a file holding it, or {PASSWORD})"
            )
        return settings.kafka_sasl_password, PASSWORD
    try:
        password = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SettingsError(f"{PASSWORD_FILE}: cannot read {path} ({reason})") from None
    if not password or "\n" in password:
        raise SettingsError(f"{PASSWORD_FILE}: {path} must hold the password alone, on one line")
    return password, PASSWORD_FILE


def _tls_files(settings: Settings, protocol: str) -> tuple[str | None, str | None, str | None]:
    files = {
        CAFILE: settings.kafka_ssl_cafile,
        CERTFILE: settings.kafka_ssl_certfile,
        KEYFILE: settings.kafka_ssl_keyfile,
    }
    for name, path in files.items():
        if path is None:
            continue
        if protocol not in ("SSL", "SASL_SSL"):
            raise SettingsError(f"{name} is set but {PROTOCOL} is {protocol}: TLS needs SSL or SASL_SSL")
        if not Path(path).is_file():
            raise SettingsError(f"{name}: no such file: {path}")
    if (files[CERTFILE] is None) != (files[KEYFILE] is None):
        raise SettingsError(f"{CERTFILE} and {KEYFILE} go together: a client certificate and its key")
    chosen = KafkaSecurity(
        protocol, cafile=_str(files[CAFILE]), certfile=_str(files[CERTFILE]), keyfile=_str(files[KEYFILE])
    )
    try:
        chosen.ssl_context()
    except ssl.SSLError as exc:
        which = CAFILE if files[CERTFILE] is None else f"{CAFILE}, {CERTFILE} or {KEYFILE}"
        raise SettingsError(f"{which}: not a usable PEM file ({exc.reason or exc})") from None
    return chosen.cafile, chosen.certfile, chosen.keyfile


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def check(bootstrap: str, chosen: KafkaSecurity, timeout: float = CHECK_TIMEOUT) -> None:
    """Connect once with ``chosen`` (librdkafka, which names why a secured connection failed):
    SettingsError naming the setting if the broker's certificate is not trusted or the broker
    refuses the user; nothing if it connects, or if no broker answers (the client that follows
    reports that in its own way)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **chosen.librdkafka_config()}
    config.update(error_cb=errors.append, log_level=0)  # errors to us, not to stderr
    client = AdminClient(config)
    deadline = time.monotonic() + timeout
    grace: float | None = None  # after nothing but transport errors: when to stop waiting
    while time.monotonic() < min(deadline, grace or deadline):
        try:
            client.list_topics(timeout=0.5)
            return
        except KafkaException:
            client.poll(0.1)  # serves error_cb
        for error in errors:
            verdict = _verdict(error, bootstrap, chosen)
            if verdict is not None:
                raise SettingsError(verdict)
        if grace is None and errors and all(e.code() == KafkaError._TRANSPORT for e in errors):
            grace = time.monotonic() + 2.0  # nobody there, or it hung up: a TLS or SASL error may follow


def _verdict(error: Any, bootstrap: str, chosen: KafkaSecurity) -> str | None:
    from confluent_kafka import KafkaError

    text = str(error.str())
    if "certificate verify failed" in text:  # librdkafka reports it as _SSL or as _TRANSPORT
        trusted = chosen.cafile or "the system's CA certificates"
        return (
            f"{CAFILE}: the certificate of the broker at {bootstrap} is not trusted: not signed by "
            f"a CA in {trusted}, or not made for that host name"
        )
    if error.code() == KafkaError._AUTHENTICATION:
        if "mechanism" in text.lower() and "credentials" not in text.lower():
            return (
                f"{MECHANISM}: the broker at {bootstrap} does not offer {chosen.mechanism} on this listener"
            )
        return (
            f"{USERNAME} / {chosen.password_source}: the broker at {bootstrap} refused user "
            f"{chosen.username} ({chosen.mechanism}): wrong user name or password"
        )
    if error.code() == KafkaError._SSL:
        reason = text.partition("SSL handshake failed: ")[2][:120] or "TLS handshake failed"
        return f"{PROTOCOL}: no TLS session with the broker at {bootstrap} ({reason}); is it a TLS listener?"
    return None
