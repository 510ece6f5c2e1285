"""`ebbtide topics` reads the policy file before it asks the broker anything: a missing or broken
file is one line naming it, exit 2, never a traceback (the Kubernetes Job would crash-loop on one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.cli import main


@pytest.mark.parametrize("content", [None, "garbage = [\n"])
def test_a_bad_policy_file_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "retention.toml"
    if content is not None:
        policy.write_text(content, encoding="utf-8")
    assert main(["topics", "check", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebbtide topics check: ") and err.count("\n") == 1, err
    assert "retention.toml" in err and "Traceback" not in err
