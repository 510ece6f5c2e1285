"""``ebbtide audit export``: what it refuses before it reads anything, each in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "export", *argv])
    return code, capsys.readouterr().err.strip()


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Nothing here may get as far as Kafka: a broker that is not there would make it hang, not pass.
    monkeypatch.setenv("EBBTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("EBBTIDE_STATE_DIR", str(tmp_path / "state"))


def test_a_bad_period_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(["--period", "2026-02-01..2026-01-01", "--out", str(tmp_path / "x")], capsys)
    assert (
        code == 2
        and err == "ebbtide audit export: --period: FROM must be before TO in '2026-02-01..2026-01-01'"
    )
    assert not (tmp_path / "x").exists()


def test_a_directory_in_use_or_not_writable_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    code, err = run(["--subject", "cust-1", "--out", str(used)], capsys)
    assert (
        code == 1
        and err == f"ebbtide audit export: {used} is not an empty directory: give a new or empty one"
    )
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    under_a_file = used / "keep.txt" / "out"
    code, err = run(["--subject", "cust-1", "--out", str(under_a_file)], capsys)
    assert (
        code == 1
        and err
        == f"ebbtide audit export: cannot write to {under_a_file}: {used / 'keep.txt'} is not a directory"
    )


def test_a_named_key_must_be_readable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "worker.pub"
    code, err = run(["--subject", "c", "--out", str(tmp_path / "x"), "--public-key", str(missing)], capsys)
    assert (
        code == 1
        and err == f"ebbtide audit export: --public-key: cannot read {missing}: No such file or directory"
    )
    missing.write_text("not a key")
    code, err = run(["--subject", "c", "--out", str(tmp_path / "x"), "--public-key", str(missing)], capsys)
    assert code == 1 and err.startswith(f"ebbtide audit export: --public-key {missing}: not a PEM public key")
