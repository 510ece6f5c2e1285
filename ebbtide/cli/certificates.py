"""``ebbtide certificate get|verify|html|keygen``: deletion certificates for customers and auditors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings


def add_certificate(sub: Subcommands) -> None:
    certificate = sub.add_parser(
        "certificate",
        help="deletion certificates: fetch a subject's, verify one offline, render HTML, make a key",
        description="get SUBJECT [--out DIR]: the subject's signed certificates from the pipeline (one "
        "per deletion round, issued when every store has answered), as JSON and HTML. "
        "verify FILE --public-key KEY.pem [--store-keys DIR]: check a signed deletion certificate "
        "offline (exit 0 valid, 1 invalid with reasons); with the stores' keys (sink-<store>.pub in DIR), "
        "each store's embedded receipt too. html FILE: a readable rendering. keygen DIR: an Ed25519 "
        "signing key pair (the worker makes one on first start if EBBTIDE_CERTIFICATE_KEY names no file).",
    )
    certificate.add_argument("action", choices=["get", "verify", "html", "keygen"])
    certificate.add_argument(
        "path", help="get: a subject id; verify/html: a certificate JSON file; keygen: a directory"
    )
    certificate.add_argument("--public-key", help="the issuer's public key (PEM), for verify")
    certificate.add_argument(
        "--store-keys",
        help="verify: a directory of the stores' sink public keys (sink-<store>.pub); each entry's "
        "embedded store receipt must be signed by its store's key",
    )
    certificate.add_argument("--out", default=".", help="get: directory to write the certificates to")
    certificate.set_defaults(func=cmd_certificate)


def cmd_certificate(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide.streams import certificates
    from ebbtide.tools import certificates as certificate_pages

    if args.action == "keygen":
        return _keygen(Path(args.path))
    if args.action == "get":
        return _get_certificates(args, settings)
    try:
        document = certificates.loads(Path(args.path).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"ebbtide certificate: cannot read {args.path}: {exc}", file=sys.stderr)
        return 2
    if args.action == "html":
        try:
            print(certificate_pages.render_html(document))
        except ValueError as exc:
            print(f"ebbtide certificate html: {exc}", file=sys.stderr)
            return 1
        return 0
    return _verify(args, document)


def _keygen(directory: Path) -> int:
    """A signing key pair in ``directory``; never overwrites a signing key."""
    from ebbtide.runtime import keys

    directory.mkdir(parents=True, exist_ok=True)
    private, public = keys.generate_key()
    secret = directory / "certificate-signing.key"
    if secret.exists():
        print(f"ebbtide certificate keygen: {secret} exists; not overwriting a signing key", file=sys.stderr)
        return 1
    secret.write_bytes(private)
    secret.chmod(0o600)
    (directory / "certificate-signing.pub").write_bytes(public)
    print(
        f"key {keys.key_id(public)}: private {secret} (mode 600), "
        f"public {directory / 'certificate-signing.pub'} (give this one to customers and auditors)"
    )
    return 0


def _verify(args: argparse.Namespace, document: Any) -> int:
    """Check ``document`` against the issuer's key (and the stores' keys): exit 0 valid, 1 invalid."""
    from ebbtide.streams import certificates
    from ebbtide.tools import certificates as certificate_pages

    if not args.public_key:
        print("ebbtide certificate verify: give --public-key KEY.pem", file=sys.stderr)
        return 2
    store_keys = None
    if args.store_keys:
        try:
            store_keys = certificate_pages.store_keys_in(Path(args.store_keys))
        except OSError as exc:
            where = args.store_keys
            print(
                f"ebbtide certificate verify: cannot read the store keys in {where}: {exc.strerror}",
                file=sys.stderr,
            )
            return 2
    try:
        reasons = certificates.verify(document, Path(args.public_key).read_bytes(), store_keys)
    except (OSError, ValueError) as exc:
        print(f"ebbtide certificate verify: cannot use the public key: {exc}", file=sys.stderr)
        return 2
    if reasons:
        print(f"INVALID: {args.path}")
        for reason in reasons:
            print(f"  - {reason}")
        return 1
    entries = len(document["certificate"]["entries"])
    stores = sorted({e["store"] for e in document["certificate"]["entries"]})
    print(
        f"VALID: {args.path}: subject {document['certificate']['subject_id']}, {entries} deletion(s), "
        f"signed by key {document['signature']['key_id']}"
        + (f"; each store's receipt verified ({', '.join(stores)})" if store_keys is not None else "")
    )
    return 0


def _get_certificates(args: argparse.Namespace, settings: Settings) -> int:
    """Write a subject's certificates from the certificates topic as JSON (signed) and HTML."""
    from ebbtide.streams import certificates
    from ebbtide.tools import certificates as certificate_pages
    from ebbtide.tools.state_reader import StateUnavailable, read_certificates

    try:
        found = read_certificates(settings, args.path)
    except StateUnavailable as exc:
        print(f"ebbtide certificate get: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"ebbtide certificate get: no certificate for subject {args.path!r} yet", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for number, raw in enumerate(found, start=1):
        document = certificates.loads(raw)
        name = out / f"certificate-{number}"
        name.with_suffix(".json").write_text(certificates.dumps(document), encoding="utf-8")
        name.with_suffix(".html").write_text(certificate_pages.render_html(document), encoding="utf-8")
        body = document["certificate"]
        print(
            f"{name.with_suffix('.json')}: issued {body['issued_at']}, "
            f"{len(body['entries'])} store answer(s), key {document['signature']['key_id']}"
        )
    return 0
