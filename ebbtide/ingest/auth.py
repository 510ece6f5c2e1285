"""Who may publish over HTTP: bearer tokens from a file, or a TLS client certificate.

The tokens file (``EBBTIDE_INGEST_TOKENS``) has one ``PRODUCER TOKEN`` pair per line (blank lines
and ``#`` comments are skipped). The producer is the name recorded as each event's ``producer``
(whatever the request says). A token is compared with every known token in constant time
(:func:`hmac.compare_digest`), so the answer's timing says nothing of how much of it matched.

A client certificate is verified by the TLS handshake against ``EBBTIDE_INGEST_TLS_CLIENT_CA``
(:mod:`.server`); its subject's common name is then the producer.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ebbtide.runtime.settings import Settings, SettingsError

PRODUCER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_TOKEN = 16  # characters: a token short enough to guess is refused at start


@dataclass(frozen=True)
class Tokens:
    """Bearer tokens and the producer each one publishes as."""

    pairs: tuple[tuple[bytes, str], ...] = ()

    def producer_of(self, token: str) -> str | None:
        """The producer of ``token``, or None. Every known token is compared, each in constant time."""
        offered = token.encode()
        found: str | None = None
        for known, producer in self.pairs:
            if hmac.compare_digest(known, offered):
                found = producer
        return found


def read_tokens(path: Path) -> Tokens:
    """The tokens of the file at ``path``; a SettingsError naming the file and line (never a token)
    for a line that is not ``PRODUCER TOKEN``, a short token, a token given twice, or no token."""
    setting = "EBBTIDE_INGEST_TOKENS"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{setting}: cannot read {path} ({type(exc).__name__})") from None
    pairs: list[tuple[bytes, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{setting}: {path} line {number}"
        if len(words) != 2 or not PRODUCER.fullmatch(words[0]):
            raise SettingsError(f"{where}: must be PRODUCER TOKEN (a producer name of letters, digits, ._-)")
        if len(words[1]) < MIN_TOKEN:
            raise SettingsError(f"{where}: the token is shorter than {MIN_TOKEN} characters")
        token = words[1].encode()
        if any(token == known for known, _ in pairs):
            raise SettingsError(f"{where}: the token is given twice")
        pairs.append((token, words[0]))
    if not pairs:
        raise SettingsError(f"{setting}: {path} holds no token")
    return Tokens(tuple(pairs))


@dataclass(frozen=True)
class Access:
    """How requests are authenticated: ``tokens`` (may be empty) and whether client certificates
    verified by the TLS handshake are accepted."""

    tokens: Tokens
    certificates: bool

    def producer(self, authorization: str | None, certificate_name: str | None) -> str | None:
        """The producer a request publishes as, or None (401). A bearer token, if offered, decides
        alone (a wrong one is refused even over a verified certificate); else the certificate's
        common name."""
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return self.tokens.producer_of(token.strip())
        if self.certificates and certificate_name is not None and PRODUCER.fullmatch(certificate_name):
            return certificate_name
        return None


def access(settings: Settings) -> Access:
    """The access of ``settings``; a SettingsError if it lets nobody in or TLS is half set.
    The service never runs open: a tokens file or a client CA (with TLS) is required."""
    tokens = read_tokens(settings.ingest_tokens) if settings.ingest_tokens is not None else Tokens()
    tls = (settings.ingest_tls_certfile, settings.ingest_tls_keyfile)
    if (tls[0] is None) != (tls[1] is None):
        raise SettingsError("EBBTIDE_INGEST_TLS_CERTFILE and EBBTIDE_INGEST_TLS_KEYFILE go together")
    if settings.ingest_tls_client_ca is not None and tls[0] is None:
        raise SettingsError(
            "EBBTIDE_INGEST_TLS_CLIENT_CA needs TLS: set EBBTIDE_INGEST_TLS_CERTFILE and _KEYFILE"
        )
    for name, path in (
        ("CERTFILE", tls[0]),
        ("KEYFILE", tls[1]),
        ("CLIENT_CA", settings.ingest_tls_client_ca),
    ):
        if path is not None and not path.is_file():
            raise SettingsError(f"EBBTIDE_INGEST_TLS_{name}: no such file: {path}")
    certificates = settings.ingest_tls_client_ca is not None
    if not tokens.pairs and not certificates:
        raise SettingsError(
            "ebbtide ingest never runs open: set EBBTIDE_INGEST_TOKENS (a file of PRODUCER TOKEN "
            "lines) or EBBTIDE_INGEST_TLS_CLIENT_CA (client certificates)"
        )
    return Access(tokens, certificates)


def certificate_producer(scope: Mapping[str, Any]) -> str | None:
    """The common name of the request's verified client certificate, if it came with one: the
    ASGI TLS extension's ``client_cert_name`` (an RFC 4514 name), which :mod:`.server` sets."""
    tls = scope.get("extensions", {}).get("tls") or {}
    name = tls.get("client_cert_name")
    if not name:
        return None
    try:
        parsed = x509.Name.from_rfc4514_string(str(name))
    except ValueError:
        return None
    common = parsed.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else None
