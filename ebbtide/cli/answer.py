"""``ebbtide answer get REQUEST_ID``: the answer owed to a person who asked for erasure, from
``<prefix>.answers`` (:mod:`ebbtide.tools.log.answers`, rendered by
:mod:`ebbtide.tools.log.answer_page`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ebbtide.cli.arguments import Subcommands, seconds, timeout
from ebbtide.runtime.settings import Settings


def add_answer(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "answer",
        help="the answer to an erasure request: what is deleted, what is kept, why and until when",
        description="get REQUEST_ID: the answer the worker gave to a verified erasure request, read from "
        "<prefix>.answers: what is deleted, what is kept, why (the rule, its legal basis and the "
        "seed clause it comes from) and until when, as readable text (default), as JSON (--json: the "
        "decoded record, times as ISO-8601 UTC) and as a self-contained HTML page (--html FILE). The "
        "answer records no language: --lang chooses Norwegian (nb) or English (en, the default, the "
        "language the policy's reasons are recorded in); the Norwegian page quotes the seeds' "
        "Norwegian text and marks our translations. Exit 1 with one line if there is no answer to "
        "REQUEST_ID or the topic cannot be read.",
    )
    parser.add_argument("action", choices=["get"])
    parser.add_argument("request_id", metavar="REQUEST_ID", help="the erasure request's id")
    parser.add_argument("--lang", choices=["nb", "en"], default="en", help="the page's language (default en)")
    parser.add_argument("--json", action="store_true", help="print the decoded answer record as JSON")
    parser.add_argument(
        "--html", type=Path, metavar="FILE", help="also write the answer as an HTML page to FILE"
    )
    parser.add_argument(
        "--reveal",
        action="store_true",
        help="open the record keys (sealed with the person's data key) with the key from the key "
        "store (EBBTIDE_KEYS_DSN), so the page names each record; 'shredded' once the key is destroyed",
    )
    parser.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="seconds to wait for the broker (default 30)"
    )
    parser.set_defaults(func=cmd_answer)


def cmd_answer(args: argparse.Namespace, settings: Settings) -> int:
    """Print (and write) the answer; 1 if there is none or the topic cannot be read."""
    from ebbtide.tools.log import LogUnavailable, json_safe
    from ebbtide.tools.log.answer_page import render_html, render_text
    from ebbtide.tools.log.answers import find_answer

    name = "ebbtide answer get"
    try:
        answer = find_answer(settings, args.request_id, timeout(args))
    except LogUnavailable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    if answer is None:
        print(f"{name}: no answer to that request id in the answers topic", file=sys.stderr)
        return 1
    if args.reveal:
        answer = _revealed(answer, settings)
    if args.html is not None:
        try:
            args.html.write_text(render_html(answer, args.lang), encoding="utf-8")
        except OSError as exc:
            print(f"{name}: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
            return 1
    print(
        json.dumps(json_safe(answer), indent=2, ensure_ascii=False)
        if args.json
        else render_text(answer, args.lang)
    )
    return 0


def _revealed(answer: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The answer with its items' record keys opened (SettingsError without a key store)."""
    from ebbtide.sinks.keys.store import KeyStore
    from ebbtide.tools.revealing import reveal_record_id

    keys = KeyStore(settings.require_keys_dsn())
    try:
        subject = answer["subject_id"]
        items = [{**i, "record": reveal_record_id(subject, i["record"], keys)} for i in answer["items"]]
        return {**answer, "items": items}
    finally:
        keys.close()
