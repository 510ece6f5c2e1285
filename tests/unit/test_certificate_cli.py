"""`ebbtide certificate`: an auditor verifies a certificate offline; tampering is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ebbtide import certificates
from ebbtide.cli import main


def signed(tmp_path: Path) -> tuple[Path, Path]:
    assert main(["certificate", "keygen", str(tmp_path / "keys")]) == 0
    public = (tmp_path / "keys" / "certificate-signing.pub").read_bytes()
    private = (tmp_path / "keys" / "certificate-signing.key").read_bytes()
    entry = certificates.DeletionEntry(
        store="customer_db",
        category="client",
        record="customer_db/client/1",
        command_id="c1",
        rule_id="account",
        deadline="2024-03-15T00:00:00Z",
        ordered_at="2024-03-16T00:00:00Z",
        outcome="DELETED",
        rows=1,
        executed_at="2024-03-16T00:00:01Z",
    )
    certificate = certificates.build(
        "cust-1",
        [entry],
        "2024-03-16T00:01:00Z",
        "v1+test",
        "PRO ISP AS via Ebbtide",
        certificates.key_id(public),
    )
    path = tmp_path / "cust-1.json"
    path.write_text(certificates.dumps(certificates.sign(certificate, private)))
    return path, tmp_path / "keys" / "certificate-signing.pub"


def test_a_signed_certificate_verifies_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, public = signed(tmp_path)
    assert main(["certificate", "verify", str(path), "--public-key", str(public)]) == 0
    assert "VALID" in capsys.readouterr().out


def test_a_tampered_certificate_fails_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, public = signed(tmp_path)
    document = json.loads(path.read_text())
    document["certificate"]["entries"][0]["rows"] = 0
    path.write_text(json.dumps(document))
    assert main(["certificate", "verify", str(path), "--public-key", str(public)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_keygen_never_overwrites_a_signing_key(tmp_path: Path) -> None:
    assert main(["certificate", "keygen", str(tmp_path)]) == 0
    assert main(["certificate", "keygen", str(tmp_path)]) == 1
    assert (tmp_path / "certificate-signing.key").stat().st_mode & 0o777 == 0o600


def test_the_html_rendering_names_the_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = signed(tmp_path)
    assert main(["certificate", "html", str(path)]) == 0
    assert "cust-1" in capsys.readouterr().out
