"""Commands about the policy and what it decides: ``policy check|diff``, ``explain``, ``overdue``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.cli.arguments import Subcommands
from ebbtide.runtime.settings import Settings

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy


def add_policy(sub: Subcommands) -> None:
    policy = sub.add_parser(
        "policy",
        help="check a policy file, or compare two",
        description="check FILE: validate a policy (unknown category, rule without source, impossible "
        "duration, uncovered category...), the store map (EBBTIDE_STORE_MAP, default: shipped), and "
        "that the shipped sink configs (sinks/postgres/maps/<store>.toml, sinks/http/vendors.toml) "
        "cover every category each store holds. "
        "diff OLD NEW: which rules changed; with --state, how the "
        "deadlines of the running pipeline's pending records move (read from the worker's changelog, "
        "EBBTIDE_APP_ID).",
    )
    policy.add_argument("action", choices=["check", "diff"])
    policy.add_argument("files", nargs="+", metavar="FILE")
    policy.add_argument(
        "--state", action="store_true", help="with diff: count deadline moves in the live state"
    )
    policy.set_defaults(func=cmd_policy)


def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    from ebbtide import bootstrap
    from ebbtide.streams.policy.rules import PolicyError

    try:
        if args.action == "check":
            return _check(Path(args.files[0]), args.files[0], settings)
        if len(args.files) != 2:
            print("ebbtide policy diff: give OLD and NEW policy files", file=sys.stderr)
            return 2
        old, new = (bootstrap.policy(settings, Path(f)) for f in args.files)
    except PolicyError as exc:
        print(f"ebbtide policy: {exc}", file=sys.stderr)
        return 1
    return _diff(old, new, args.state, settings)


def _check(path: Path, named: str, settings: Settings) -> int:
    """The policy file, the store map, and the shipped sink configs against both."""
    from ebbtide import bootstrap
    from ebbtide.sinks.coverage import coverage_problems, ref_problems
    from ebbtide.streams.policy.rules import load_policy

    policy = load_policy(path)
    print(
        f"ok: {named}: rules {policy.label}, {len(policy.rules)} rules, "
        f"every category covered, every rule cited"
    )
    stores = bootstrap.store_map(settings)
    held = {h.category for s in stores.stores for h in s.holds}
    print(
        f"ok: store map {settings.store_map or 'shipped'}: {len(stores.stores)} stores, "
        f"{len(held)} categories held; policy with stores {policy.with_stores(stores).label}"
    )
    gaps = coverage_problems(stores)
    unref = ref_problems(policy.with_stores(stores))
    for gap in gaps + unref:
        print(f"ebbtide policy check: {gap}", file=sys.stderr)
    if gaps or unref:
        return 1
    print("ok: the shipped sink configs cover every category every store holds")
    print("ok: every table backfill announces names the ref its rule follows; no rule waits forever")
    return 0


def _diff(old: Policy, new: Policy, state: bool, settings: Settings) -> int:
    """The rules that changed; with ``state``, how the live pending deadlines would move."""
    from ebbtide.streams.engine.diff import deadline_moves, rule_changes

    print(f"policy {old.label} -> {new.label}")
    for line in rule_changes(old, new) or ["no rule changed"]:
        print(f"  {line}")
    if state:
        from ebbtide.tools.state_reader import StateUnavailable, subjects_from_changelog

        try:
            moves = deadline_moves(subjects_from_changelog(settings), new)
        except StateUnavailable as exc:
            print(f"ebbtide policy diff: {exc}", file=sys.stderr)
            return 1
        print(f"against the state of {settings.app_id}: {sum(moves.values())} pending records")
        for what in ("earlier", "later", "clock starts", "clock stops", "unchanged"):
            print(f"  {what:>12}: {moves.get(what, 0)}")
    return 0


def worker_policy(args: argparse.Namespace, settings: Settings) -> Policy:
    """The policy a worker runs: ``--policy`` (or the shipped rules) with the settings' store map."""
    from ebbtide import bootstrap

    return bootstrap.policy(settings, Path(args.policy) if getattr(args, "policy", None) else None)


