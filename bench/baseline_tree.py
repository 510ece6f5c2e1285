"""Today's worker, for a baseline in the same run: the source tree of a git commit, exported.

``export(commit, into)`` writes the commit's tree (``git archive``) under ``into`` and returns
the directory to put first on ``PYTHONPATH`` so that ``python -m ebbtide worker`` runs that
commit's code with this venv's libraries. Where it cannot (no git, not a git checkout, e.g. an
sdist, or an unknown commit) it raises :class:`Unavailable`, whose text says why, and the
benchmark reports the figure without that baseline.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

# The commit issue 15 started from: the worker the "4x today's worker" is measured against.
DEFAULT_COMMIT = "20f1157"
ROOT = Path(__file__).resolve().parent.parent  # the checkout this bench runs from


class Unavailable(Exception):
    """The baseline tree cannot be exported (the text says why)."""


def export(commit: str, into: Path, repo: Path = ROOT) -> Path:
    """The tree of ``commit`` of the git repository ``repo``, extracted under ``into``."""
    sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").decode().strip()
    target = into / f"ebbtide-{sha[:12]}"
    if (target / "ebbtide" / "__main__.py").is_file():
        return target  # exported earlier in this run
    archive = _git(repo, "archive", "--format=tar", sha)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="tar")  # symlinks inside the tree (ebbtide/streams, ...) kept
    if not (target / "ebbtide" / "__main__.py").is_file():
        raise Unavailable(f"commit {commit} has no ebbtide package")
    return target


def python_path(tree: Path) -> dict[str, str]:
    """The environment that makes a child process (``python -m ebbtide``) import ebbtide from
    ``tree``: first on the path, and the working directory (a checkout of the current code, say)
    not put before it (PYTHONSAFEPATH)."""
    return {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}


def _git(repo: Path, *args: str) -> bytes:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except OSError as exc:
        raise Unavailable(f"git is not available ({exc.strerror})") from None
    if out.returncode != 0:
        reason = out.stderr.decode(errors="replace").strip().splitlines()
        raise Unavailable(f"git {args[0]} in {repo}: {reason[-1] if reason else 'no such commit'}")
    return out.stdout
