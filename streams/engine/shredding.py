"""Key shredding: once none of a subject's copies is left, its data keys are destroyed.

Personal values reach the log sealed with the subject's data key (``enc:v1:<key id>:...``,
ebbtide/runtime/tokens.py); the engine sees only the tokens. When a deletion certificate leaves
the subject with no live copy (every copy deleted: none pending, ordered or left with a registry
after a transfer), each key its state names and that is not shredded yet is decided destroyed
(``KEY_SHREDDED``) and ordered deleted from the key store like any copy: a command to the store
``keys`` (record key: the key id), whose sink deletes the key and answers with a signed receipt;
the receipt settles the copy and a certificate proves it. The decision depends on the state
alone (the key ids are part of the tokens), so a replay decides it again, the same.

A subject that comes back later is sealed under a new key (new id); its old tokens stay shredded.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ebbtide.streams.engine.decisions import Decision, DeleteRecord, record_decision, stable_id
from ebbtide.streams.engine.model import RecordState, SubjectState
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Policy

KEY_STORE = "keys"  # the key store's sink: its commands topic is <prefix>.commands.keys
KEY_CATEGORY = "key"
KEY_RULE = "key-shredding"  # the rule id its commands carry (no retention rule: the key goes at once)
# The key id of a sealed value (the format is ebbtide/runtime/tokens.py's; the engine imports
# nothing outside itself, and a unit test checks the two agree).
_KEY_ID = re.compile(r"enc:v1:([0-9a-f]{16}):")


def sealed_key_ids(state: SubjectState) -> set[str]:
    """Ids of the data keys the subject's state names: in its records' keys and refs, its facts'
    refs and details (a legal hold's record ids), and the keys already ordered destroyed."""
    texts: list[str] = []
    for record in state.records.values():
        if record.store != KEY_STORE:
            texts += [record.record_key, record.ref or ""]
    for fact in state.facts:
        texts += [fact.ref or "", *fact.detail]
    return {match for text in texts for match in _KEY_ID.findall(text)}


def no_live_copies(state: SubjectState) -> bool:
    """Every copy of the subject is deleted (and at least one was ever announced)."""
    copies = [r for r in state.records.values() if r.store != KEY_STORE]
    return bool(copies) and all(r.status == "deleted" for r in copies)


def shred_keys(
    state: SubjectState, policy: Policy, now: int, trigger: str
) -> tuple[SubjectState, tuple[Decision, ...], tuple[DeleteRecord, ...]]:
    """After a certificate (``now``: its ``issued_at``): if no live copy is left, each data key
    of the subject not ordered destroyed yet is decided ``KEY_SHREDDED`` and ordered deleted from
    the key store. The state keeps each as a copy in the store ``keys`` (status ordered), which
    its receipt settles and the next certificate lists."""
    if not no_live_copies(state):
        return state, (), ()
    ordered = {r.record_key for r in state.records.values() if r.store == KEY_STORE}
    fresh = sorted(sealed_key_ids(state) - ordered)
    if not fresh:
        return state, (), ()
    records = dict(state.records)
    decisions, commands = [], []
    for key_id in fresh:
        copy, decision, command = _shred(state.subject_id, key_id, policy, now, trigger)
        records[copy.record_id] = copy
        decisions.append(decision)
        commands.append(command)
    return replace(state, records=records), tuple(decisions), tuple(commands)


def _shred(
    subject_id: str, key_id: str, policy: Policy, now: int, trigger: str
) -> tuple[RecordState, Decision, DeleteRecord]:
    """The key's copy in the store ``keys`` (ordered now), its decision and its command."""
    command_id = stable_id("key-shredding", subject_id, key_id)
    copy = RecordState(
        KEY_STORE,
        KEY_CATEGORY,
        key_id,
        None,
        trigger,
        now,
        "ordered",
        rule_id=KEY_RULE,
        deadline=now,
        caused_by=(trigger,),
        command_id=command_id,
        ordered_at=now,
        chase_at=now + policy.service_level(KEY_STORE),
    )
    decision = record_decision(
        subject_id,
        copy,
        "KEY_SHREDDED",
        None,
        now,
        f"no copy of the subject is left (certified {calendar.iso(now)}): its data key {key_id} is "
        "destroyed, so the values it sealed in the log can never be read again",
        policy,
        (trigger,),
        trigger,
    )
    command = DeleteRecord(
        command_id, subject_id, KEY_STORE, KEY_CATEGORY, key_id, KEY_RULE, policy.label, now, now
    )
    return copy, decision, command