def add_explain(sub: Subcommands) -> None:
    explain = sub.add_parser(
        "explain",
        help="explain every record of a subject",
        description="Each record's category, rule, clause, basis, deadline, status "
        "(pending/held/restricted/due/overdue/deleted/anonymised/expiring), the store's answer "
        "and the events that set it; duties owed.",
    )
    explain.add_argument("subject", help="the subject id")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument(
        "--source",
        choices=["worker", "changelog"],
        default="worker",
        help="ask the running worker (fast, default) or read its changelog from Kafka",
    )
    explain.add_argument("--policy", help="policy file the worker runs (default: the shipped policy)")
    explain.add_argument(
        "--reveal",
        action="store_true",
        help="open the subject's sealed values (record keys, domain names) with its key from the key "
        "store (EBBTIDE_KEYS_DSN); 'shredded' where its key is destroyed",
    )
    explain.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ebbtide.streams.engine.explain import explain, render
    from ebbtide.tools.state_reader import (
        StateUnavailable,
        clock_from_changelog,
        subject_from_worker,
        subjects_from_changelog,
    )

    policy = worker_policy(args, settings)
    try:
        if args.source == "worker":
            state, now = subject_from_worker(settings, args.subject)
        else:
            state = next(iter(subjects_from_changelog(settings, args.subject)), None)
            now = clock_from_changelog(settings)
    except StateUnavailable as exc:
        print(f"ebbtide explain: {exc}", file=sys.stderr)
        return 1
    if state is None:
        print(
            f"ebbtide explain: no subject {args.subject!r} in the state of {settings.app_id}", file=sys.stderr
        )
        return 1
    report = explain(state, policy, now)
    text = json.dumps(report, indent=2) if args.json else render(report)
    print(_revealed(args.subject, text, settings) if args.reveal else text)
    return 0


def _revealed(subject: str, text: str, settings: Settings) -> str:
    """``text`` with the subject's sealed values opened (SettingsError without a key store)."""
    from ebbtide.sinks.keys.store import KeyStore
    from ebbtide.tools.revealing import reveal_text

    keys = KeyStore(settings.require_keys_dsn())
    try:
        return reveal_text(subject, text, keys)
    finally:
        keys.close()


def add_overdue(sub: Subcommands) -> None:
    overdue = sub.add_parser(
        "overdue",
        help="deletions a store has not confirmed within its service level",
        description="Every deletion command without a receipt past its store's service level (from "
        "the store map), read from the worker's changelog: store, record, when it was ordered, when "
        "the answer was due, how often it was sent again. The worker sends such commands again after "
        "1, 2, 4 and then every 8 service levels, and exports ebbtide_deletions_overdue{store}.",
    )
    overdue.add_argument("--store", dest="only_store", help="only this store")
    overdue.add_argument("--json", action="store_true", help="machine-readable output")
    overdue.add_argument("--fail", action="store_true", help="exit 1 when anything is overdue (for scripts)")
    overdue.add_argument("--policy", help="policy file the worker runs (default: the shipped policy)")
    overdue.set_defaults(func=cmd_overdue)


def cmd_overdue(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ebbtide.streams.engine.overdue import overdue_report, render
    from ebbtide.tools.state_reader import StateUnavailable, clock_from_changelog, subjects_from_changelog

    policy = worker_policy(args, settings)
    if args.only_store and policy.stores is not None and args.only_store not in policy.stores.ids:
        print(f"ebbtide overdue: no store {args.only_store!r} in the store map", file=sys.stderr)
        return 2
    try:
        now = clock_from_changelog(settings)
        rows = overdue_report(subjects_from_changelog(settings), policy, now, args.only_store)
    except StateUnavailable as exc:
        print(f"ebbtide overdue: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render(rows, now))
    return 1 if rows and args.fail else 0
