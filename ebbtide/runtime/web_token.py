"""The bearer token of the worker's subject pages (``ebbtide explain --source worker``).

The pages answer on 127.0.0.1, but every user and process of the host can reach that address:
without a token, anyone on the host could read any subject's state. The worker makes a random
token at start if its file is missing (mode 0600) and answers only requests
that carry it as ``Authorization: Bearer <token>``; ``ebbtide explain`` reads the same file.

The file is ``$EBBTIDE_WORKER_WEB_TOKEN_FILE``, by default ``<state dir>/keys/worker-web.token``.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from ebbtide.runtime.settings import Settings

ENV = "EBBTIDE_WORKER_WEB_TOKEN_FILE"
SCHEME = "Bearer"


class TokenUnavailable(RuntimeError):
    pass


def token_file(settings: Settings) -> Path:
    override = os.environ.get(ENV)
    return Path(override) if override else settings.state_dir / "keys" / "worker-web.token"


def read_token(path: Path) -> str:
    """The token in ``path``; raises :class:`TokenUnavailable` if it cannot be read or is empty."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise TokenUnavailable(f"cannot read the worker's web token {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TokenUnavailable(f"the worker's web token file {path} is not ASCII") from None
    if not token:
        raise TokenUnavailable(f"the worker's web token file {path} is empty")
    return token


def read_or_make_token(path: Path) -> str:
    """The token in ``path``, made first (32 random bytes, hex, mode 0600) if the file is missing.
    Written to a private temporary file and linked into place, so a reader never sees a half
    written token and two workers starting at once end up with the same one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another worker made it first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return read_token(path)


def authorised(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != SCHEME.lower():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def header(token: str) -> dict[str, str]:
    return {"Authorization": f"{SCHEME} {token}"}
