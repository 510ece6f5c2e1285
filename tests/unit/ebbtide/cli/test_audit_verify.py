"""``ebbtide audit verify`` from an export on disk: exit 0 with the summary, 1 naming a changed
decision, 2 (one line) when there is nothing to verify with."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ebbtide.cli import main
from tests.unit.ebbtide.tools.audit.test_chain import chain, signer

pytestmark = pytest.mark.unit


def export(directory: Path, decisions: list[bytes], checkpoints: list[bytes]) -> None:
    for name, values in (("decisions", decisions), ("checkpoints", checkpoints)):
        rows = [
            {"topic": f"t.{name}", "partition": 0, "offset": n, "timestamp": 0, "key": None,
             "raw": base64.b64encode(v).decode(), "value": None}
            for n, v in enumerate(values)
        ]  # fmt: skip
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "public-key.pem").write_bytes(signer().public_pem)


def test_verify_an_export_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values, checkpoints = chain(5, checkpoint_at=(3,))
    export(tmp_path, values, checkpoints)
    assert main(["audit", "verify", "--export", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("5 decisions in 1 partitions, 0 re-sent duplicates")

    changed = bytearray(values[1])
    changed[-20] ^= 0x01
    export(tmp_path, [values[0], bytes(changed), *values[2:]], checkpoints)
    assert main(["audit", "verify", "--export", str(tmp_path)]) == 1
    assert "decisions partition 0, offset 1: changed" in capsys.readouterr().out

    assert main(["audit", "verify", "--export", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:
        main(["audit", "verify", "--from", "yesterday"])
    assert usage.value.code == 2
