"""Signed commands and receipts: what a sink and the worker accept, and what they refuse."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from ebbtide.runtime import authenticity, keys
from ebbtide.runtime.authenticity import COMMAND, RECEIPT, MessageSigner, Refused, TrustedKeys, Verifier
from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.schemas.codec import MAGIC, versions_of
from ebbtide.sinks.base.loop import sink_keys
from ebbtide.sinks.base.receipts import decode_receipt, executed, signed
from ebbtide.streams import certificates
from ebbtide.streams.engine import snapshot
from ebbtide.streams.worker import state_format
from ebbtide.streams.worker.certify import CertificateSigner
from tests.support import deletion_command, security_events, unit_sink_signer, unit_trusted_keys
from tests.unit.streams.worker.harness import TOPICS, answer, fanned_out

pytestmark = pytest.mark.unit


def new_signer() -> MessageSigner:
    return MessageSigner(keys.generate_key()[0])


COMMAND_DATUM = deletion_command("customer_db", "client", "1", command_id="c-1")


def refused(verifier: Verifier, what: str, datum: dict[str, Any]) -> str:
    with pytest.raises(Refused) as caught:
        verifier.check(what, datum)
    return caught.value.kind


class TestCommands:
    def test_a_signed_command_verifies_after_the_wire(self) -> None:
        worker = new_signer()
        codec = codec_for(DELETION_COMMAND)
        decoded = codec.decode(codec.encode(worker.sign(COMMAND, COMMAND_DATUM)))
        Verifier(worker.public_pem).check(COMMAND, decoded)
        assert decoded["signer_key_id"] == worker.key_id and len(decoded["signature"]) == 64

    def test_signing_is_deterministic(self) -> None:
        worker = new_signer()
        codec = codec_for(DELETION_COMMAND)
        assert codec.encode(worker.sign(COMMAND, COMMAND_DATUM)) == codec.encode(
            worker.sign(COMMAND, COMMAND_DATUM)
        )

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("record_key", "2"),
            ("subject_id", "cust-00002"),
            ("store", "billing_db"),
            ("category", "invoice"),
            ("deadline", datetime(2020, 1, 1, tzinfo=UTC)),
            ("command_id", "c-2"),
        ],
    )
    def test_a_field_changed_after_signing_is_refused(self, field: str, value: Any) -> None:
        worker = new_signer()
        tampered = {**worker.sign(COMMAND, COMMAND_DATUM), field: value}
        assert refused(Verifier(worker.public_pem), COMMAND, tampered) == authenticity.BAD_SIGNATURE

    def test_a_command_signed_by_another_key_is_refused(self) -> None:
        worker, forger = new_signer(), new_signer()
        assert (
            refused(Verifier(worker.public_pem), COMMAND, forger.sign(COMMAND, COMMAND_DATUM)) == "other_key"
        )

    def test_another_key_that_claims_the_workers_key_id_is_refused(self) -> None:
        worker, forger = new_signer(), new_signer()
        forged = {**forger.sign(COMMAND, COMMAND_DATUM), "signer_key_id": worker.key_id}
        assert refused(Verifier(worker.public_pem), COMMAND, forged) == authenticity.BAD_SIGNATURE

    def test_an_unsigned_command_is_refused_and_so_is_one_written_with_v1(self) -> None:
        verifier = Verifier(new_signer().public_pem)
        assert refused(verifier, COMMAND, COMMAND_DATUM) == authenticity.UNSIGNED
        v1 = versions_of(DELETION_COMMAND)[0]
        out = io.BytesIO()
        out.write(MAGIC + v1.fingerprint)
        fastavro.schemaless_writer(out, v1.parsed, COMMAND_DATUM)
        decoded = codec_for(DELETION_COMMAND).decode(out.getvalue())
        assert decoded["signature"] is None
        assert refused(verifier, COMMAND, decoded) == authenticity.UNSIGNED

    def test_a_receipt_signature_is_not_a_command_signature(self) -> None:
        key = new_signer()
        both = {**COMMAND_DATUM, "outcome": "DELETED", "rows": 1, "reason": None, "executed_at": 0}
        as_receipt = key.sign(RECEIPT, both)
        assert refused(Verifier(key.public_pem), COMMAND, as_receipt) == authenticity.BAD_SIGNATURE

    def test_the_worker_signs_every_command_it_sends(self, tmp_path: Path) -> None:
        signer = CertificateSigner.from_file(tmp_path / "k.key", "Test ISP")
        _, commands = fanned_out(signer)
        assert len(commands) == 3
        verifier = Verifier((tmp_path / "k.pub").read_bytes())
        for command in commands:
            verifier.check(COMMAND, command)


def receipt_of(
    signer: MessageSigner | None, at: datetime = datetime(2025, 1, 3, 4, 5, 6, 789_123, tzinfo=UTC)
) -> Any:
    return executed(COMMAND_DATUM, "DELETED", 1, None, at, signer=signer)


class TestReceipts:
    def test_a_signed_receipt_verifies_after_the_wire(self) -> None:
        sink = new_signer()
        done = receipt_of(sink)
        decoded = decode_receipt(done.encoded)
        assert decoded == done.receipt  # milliseconds, as the wire carries them
        Verifier(sink.public_pem).check(RECEIPT, decoded)

    def test_a_receipt_changed_after_signing_is_refused(self) -> None:
        sink = new_signer()
        decoded = decode_receipt(receipt_of(sink).encoded)
        for field, value in (("outcome", "NOT_FOUND"), ("rows", 7), ("record_key", "2"), ("reason", "x")):
            tampered = {**decoded, field: value}
            assert refused(Verifier(sink.public_pem), RECEIPT, tampered) == authenticity.BAD_SIGNATURE

    def test_the_worker_trusts_only_the_stores_own_key(self, tmp_path: Path) -> None:
        customer, billing = new_signer(), new_signer()
        (tmp_path / "sink-customer_db.pub").write_bytes(customer.public_pem)
        (tmp_path / "sink-billing_db.pub").write_bytes(billing.public_pem)
        trusted = TrustedKeys(tmp_path)
        trusted.check(decode_receipt(receipt_of(customer).encoded))
        kinds = []
        for receipt in (
            decode_receipt(receipt_of(billing).encoded),  # another store's key
            decode_receipt(receipt_of(None).encoded),  # unsigned
            {**decode_receipt(receipt_of(customer).encoded), "store": "log_store"},  # no key for it
            {**decode_receipt(receipt_of(customer).encoded), "store": "../../etc/passwd"},
        ):
            with pytest.raises(Refused) as caught:
                trusted.check(receipt)
            kinds.append(caught.value.kind)
        assert kinds == ["other_key", "unsigned", "no_trusted_key", "no_trusted_key"]

    def test_a_stored_receipt_is_given_back_byte_for_byte_and_an_unsigned_one_is_signed(self) -> None:
        sink = new_signer()
        stored = receipt_of(sink)
        again = signed(replace(stored, repeated=True), sink)
        assert again.encoded == stored.encoded
        legacy = receipt_of(None)
        made = signed(legacy, sink)
        Verifier(sink.public_pem).check(RECEIPT, decode_receipt(made.encoded))
        assert signed(legacy, sink).encoded == made.encoded  # deterministic


class TestSinkKeys:
    def test_a_sink_without_the_workers_public_key_refuses_to_start(self, tmp_path: Path) -> None:
        with pytest.raises(SettingsError) as caught:
            sink_keys(Settings(state_dir=tmp_path), "customer_db")
        message = str(caught.value)
        assert "EBBTIDE_WORKER_PUBLIC_KEY" in message and "\n" not in message

    def test_a_sink_makes_its_receipt_key_where_the_worker_looks(self, tmp_path: Path) -> None:
        settings = Settings(state_dir=tmp_path)
        CertificateSigner.from_file(settings.signing_key, "Test ISP")
        _, sink = sink_keys(settings, "customer_db")
        public = settings.trusted_keys_dir / authenticity.sink_public_key_name("customer_db")
        assert Verifier(public.read_bytes()).key_id == sink.key_id
        assert (settings.sink_key_for("customer_db").stat().st_mode & 0o777) == 0o600
        assert sink_keys(settings, "customer_db")[1].key_id == sink.key_id  # kept, not made again
        templated = replace(settings, sink_key=tmp_path / "own" / "{store}.pem")
        assert templated.sink_key_for("billing_db") == tmp_path / "own" / "billing_db.pem"


class TestProcessor:
    """A forged receipt never certifies a deletion; the store's signed receipt does."""

    def dead(self, outs: list[Any]) -> str:
        (letter,) = outs
        assert letter.topic == TOPICS.dlq
        return dict(letter.headers)["reason"].decode()

    def test_forged_deleted_receipts_are_dead_lettered_and_the_real_one_confirms(
        self, tmp_path: Path
    ) -> None:
        signer = CertificateSigner.from_file(tmp_path / "k.key", "Test ISP")
        h, commands = fanned_out(signer)
        codec = codec_for(DELETION_RECEIPT)
        for command in commands[1:]:
            assert [o.topic for o in h.processor.on_receipt(0, 0, b"cust-1", answer(command))] == [
                TOPICS.decisions
            ]
        last = commands[0]
        receipt = {
            **{k: last[k] for k in ("command_id", "subject_id", "store", "category", "record_key")},
            "outcome": "DELETED",
            "rows": 1,
            "reason": None,
            "executed_at": datetime(2024, 3, 16, tzinfo=UTC),
        }
        other_store = next(c["store"] for c in commands if c["store"] != last["store"])
        forgeries = {
            "unsigned": codec.encode(receipt),
            "other_key": codec.encode(unit_sink_signer(other_store).sign(RECEIPT, receipt)),
            "bad_signature": codec.encode(
                {**unit_sink_signer(last["store"]).sign(RECEIPT, receipt), "rows": 2}
            ),
            "not_issued": codec.encode(
                unit_sink_signer(last["store"]).sign(RECEIPT, {**receipt, "command_id": "never-issued"})
            ),
        }
        for kind, value in forgeries.items():
            before = security_events("receipts", kind)
            reason = self.dead(h.processor.on_receipt(0, 9, b"cust-1", value))
            h.processor.flush()
            assert reason.startswith("security: deletion_receipt:"), reason
            assert security_events("receipts", kind) == before + 1, kind
        waiting = {store: n for store, n in h.processor.overdue("open").items() if n}
        assert waiting == {last["store"]: 1}  # still waiting: nothing changed
        outs = h.processor.on_receipt(0, 10, b"cust-1", answer(last))
        assert sorted(o.topic for o in outs) == [TOPICS.certificates, TOPICS.decisions]
        assert not any(h.processor.overdue("open").values())

    def test_a_receipt_for_a_record_never_ordered_is_dead_lettered(self) -> None:
        h, commands = fanned_out()
        never = {**commands[0], "record_key": "999", "command_id": "x"}
        before = security_events("receipts", "not_issued")
        assert "never issued" in self.dead(h.processor.on_receipt(0, 0, b"cust-1", answer(never)))
        assert security_events("receipts", "not_issued") == before + 1

    def test_a_processor_without_trusted_keys_accepts_no_receipt(self) -> None:
        h, commands = fanned_out()
        h.processor.trusted = TrustedKeys()
        assert "no trusted key" in self.dead(h.processor.on_receipt(0, 0, b"cust-1", answer(commands[0])))
        h.processor.trusted = unit_trusted_keys()
        outs = h.processor.on_receipt(0, 1, b"cust-1", answer(commands[0]))
        assert [o.topic for o in outs] == [TOPICS.decisions]


