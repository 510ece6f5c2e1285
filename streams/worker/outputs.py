"""What the engine decided, as the messages the worker sends: deletion commands (signed with the
worker's key, for the sinks to verify) to each store's topic, decisions and erasure answers."""

from __future__ import annotations

from typing import Any

from ebbtide.runtime import metrics
from ebbtide.runtime.settings import Topics
from ebbtide.schemas import DECISION, DELETION_COMMAND, ERASURE_ANSWER, codec_for
from ebbtide.streams.engine.decisions import Decision, DeleteRecord
from ebbtide.streams.engine.model import Outcome, SubjectState, record_id
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.chaining import Chains
from ebbtide.streams.worker.routing import Out
from ebbtide.streams.worker.translate import answer_record, command_record, decision_record


class Outputs:
    """Encodes an outcome as the messages to send."""

    def __init__(self, topics: Topics, signer: CertificateSigner | None, chains: Chains) -> None:
        """``signer`` signs every deletion command (None: commands go unsigned, and the sinks
        refuse them; only tests of other things do that). ``chains`` links every decision."""
        self.topics = topics
        self.signer = signer
        self.chains = chains
        self._commands = codec_for(DELETION_COMMAND)
        self._decisions = codec_for(DECISION)
        self._answers = codec_for(ERASURE_ANSWER)
        self.input: str | None = None  # the message being processed: every decision's ``input``

    def messages(self, outcome: Outcome, partition: int) -> list[Out]:
        """The outcome's commands, decisions and answers, in that order, keyed by its subject;
        ``partition``: the input partition it was made on."""
        key = outcome.state.subject_id.encode()
        out = [
            Out(self.topics.commands(c.store), key, self._commands.encode(self._command(c)))
            for c in outcome.commands
        ]
        out += [self.decision(partition, key, decision_record(d, self.input)) for d in outcome.decisions]
        out += [
            Out(self.topics.answers, key, self._answers.encode(answer_record(a))) for a in outcome.answers
        ]
        return out

    def decision(self, partition: int, key: bytes, record: dict[str, Any]) -> Out:
        """The message of a decision made on input ``partition``: the next link of that partition's
        hash chain, sent to that partition of the decisions topic. Every decision goes out here."""
        value = self.chains.link(partition, record, self._decisions.encode)
        return Out(self.topics.decisions, key, value, partition=partition)

    def clock_applied(self, partition: int, entry: Decision, tick: str | None) -> Out:
        """A ``CLOCK_APPLIED`` entry (``streams.worker.clock_entry``), its ``input`` the tick's
        place ``tick``: a link of the partition's chain like any decision."""
        metrics.DECISIONS.labels(entry.kind).inc()
        return self.decision(partition, b"", decision_record(entry, tick))

    def _command(self, command: DeleteRecord) -> dict[str, Any]:
        """A deletion command as sent: signed with the worker's key, for the sinks to verify."""
        record = command_record(command)
        return self.signer.sign_command(record) if self.signer is not None else record


def count(before: SubjectState, outcome: Outcome) -> None:
    """Count what an outcome sends: commands (and those sent again for want of a receipt) and
    decisions (and the duties reported overdue, by kind)."""
    for command in outcome.commands:
        metrics.COMMANDS_SENT.labels(command.store, command.category).inc()
        sent = before.records.get(record_id(command.store, command.category, command.record_key))
        if sent is not None and sent.status == "ordered" and sent.command_id == command.command_id:
            metrics.COMMANDS_RESENT.labels(command.store).inc()  # chased: no receipt in time
    for decision in outcome.decisions:
        metrics.DECISIONS.labels(decision.kind).inc()
        if decision.kind == "DUTY_OVERDUE":  # record: duty/<erasure|export|breach>/<id>...
            metrics.DUTIES_OVERDUE.labels(decision.record.split("/")[1]).inc()
