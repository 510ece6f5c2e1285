"""Today's worker for the same-run baseline: a commit's tree exported with git, or why not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.baseline_tree import Unavailable, export, python_path

pytestmark = pytest.mark.unit


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_commits_tree_is_exported_as_it_was_then(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "ebbtide").mkdir(parents=True)
    (repo / "ebbtide" / "__init__.py").write_text("")
    (repo / "ebbtide" / "__main__.py").write_text("print('then')\n")
    (repo / "streams").mkdir()
    (repo / "streams" / "worker.py").write_text("")
    (repo / "ebbtide" / "streams").symlink_to("../streams")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "then")
    then = _git(repo, "rev-parse", "--short", "HEAD")
    (repo / "ebbtide" / "__main__.py").write_text("print('now')\n")  # not committed: not exported

    tree = export(then, tmp_path / "out", repo=repo)
    linked = tree / "ebbtide" / "streams"
    assert linked.is_symlink() and (linked / "worker.py").is_file()
    # Run from the checkout, as the bench is: the exported tree's code runs, not the checkout's.
    env = {**os.environ, **python_path(tree)}
    ran = subprocess.run([sys.executable, "-m", "ebbtide"], cwd=repo, env=env, capture_output=True, text=True)
    assert ran.stdout == "then\n", ran.stderr


def test_an_unknown_commit_or_no_repository_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="rev-parse"):
        export("0000000", tmp_path / "out", repo=Path(__file__).resolve().parent)
    with pytest.raises(Unavailable, match="not a git repository"):
        export("20f1157", tmp_path / "out", repo=tmp_path)
