"""Issuing the deletion certificates the engine makes: signed and published, or, if signing
fails, held in the partition's state and tried again at its next tick (a certified round is
never lost, and no subject's state grows with a signing outage)."""

from __future__ import annotations

import json
import logging

from ebbtide.runtime import metrics
from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.certificate import CertificateDue
from ebbtide.streams.engine.decisions import stable_id
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.partitions import Partitions
from ebbtide.streams.worker.routing import Out
from ebbtide.streams.worker.staging import StagedTable

log = logging.getLogger(__name__)


class Certificates:
    """The worker's certificates: signed and published, or held in the state table."""

    def __init__(
        self, signer: CertificateSigner | None, topic: str, state: StagedTable, partitions: Partitions
    ) -> None:
        """``signer`` None: no certificate is published (only tests of other things do that)."""
        self.signer = signer
        self.topic = topic
        self.state = state
        self.partitions = partitions

    def issue(self, partition: int, certificates: tuple[CertificateDue, ...]) -> list[Out]:
        """The signed certificates to publish; one that cannot be signed is held instead."""
        out: list[Out] = []
        for certificate in certificates:
            if self.signer is None:
                metrics.CERTIFICATES.labels("unsigned").inc()
                continue
            signed = self._signed(certificate)
            if signed is None:
                self._hold(partition, certificate)
            else:
                out.append(signed)
        return out

    def sign_held(self, partition: int) -> list[Out]:
        """Try again to sign the partition's certificates that could not be signed before."""
        if self.signer is None:
            return []
        held = self.partitions.held(partition)
        if not held:
            return []
        out: list[Out] = []
        for key in sorted(held):
            signed = self._signed(snapshot.load_certificate(self.state[key]), retry=True)
            if signed is not None:
                out.append(signed)
                del self.state[key]
                held.discard(key)
        metrics.CERTIFICATES_UNSIGNED.set(self.partitions.unsigned())
        return out

    def _signed(self, certificate: CertificateDue, retry: bool = False) -> Out | None:
        """The signed certificate to publish, or None if signing failed (it is then kept and
        tried again at the partition's next tick: a certified round is never lost)."""
        assert self.signer is not None
        try:
            signed = self.signer.encode(certificate)
        except Exception as exc:  # a broken key, a refused content: kept, retried, alerted
            if not retry:
                metrics.CERTIFICATES.labels("deferred").inc()
            log.error(
                "certificate for subject %s not signed (%s: %s); kept and tried again at the next tick",
                certificate.subject_id,
                type(exc).__name__,
                exc,
            )
            return None
        metrics.CERTIFICATES.labels("issued").inc()
        return Out(self.topic, certificate.subject_id.encode(), signed)

    def _hold(self, partition: int, certificate: CertificateDue) -> None:
        """Keep a certificate that could not be signed in the partition's state, under a key of
        its own (``u:<partition>:<content id>``), so no state value grows with an outage."""
        self.partitions.index(partition)  # so the held keys are known before this one is added
        content = snapshot.dump_certificate(certificate)
        key = f"u:{partition}:{stable_id(json.dumps(content, sort_keys=True))}"
        self.state[key] = content
        self.partitions.hold(partition, key)
