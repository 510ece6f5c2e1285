"""A message proves nothing by the topic it arrived on: a legal hold event (LegalHoldPlaced,
LegalHoldReleased) is applied only if a trusted hold signer's key signed it. A forged one (unsigned,
signed by another key, or changed after signing) is dead-lettered, counted as a security event,
and the deletion it would have stopped goes ahead; a properly signed hold still stops it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ebbtide.cli import main
from ebbtide.runtime import keys
from ebbtide.runtime.authenticity import (
    HOLD,
    KEY_ID,
    SIGNATURE,
    HoldKeys,
    MessageSigner,
    Refused,
    canonical_bytes,
    hold_content,
)
from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import Out
from ebbtide.tools.client import EventPublisher, InvalidEvent, load_hold_signer, sign_hold, to_record
from tests.support import security_events, unit_hold_keys, unit_hold_signer
from tests.unit.ebbtide.tools.test_publish_bounded import DeadBroker, broker, write
from tests.unit.streams.worker.harness import CLIENT_RECORD, TOPICS, Harness, event

__all__ = ["broker"]  # the fixture, used by name

CODEC = codec_for(LIFECYCLE_EVENT)
CLOSED = "2021-03-15T00:00:00Z"  # the account closes: its client record is due 3 years later
PAST_DEADLINE = "2024-03-16T00:00:00Z"


def hold(event_id: str = "h1", hold_id: str = "court-7", **payload: Any) -> dict[str, Any]:
    return event(event_id, "LegalHoldPlaced", "2022-01-01T00:00:00Z", hold_id=hold_id, **payload)


def release(event_id: str = "h2", hold_id: str = "court-7") -> dict[str, Any]:
    return event(event_id, "LegalHoldReleased", "2024-06-01T00:00:00Z", hold_id=hold_id)


def signed(raw: dict[str, Any], signer: MessageSigner | None = None) -> dict[str, Any]:
    return sign_hold(to_record(raw), signer or unit_hold_signer())


def harness() -> Harness:
    """A processor that trusts :func:`unit_hold_signer` for holds, with a closed account."""
    h = Harness()
    h.processor.hold_keys = unit_hold_keys()
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", CLOSED))
    return h


def send(h: Harness, record: dict[str, Any]) -> list[Out]:
    return h.publish_bytes(record["subject_id"].encode(), CODEC.encode(record))


def reason(out: list[Out]) -> str:
    (dead,) = out
    assert dead.topic == TOPICS.dlq
    return dict(dead.headers)["reason"].decode()


def _tampered() -> dict[str, Any]:
    """Signed for one category, then widened to the whole subject."""
    record = signed(hold(categories=["correspondence"]))
    branch, payload = record["payload"]
    return {**record, "payload": (branch, {**payload, "categories": []})}


def _moved() -> dict[str, Any]:
    """Signed for one time, then dated before the account closed."""
    earlier = to_record(event("x", "AccountClosed", "2020-01-01T00:00:00Z"))["event_time"]
    return {**signed(hold()), "event_time": earlier}


FORGERIES: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    "unsigned": (lambda: to_record(hold()), "unsigned", "security: legal_hold: not signed"),
    "another key": (
        lambda: signed(hold(), MessageSigner(keys.generate_key()[0])),
        "other_key",
        "security: legal_hold: signed by a key that is not a trusted hold signer's",
    ),
    "changed after signing": (_tampered, "bad_signature", "security: legal_hold: bad signature"),
    "moved to another time": (_moved, "bad_signature", "security: legal_hold: bad signature"),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_hold_is_dead_lettered_counted_and_the_deletion_goes_ahead(forgery: str) -> None:
    make, kind, words = FORGERIES[forgery]
    h = harness()
    before = security_events("events", kind)
    why = reason(send(h, make()))
    assert why.startswith(words), why
    assert "cust-1" not in why and "court-7" not in why  # no personal data, no value in the reason
    assert security_events("events", kind) == before + 1
    h.tick(PAST_DEADLINE)
    assert [c["record_key"] for c in h.commands()] == ["1"]  # not held: deleted when due


def test_a_properly_signed_hold_stops_the_deletion_and_a_forged_release_does_not_lift_it() -> None:
    h = harness()
    assert not [o for o in send(h, signed(hold())) if o.topic == TOPICS.dlq]
    h.tick(PAST_DEADLINE)
    assert h.commands() == []
    assert "HELD" in [d["kind"] for d in h.decisions()]

    before = security_events("events", "unsigned")
    assert reason(send(h, to_record(release()))).startswith("security: legal_hold: not signed")
    assert security_events("events", "unsigned") == before + 1
    h.tick("2024-06-02T00:00:00Z")
    assert h.commands() == []  # still held

    send(h, signed(release()))
    h.tick("2024-06-03T00:00:00Z")
    assert [c["record_key"] for c in h.commands()] == ["1"]


def test_a_processor_without_hold_keys_refuses_every_hold() -> None:
    h = Harness()  # no hold keys given
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", CLOSED))
    before = security_events("events", "no_trusted_key")
    assert "trusts no hold signer's key" in reason(send(h, signed(hold())))
    assert security_events("events", "no_trusted_key") == before + 1
    h.tick(PAST_DEADLINE)
    assert len(h.commands()) == 1


def test_other_events_need_no_signature() -> None:
    h = harness()
    assert [o.topic for o in h.sent] == [TOPICS.decisions] * len(h.sent)  # no dead letter so far
    h.tick(PAST_DEADLINE)
    assert len(h.commands()) == 1


def test_a_replay_of_the_same_log_gets_the_same_decisions() -> None:
    log = [
        to_record(CLIENT_RECORD),
        to_record(event("c1", "AccountClosed", CLOSED)),
        to_record(hold("f1")),  # forged
        _tampered(),
        signed(hold("h1", categories=["client"])),
        to_record(release("f2")),  # forged
    ]

    def run() -> list[tuple[str, bytes, bytes, tuple[tuple[str, bytes], ...]]]:
        processor = LifecycleProcessor(
            Harness().processor.policy, TOPICS, {}, hold_keys=unit_hold_keys(), trusted=None
        )
        out: list[Out] = []
        for offset, record in enumerate(log):
            out += processor.on_event(0, offset, b"cust-1", CODEC.encode(record))
            processor.flush()
        return [(o.topic, o.key, o.value, o.headers) for o in out]

    first, second = run(), run()
    assert first == second
    assert sum(1 for topic, *_ in first if topic == TOPICS.dlq) == 3


# -- what is signed ---------------------------------------------------------------------------------


def test_the_signature_survives_the_wire_and_is_byte_identical_when_signed_again() -> None:
    raw = hold()  # categories and records left out: their Avro default, empty
    raw["payload"].pop("categories", None)
    record = signed(raw)
    decoded = CODEC.decode(CODEC.encode(record))
    unit_hold_keys().check(decoded)  # what the client signed is what the worker reads
    assert canonical_bytes(HOLD, record) == canonical_bytes(HOLD, decoded)
    assert CODEC.encode(signed(raw)) == CODEC.encode(record)  # Ed25519 is deterministic
    content = hold_content(decoded)
    assert content["format"] == "ebbtide-legal-hold/1" and content["type"] == "LegalHoldPlaced"
    assert set(content) == {"format", "type", "event_id", "subject_id", "event_time", "producer", "payload"}
    assert content["payload"] == {"hold_id": "court-7", "categories": [], "records": []}
    assert len(decoded[SIGNATURE]) == 64 and decoded[KEY_ID] == unit_hold_signer().key_id


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject_id", "cust-2"), ("event_id", "h9"), ("producer", "someone"), ("hold_id", "other")],
)
def test_every_identifying_field_is_signed(field: str, value: str) -> None:
    record = signed(release())
    if field == "hold_id":
        changed = {**record, "payload": (record["payload"][0], {"hold_id": value})}
    else:
        changed = {**record, field: value}
    with pytest.raises(Refused) as refused:
        unit_hold_keys().check(changed)
    assert refused.value.kind == "bad_signature"


def test_a_placed_hold_signature_is_not_a_release() -> None:
    placed = signed(hold())
    as_release = {
        **placed,
        "payload": ("io.ebbtide.events.LegalHoldReleased", {"hold_id": "court-7"}),
    }
    with pytest.raises(Refused, match="bad signature"):
        unit_hold_keys().check(as_release)


# -- the worker's keys ------------------------------------------------------------------------------


def test_hold_keys_come_from_files_and_directories_and_a_bad_setting_is_one_line(tmp_path: Path) -> None:
    one, two = (MessageSigner(keys.generate_key()[0]) for _ in range(2))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "legal.pub").write_bytes(one.public_pem)
    (tmp_path / "two.pub").write_bytes(two.public_pem)
    settings = Settings.from_env(
        {
            "EBBTIDE_HOLD_KEYS": f"{tmp_path / 'dir'}, {tmp_path / 'two.pub'}",
            "EBBTIDE_STATE_DIR": str(tmp_path / "state"),
        }
    )
    trusted = HoldKeys.for_worker(settings)
    assert trusted.key_ids == tuple(sorted({one.key_id, two.key_id}))
    assert not (tmp_path / "state").exists()  # the setting names the keys: no local pair is made

    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.pub").write_text("not a key")
    for path, words in (
        (tmp_path / "missing.pub", "no public key at"),
        (tmp_path / "empty", "no public key (*.pub) in the directory"),
        (tmp_path / "bad.pub", "not an Ed25519 public key"),
    ):
        with pytest.raises(ValueError, match=r"^EBBTIDE_HOLD_KEYS: ") as error:
            HoldKeys.for_worker(Settings(hold_keys=str(path)))
        assert words in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(SettingsError, match="EBBTIDE_HOLD_KEYS"):
        Settings.from_env({"EBBTIDE_HOLD_KEYS": " , "})


def test_a_worker_on_the_wall_clock_without_hold_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^EBBTIDE_HOLD_KEYS is not set: ") as error:
        HoldKeys.for_worker(Settings(state_dir=tmp_path, clock_mode="wall"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "keys").exists()  # no key of its own: it would trust itself only


def test_a_directory_of_every_role_s_keys_is_not_a_hold_signers_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "holds.pub").write_bytes(MessageSigner(keys.generate_key()[0]).public_pem)
    (directory / "sink-customer_db.pub").write_bytes(MessageSigner(keys.generate_key()[0]).public_pem)
    with pytest.raises(ValueError, match=r"holds keys of other roles \(sink-customer_db.pub\)"):
        HoldKeys.for_worker(Settings(hold_keys=str(directory)))
    assert HoldKeys.for_worker(Settings(hold_keys=str(directory / "holds.pub"))).key_ids


def test_on_a_replay_clock_the_worker_trusts_the_local_pair_and_makes_it_if_missing(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, clock_mode="replay")
    trusted = HoldKeys.for_worker(settings)
    local = tmp_path / "keys" / "holds.key"
    assert local.stat().st_mode & 0o777 == 0o600 and local.with_suffix(".pub").is_file()
    signer = load_hold_signer(local)
    assert trusted.key_ids == (signer.key_id,)
    trusted.check(signed(hold(), signer))
    assert HoldKeys.for_worker(settings).key_ids == trusted.key_ids  # made once, then read


# -- the publishing side ----------------------------------------------------------------------------


def test_the_client_refuses_an_unsigned_hold_before_sending_anything(broker: list[DeadBroker]) -> None:
    publisher = EventPublisher(Settings())
    with pytest.raises(InvalidEvent, match=r"^LegalHoldPlaced must be signed with a legal hold signing key"):
        publisher.publish(hold())
    with pytest.raises(InvalidEvent, match=r"^LegalHoldReleased must be signed"):
        publisher.publish_record(to_record(release()))
    publisher.publish(event("c1", "AccountClosed", CLOSED))  # other events need no key
    publisher.close()
    assert len(broker[0].sent) == 1


def test_the_client_signs_holds_with_its_key(broker: list[DeadBroker]) -> None:
    with EventPublisher(Settings(), hold_signer=unit_hold_signer()) as publisher:
        publisher.publish(hold())
        publisher.publish_record(signed(release()))  # already signed: sent as it is
    values = [CODEC.decode(value) for _, _, value in broker[0].sent]
    for record in values:
        unit_hold_keys().check(record)
    assert broker[0].sent[1][2] == CODEC.encode(signed(release()))


def test_publish_without_a_hold_key_refuses_the_file_naming_the_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    broker: list[DeadBroker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EBBTIDE_HOLD_SIGNING_KEY", raising=False)
    path = write(
        tmp_path / "events.jsonl", [json.dumps(event("c1", "AccountClosed", CLOSED)), json.dumps(hold())]
    )
    assert main(["publish", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: line 2: LegalHoldPlaced must be signed with a legal hold signing key (--hold-key" in err
    assert "nothing was published" in err
    assert broker == []  # no producer was even made

    missing = tmp_path / "nowhere.key"
    assert main(["publish", str(path), "--hold-key", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"ebbtide publish: legal hold signing key {missing}: No such file or directory\n"
    assert not missing.exists()  # never made by the publisher
    not_a_key = write(tmp_path / "bad.key", ["nope"])
    assert main(["publish", str(path), "--hold-key", str(not_a_key)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ebbtide publish: legal hold signing key {not_a_key}: not ")
    assert err.count("\n") == 1

    key = tmp_path / "holds.key"
    key.write_bytes(keys.generate_key()[0])
    assert main(["publish", str(path), "--hold-key", str(key), "--dry-run"]) == 0
    assert "2 valid event(s)" in capsys.readouterr().out
    monkeypatch.setenv("EBBTIDE_HOLD_SIGNING_KEY", str(key))
    assert main(["publish", str(path)]) == 0
    (made,) = broker
    HoldKeys([load_hold_signer(key).public_pem]).check(CODEC.decode(made.sent[1][2]))
