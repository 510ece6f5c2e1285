"""``ebbtide schemas register``: every ``.avsc`` into the schema registry, under BACKWARD."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings, Topics

DESCRIPTION = """register: put every version of every schema (schemas/*.avsc, oldest first) into the
schema registry at EBBTIDE_SCHEMA_REGISTRY_URL (its Confluent-compatible API; the local stack's
Apicurio Registry), each under the subject of the topic it is written to, <topic>-value (a deletion
command: each store's command topic), with the subject's compatibility set to BACKWARD first: a
version that cannot read the data of the subject's latest one is refused by the registry, and the
command exits 1 naming its file. Registering what a subject already holds changes nothing (the same
id), so the command may run at every deploy. A producer on the Confluent wire format
(EBBTIDE_WIRE_FORMAT=confluent) sends the id of the newest lifecycle_event version."""


def add_schemas(sub: Subcommands) -> None:
    schemas = sub.add_parser(
        "schemas",
        help="register the Avro schemas in the schema registry (BACKWARD compatibility)",
        description=DESCRIPTION,
    )
    schemas.add_argument("action", choices=["register"])
    schemas.add_argument(
        "--dir",
        metavar="DIR",
        help="the directory of <name>.v<N>.avsc files (default: the schemas Ebbtide ships)",
    )
    schemas.add_argument(
        "--store",
        action="append",
        default=None,
        help="a store whose command topic's subject to cover (repeatable; default: every store of the map)",
    )
    schemas.set_defaults(func=cmd_schemas)


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 once every version is registered, 1 if the registry refused one or cannot be
    reached, 2 for bad input (no registry set, unreadable schema files)."""
    from ebbtide.schemas.codec import SCHEMA_DIR, schema_files
    from ebbtide.schemas.registry import CONFLICT, RegistryRefused, register, subject, subjects
    from ebbtide.schemas.wire import RegistryUnavailable

    prog = "ebbtide schemas register"
    url = settings.schema_registry_url
    if not url:
        print(
            f"{prog}: EBBTIDE_SCHEMA_REGISTRY_URL is not set (the registry's Confluent-compatible API)",
            file=sys.stderr,
        )
        return 2
    directory = Path(args.dir) if args.dir else SCHEMA_DIR
    try:
        files = schema_files(directory)
    except (OSError, ValueError) as exc:  # a misnamed file, JSON or Avro that does not parse
        print(f"{prog}: {directory}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if not files:
        print(f"{prog}: no <name>.v<N>.avsc files in {directory}", file=sys.stderr)
        return 2
    topics = Topics(settings.topic_prefix)
    by_name = subjects(topics, list(args.store or []))
    done: set[str] = set()  # subjects whose compatibility is set
    for schema in files:  # by name, then version: each subject's versions in order
        for name in by_name.get(schema.name) or [subject(f"{topics.prefix}.{schema.name}")]:
            try:
                schema_id = register(url, name, schema, set_compatibility=name not in done)
            except RegistryUnavailable as exc:
                print(f"{prog}: {exc.reason}", file=sys.stderr)
                return 1
            except RegistryRefused as exc:
                why = exc.reason
                if exc.status == CONFLICT:
                    why = "incompatible with the subject's latest version (BACKWARD)"
                print(
                    f"{prog}: {schema.path.name} refused by the registry under {name}: {why}", file=sys.stderr
                )
                return 1
            done.add(name)
            print(f"{schema.path.name}  {name}  id {schema_id}")
    return 0
