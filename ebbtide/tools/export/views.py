"""What the report shows, gathered from the exported messages: each subject's messages by file,
and each certificate's verification (with the worker's public key and the stores' keys)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ebbtide.streams import certificates
from ebbtide.tools.export.reading import Message

NO_KEY = "(no key)"


@dataclass(frozen=True)
class Verdict:
    """A certificate's check: ``status`` is ``valid``, ``invalid`` or ``not verified`` (no key)."""

    status: str
    reasons: tuple[str, ...] = ()


@dataclass
class SubjectView:
    """One subject's selected messages by file (``events``, ``decisions`` …), in file order."""

    subject: str
    anchor: str
    by_file: dict[str, list[Message]] = field(default_factory=dict)

    def of(self, name: str) -> list[Message]:
        return self.by_file.get(name, [])


def subject_of(message: Message) -> str:
    """A message's subject: its key (every Ebbtide topic but checkpoints is keyed by subject)."""
    return message.fetched.key if message.fetched.key is not None else NO_KEY


def group(selected: Mapping[str, Iterable[Message]]) -> list[SubjectView]:
    """The selected messages of each file grouped by subject, subjects in sorted order, each with
    an anchor (``s1``, ``s2`` …) that is safe in an HTML id whatever the subject id holds."""
    by_subject: dict[str, dict[str, list[Message]]] = {}
    for name, found in selected.items():
        if name == "checkpoints":
            continue
        for message in found:
            if message.selected and subject_of(message):  # no subject: a clock's CLOCK_APPLIED entry
                by_subject.setdefault(subject_of(message), {}).setdefault(name, []).append(message)
    return [
        SubjectView(subject, f"s{number}", files)
        for number, (subject, files) in enumerate(sorted(by_subject.items()), start=1)
    ]


def verify_certificate(
    message: Message, public_pem: bytes | None, store_keys: Mapping[str, bytes] | None
) -> Verdict:
    """Check one exported certificate as ``ebbtide certificate verify`` does: the issuer's
    signature and, with the stores' keys, each store's embedded receipt."""
    if public_pem is None:
        return Verdict("not verified", ("no public key of the issuer to verify with",))
    raw = message.fetched.raw
    try:
        document: Any = json.loads(raw) if raw is not None else None
    except (UnicodeDecodeError, ValueError):
        return Verdict("invalid", ("not a JSON document",))
    reasons = certificates.verify(document, public_pem, store_keys)
    return Verdict("invalid", tuple(reasons)) if reasons else Verdict("valid")


def policy_versions(selected: Mapping[str, Iterable[Message]]) -> list[str]:
    """The policy labels the selected messages record (decisions, commands, answers, certificates)."""
    seen: set[str] = set()
    for name, found in selected.items():
        for message in found:
            value = message.value
            if isinstance(value, Mapping) and name == "certificates":
                value = value.get("certificate")
            label = value.get("policy_version") if isinstance(value, Mapping) else None
            if message.selected and isinstance(label, str):
                seen.add(label)
    return sorted(seen)