class TestCertificateReceipts:
    """A certificate embeds each store's signed receipt, so it proves each store's word."""

    def certified(self, tmp_path: Path) -> tuple[Any, list[dict[str, Any]], bytes]:
        signer = CertificateSigner.from_file(tmp_path / "k.key", "Test ISP")
        h, commands = fanned_out(signer)
        outs = [o for i, c in enumerate(commands) for o in h.processor.on_receipt(0, i, b"cust-1", answer(c))]
        h.processor.flush()
        (published,) = [o for o in outs if o.topic == TOPICS.certificates]
        return h, commands, published.value

    def store_keys(self, commands: list[dict[str, Any]]) -> dict[str, bytes]:
        return {c["store"]: unit_sink_signer(c["store"]).public_pem for c in commands}

    def test_each_entry_carries_the_receipt_the_store_signed_and_verifies_with_its_key(
        self, tmp_path: Path
    ) -> None:
        _, commands, value = self.certified(tmp_path)
        document = certificates.loads(value)
        worker = (tmp_path / "k.pub").read_bytes()
        assert certificates.verify(document, worker) == []
        assert certificates.verify(document, worker, self.store_keys(commands)) == []
        codec = codec_for(DELETION_RECEIPT)
        for command in commands:
            sent = codec.decode(answer(command))  # the receipt as the worker read it off the wire
            (entry,) = [e for e in document["certificate"]["entries"] if e["store"] == command["store"]]
            assert entry["receipt"]["signer_key_id"] == sent["signer_key_id"]
            assert base64.b64decode(entry["receipt"]["signature"]) == sent["signature"]
            assert entry["receipt"]["signed"] == authenticity.signed_content(RECEIPT, sent)

    def test_a_tampered_receipt_names_its_entry_and_the_others_still_verify(self, tmp_path: Path) -> None:
        _, commands, value = self.certified(tmp_path)
        document = certificates.loads(value)
        victim = document["certificate"]["entries"][1]
        victim["receipt"]["signed"]["rows"] = 7
        reasons = certificates.verify(document, (tmp_path / "k.pub").read_bytes(), self.store_keys(commands))
        name = f"entry {victim['store']!r}/{victim['record']!r}"
        assert [r for r in reasons if "store receipt" in r] == [
            f"{name}: bad store receipt signature: the receipt does not match its store's signature "
            "(it was changed after signing, or signed by another key)"
        ]

    def test_the_state_drops_the_signatures_once_certified_and_a_replay_gives_the_same_bytes(
        self, tmp_path: Path
    ) -> None:
        h, _, value = self.certified(tmp_path)
        (stored,) = [v for k, v in h.table.items() if k.startswith("s:")]
        raw = snapshot.dump(state_format.decode(stored))
        assert raw["records"] == []  # every copy is certified: each is pruned to its tombstone
        settled = [copy for _, _, copies in raw["settled"] for copy in copies]
        # key, command, order, answer, certificate, and the announcement ids it recognises
        assert settled and all(len(c) == 9 for c in settled)
        assert not any(isinstance(v, str) and len(v) > 64 for c in settled for v in c)  # no signature
        _, _, again = self.certified(tmp_path)  # same key, same receipts
        assert again == value

    def test_an_answer_kept_by_an_older_worker_is_certified_without_a_receipt(self, tmp_path: Path) -> None:
        signer = CertificateSigner.from_file(tmp_path / "k.key", "Test ISP")
        h, commands = fanned_out(signer)
        h.processor.on_receipt(0, 0, b"cust-1", answer(commands[0]))
        h.processor.flush()
        (key,) = [k for k in h.table if k.startswith("s:")]
        raw = snapshot.dump(state_format.decode(h.table[key]))
        for fields in raw["records"]:  # as an older worker stored it: (outcome, rows, executed_at, reason)
            if fields[17] is not None:
                fields[17] = fields[17][:4]
        h.table[key] = json.dumps(raw).encode()  # in state format 0, as Faust's json codec wrote it
        outs = [
            o
            for i, c in enumerate(commands[1:], start=1)
            for o in h.processor.on_receipt(0, i, b"cust-1", answer(c))
        ]
        (published,) = [o for o in outs if o.topic == TOPICS.certificates]
        document = certificates.loads(published.value)
        worker = (tmp_path / "k.pub").read_bytes()
        assert certificates.verify(document, worker) == []
        missing = [e for e in document["certificate"]["entries"] if e["receipt"] is None]
        assert [e["store"] for e in missing] == [commands[0]["store"]]
        reasons = certificates.verify(document, worker, self.store_keys(commands))
        assert reasons == [
            f"entry {commands[0]['store']!r}/{missing[0]['record']!r}: no store receipt embedded, "
            "so the store's word cannot be checked"
        ]
