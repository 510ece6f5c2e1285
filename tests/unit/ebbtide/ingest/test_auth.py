"""Who may publish over HTTP: the tokens file, the bearer check, a certificate's common name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ebbtide.ingest.auth import Access, Tokens, access, certificate_producer, read_tokens
from ebbtide.runtime.settings import Settings, SettingsError

TOKEN = "s3cret-token-for-billing-0001"


def tokens_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


def test_a_tokens_file_gives_each_token_its_producer(tmp_path: Path) -> None:
    tokens = read_tokens(
        tokens_file(tmp_path, f"# who may publish\nbilling {TOKEN}\n\nshop {'x' * 20}  # web\n")
    )
    assert tokens.producer_of(TOKEN) == "billing"
    assert tokens.producer_of("x" * 20) == "shop"
    assert tokens.producer_of(TOKEN[:-1]) is None
    assert tokens.producer_of("") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"billing {TOKEN}\nshop\n", "line 2: must be PRODUCER TOKEN"),
        (f"bill ing {TOKEN}\n", "line 1: must be PRODUCER TOKEN"),
        ("billing short-one\n", "line 1: the token is shorter than 16"),
        (f"billing {TOKEN}\nshop {TOKEN}\n", "line 2: the token is given twice"),
        ("# nobody yet\n", "holds no token"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_line_never_the_token(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        read_tokens(tokens_file(tmp_path, text))
    assert says in str(refused.value)
    assert "EBBTIDE_INGEST_TOKENS" in str(refused.value)
    assert TOKEN not in str(refused.value) and "short-one" not in str(refused.value)


def test_a_bearer_token_decides_alone_and_a_certificate_names_the_producer() -> None:
    both = Access(Tokens(((TOKEN.encode(), "billing"),)), certificates=True)
    assert both.producer(f"Bearer {TOKEN}", None) == "billing"
    assert both.producer(f"bearer  {TOKEN} ", "shop") == "billing"
    assert both.producer("Bearer wrong-token-000000000", "shop") is None  # not the certificate's
    assert both.producer(f"Basic {TOKEN}", None) is None
    assert both.producer("Bearer ", "shop") is None
    assert both.producer(None, "shop") == "shop"
    assert both.producer(None, "not a name!") is None
    assert both.producer(None, None) is None
    tokens_only = replace(both, certificates=False)
    assert tokens_only.producer(None, "shop") is None


def test_the_certificate_producer_is_the_common_name_of_the_tls_extension() -> None:
    scope = {"extensions": {"tls": {"client_cert_name": "CN=billing,O=Example"}}}
    assert certificate_producer(scope) == "billing"
    assert certificate_producer({"extensions": {"tls": {"client_cert_name": "O=Example"}}}) is None
    assert certificate_producer({"extensions": {"tls": {"client_cert_name": "not a name"}}}) is None
    assert certificate_producer({"type": "http"}) is None


def test_the_service_never_runs_open_nor_with_half_tls(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="never runs open"):
        access(Settings())
    pem = tmp_path / "cert.pem"
    pem.write_text("x")
    with pytest.raises(SettingsError, match="EBBTIDE_INGEST_TLS_CLIENT_CA needs TLS"):
        access(Settings(ingest_tls_client_ca=pem))
    with pytest.raises(SettingsError, match="go together"):
        access(Settings(ingest_tls_certfile=pem, ingest_tokens=tokens_file(tmp_path, f"b {TOKEN}")))
    with pytest.raises(SettingsError, match="EBBTIDE_INGEST_TLS_KEYFILE: no such file"):
        access(
            Settings(ingest_tls_certfile=pem, ingest_tls_keyfile=tmp_path / "no", ingest_tls_client_ca=pem)
        )
    allowed = access(Settings(ingest_tls_certfile=pem, ingest_tls_keyfile=pem, ingest_tls_client_ca=pem))
    assert allowed.certificates and not allowed.tokens.pairs
