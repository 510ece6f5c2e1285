"""The suite on pytest-xdist workers (``make test``: ``-n 2 --dist loadgroup``): tests that share a
module's fixture run on one worker (tests/conftest.py groups them), so it is made once; the others
go to whichever worker is free."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Two tests of one module sharing its `state` fixture (cheap: they read the stack's file modes).
TARGET = "tests/integration/test_local_stack.py"


def test_tests_sharing_a_module_fixture_run_on_one_worker() -> None:
    xdist = ["-n", "2", "--dist", "loadgroup"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *xdist, "-v", "-p", "no:cacheprovider", TARGET, "-k", "private"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ran = re.findall(r"^\[(gw\d+)\] .*PASSED (\S+)", done.stdout, re.MULTILINE)
    assert len(ran) == 2, done.stdout[-3000:]
    # Without the group the scheduler gives each worker one of the two tests.
    assert len({worker for worker, _ in ran}) == 1, ran
    assert all(test.endswith(f"@{TARGET}") for _, test in ran), ran
