"""`ebbtide certificate`: an auditor verifies a certificate offline; tampering is caught."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

from ebbtide.cli import main
from ebbtide.runtime import authenticity, keys
from ebbtide.streams import certificates

ENTRY = certificates.DeletionEntry(
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


def signed(tmp_path: Path) -> tuple[Path, Path]:
    assert main(["certificate", "keygen", str(tmp_path / "keys")]) == 0
    public = (tmp_path / "keys" / "certificate-signing.pub").read_bytes()
    private = (tmp_path / "keys" / "certificate-signing.key").read_bytes()
    entry = ENTRY
    certificate = certificates.build(
        "cust-1",
        [entry],
        "2024-03-16T00:01:00Z",
        "v1+test",
        "PRO ISP AS via Ebbtide",
        keys.key_id(public),
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


def with_store_receipt(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A certificate whose entry embeds customer_db's signed receipt; the worker's public key; a
    directory holding sink-customer_db.pub."""
    assert main(["certificate", "keygen", str(tmp_path / "keys")]) == 0
    public = (tmp_path / "keys" / "certificate-signing.pub").read_bytes()
    private = (tmp_path / "keys" / "certificate-signing.key").read_bytes()
    store = authenticity.MessageSigner.from_file(tmp_path / "stores" / "sink-customer_db.key", "sink key")
    receipt = {
        "command_id": "c1",
        "subject_id": "cust-1",
        "store": "customer_db",
        "category": "client",
        "record_key": "1",
        "outcome": "DELETED",
        "rows": 1,
        "reason": None,
        "executed_at": 1_710_547_201_000,  # 2024-03-16T00:00:01Z
    }
    sent = store.sign(authenticity.RECEIPT, receipt)
    entry = replace(
        ENTRY,
        receipt=certificates.StoreReceipt(
            **receipt, signer_key_id=store.key_id, signature=base64.b64encode(sent["signature"]).decode()
        ),
    )
    certificate = certificates.build(
        "cust-1", [entry], "2024-03-16T00:01:00Z", "v1+test", "PRO ISP AS", keys.key_id(public)
    )
    path = tmp_path / "cust-1.json"
    path.write_text(certificates.dumps(certificates.sign(certificate, private)))
    return path, tmp_path / "keys" / "certificate-signing.pub", tmp_path / "stores"


def test_store_keys_check_each_embedded_receipt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, public, stores = with_store_receipt(tmp_path)
    assert main(["certificate", "verify", str(path), "--public-key", str(public)]) == 0
    assert (
        main(["certificate", "verify", str(path), "--public-key", str(public), "--store-keys", str(stores)])
        == 0
    )
    assert "each store's receipt verified (customer_db)" in capsys.readouterr().out


def test_a_receipt_the_store_did_not_sign_fails_naming_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, public, stores = with_store_receipt(tmp_path)
    other = authenticity.MessageSigner(keys.generate_key()[0])
    (stores / "sink-customer_db.pub").write_bytes(other.public_pem)  # not the key that signed it
    args = ["certificate", "verify", str(path), "--public-key", str(public), "--store-keys", str(stores)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out
    assert "entry 'customer_db'/'customer_db/client/1': store receipt signed with key" in out


def test_a_missing_store_keys_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, public, _ = with_store_receipt(tmp_path)
    args = [
        "certificate",
        "verify",
        str(path),
        "--public-key",
        str(public),
        "--store-keys",
        str(tmp_path / "no"),
    ]
    assert main(args) == 2
    assert "cannot read the store keys" in capsys.readouterr().err
