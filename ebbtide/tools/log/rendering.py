"""One readable line per entry: time, place, subject, kind and the essentials of its topic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ebbtide.tools.log.entries import Entry, iso, time_of
from ebbtide.tools.log.topics import LogTopic

_MAX = 1000  # characters of one field shown in a line (the policy's longest reason has ~330)


def printable(text: str) -> str:
    """``text`` with its control characters escaped (a message is anyone's input: no terminal
    escape sequence reaches the screen)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def safe(value: Any) -> str:
    """A value as one printable line: control characters escaped, long text cut."""
    text = printable("-" if value is None else str(value))
    return text if len(text) <= _MAX else text[:_MAX] + "…"


def _decision(v: dict[str, Any]) -> tuple[str, str]:
    parts = [safe(v["record"]), f"rule {safe(v.get('rule_id'))}"]
    if v.get("deadline") is not None:
        parts.append(f"deadline {iso(v['deadline'])}")
    parts.append(safe(v["reason"]))
    chain = [f"{name} {safe(v[name])}" for name in ("input", "seq", "prev_hash") if v.get(name) is not None]
    return v["kind"], "  ".join(parts + chain)


def _command(v: dict[str, Any]) -> tuple[str, str]:
    record = f"{v['store']}/{v['category']}/{v['record_key']}"
    return v["category"], (
        f"delete {safe(record)}  rule {safe(v['rule_id'])}  deadline {iso(v['deadline'])}  "
        f"command {safe(v['command_id'])}"
    )


def _receipt(v: dict[str, Any]) -> tuple[str, str]:
    record = f"{v['store']}/{v['category']}/{v['record_key']}"
    text = f"{safe(record)}  rows {v['rows']}  command {safe(v['command_id'])}"
    return v["outcome"], text + (f"  {safe(v['reason'])}" if v.get("reason") else "")


def _answer(v: dict[str, Any]) -> tuple[str, str]:
    items = v["items"]
    deleted = sum(1 for i in items if i["action"] == "DELETE")
    return "ANSWER", (
        f"request {safe(v['request_id'])}: {deleted} to delete, {len(items) - deleted} kept, "
        f"due by {iso(v['due_by'])}"
    )


def _certificate(v: dict[str, Any]) -> tuple[str, str]:
    body, signature = v["certificate"], v["signature"]
    stores = sorted({str(e["store"]) for e in body["entries"]})
    return "CERTIFICATE", (
        f"{len(body['entries'])} deletion(s) in {safe(', '.join(stores))}  policy "
        f"{safe(body['policy_version'])}  key {safe(signature['key_id'])} (signature not checked here)"
    )


def _dead_letter(v: dict[str, Any]) -> tuple[str, str]:
    where = safe(v["source_topic"])
    if v["source_partition"] is not None:
        where += f"[{v['source_partition']}]"
    if v["source_offset"] is not None:
        where += f"@{v['source_offset']}"
    return v["reason_kind"], f"from {where}: {safe(v['reason'])}"


_ESSENTIALS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "decisions": _decision,
    "commands": _command,
    "receipts": _receipt,
    "answers": _answer,
    "certificates": _certificate,
    "dlq": _dead_letter,
}


def line(spec: LogTopic, entry: Entry, prefix: str) -> str:
    """``TIME  TOPIC[PARTITION]@OFFSET  SUBJECT  KIND  ESSENTIALS``; TOPIC without the prefix."""
    topic = entry.topic[len(prefix) + 1 :] if entry.topic.startswith(f"{prefix}.") else entry.topic
    head = f"{iso(time_of(spec, entry)) or '-'}  {safe(topic)}[{entry.partition}]@{entry.offset}"
    subject = "-" if spec.name == "dlq" else safe(entry.subject)
    if entry.value is None:
        return f"{head}  {subject}  UNDECODABLE  {safe(entry.error)}"
    kind, essentials = _ESSENTIALS[spec.name](entry.value)
    return f"{head}  {subject}  {safe(kind)}  {essentials}"
