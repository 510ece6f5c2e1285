"""The public keys an export carries: the worker's certificate key (``public-key.pem``) and the
stores' sink keys (``store-keys/sink-<store>.pub``), with which its certificates are verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ebbtide.runtime import keys
from ebbtide.runtime.settings import Settings
from ebbtide.tools.certificates import store_keys_in

PUBLIC_KEY = "public-key.pem"
STORE_KEYS = "store-keys"


class UnusableKey(ValueError):
    """A key the user named that cannot be used: one line for the user."""


@dataclass
class ExportKeys:
    """The keys found (PEM bytes), where they came from, and notes on what is missing."""

    public: bytes | None = None
    public_source: Path | None = None
    stores: dict[str, bytes] = field(default_factory=dict)
    stores_source: Path | None = None
    notes: list[str] = field(default_factory=list)

    def files(self) -> list[tuple[str, bytes]]:
        """(path in the export, PEM) of each key to write."""
        found = [(PUBLIC_KEY, self.public)] if self.public is not None else []
        return found + [(f"{STORE_KEYS}/sink-{s}.pub", pem) for s, pem in sorted(self.stores.items())]

    def ids(self) -> list[tuple[str, str]]:
        """(path in the export, key id) of each key."""
        return [(path, keys.key_id(pem)) for path, pem in self.files()]


def _public(path: Path, named: bool, found: ExportKeys) -> None:
    try:
        pem = path.read_bytes()
        keys.key_id(pem)
    except OSError as exc:
        if named:
            raise UnusableKey(f"--public-key: cannot read {path}: {exc.strerror}") from None
        found.notes.append(
            f"no worker public key at {path} (EBBTIDE_CERTIFICATE_KEY's .pub): certificates not verified"
        )
        return
    except ValueError as exc:
        raise UnusableKey(f"{'--public-key' if named else 'the worker public key'} {path}: {exc}") from None
    found.public, found.public_source = pem, path


def find_keys(settings: Settings, public_key: Path | None, store_keys: Path | None) -> ExportKeys:
    """The worker's public key (``public_key``, else EBBTIDE_WORKER_PUBLIC_KEY or the .pub beside
    EBBTIDE_CERTIFICATE_KEY) and the stores' keys (``store_keys``, else EBBTIDE_TRUSTED_KEYS).
    A key named on the command line must be readable; a default one that is missing is a note."""
    found = ExportKeys()
    _public(public_key or settings.command_public_key, public_key is not None, found)
    directory = store_keys or settings.trusted_keys_dir
    try:
        found.stores, found.stores_source = store_keys_in(directory), directory
    except OSError as exc:
        if store_keys is not None:
            raise UnusableKey(f"--store-keys: cannot read {directory}: {exc.strerror}") from None
        found.notes.append(f"no store keys in {directory}: the stores' receipts in certificates not verified")
    for store, pem in list(found.stores.items()):
        try:
            keys.key_id(pem)
        except ValueError:
            found.notes.append(f"store key sink-{store}.pub is not a public key: left out")
            del found.stores[store]
    if found.stores_source is not None and not found.stores:
        found.notes.append(f"no sink-<store>.pub in {directory}: the stores' receipts not verified")
    return found
