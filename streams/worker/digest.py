"""A partition's digest: what the worker counts of its states, kept on disk in step with them.

With the rocksdb store, each partition database's derived column family (``derived``) holds,
under :data:`DIGEST_KEY`, a :class:`Digest`: the changelog offset it is valid at, the subjects
per policy label, the due index's cursor, the pending deadlines, the gauges' counts per label
(``partitions._GAUGES``) and the keys of the certificates held for want of a signature. It is
written in the same atomic write batch as the states and the offset it describes: by a batch's
persist (as ``partitions.Partitions`` counts it then) and by the recovery paths (:func:`replay`:
each state record counted by the difference of its old and new summaries, its next deadline
filed as a due entry). A partition started with a digest at its database's offset, all its
subjects stamped under the running policy (or judged again under it already, at a full start),
reads no state; see ``partitions``.
"""

from __future__ import annotations

import msgspec

from ebbtide.streams.worker import state_format
from ebbtide.streams.worker.derived import DerivedPartition, Replayed, Writes
from ebbtide.streams.worker.progress import bucket_of, due_key
from ebbtide.streams.worker.state_format import Summary

DIGEST_KEY = b"g"  # not a due entry's (``progress.DUE``)
GAUGES = 5  # the gauges counted per label, in the order of ``Summary.by_label``


class Digest(msgspec.Struct, array_like=True):
    """See the module docstring."""

    offset: int | None = None  # the changelog offset the partition's database reaches with it
    policies: dict[str, int] = {}  # policy label -> subjects last judged under it
    cursor: int | None = None  # the due index's last bucket scanned
    pending: int = 0  # records waiting for their deadline
    gauges: list[dict[str, int]] = []  # per gauge (Summary.by_label order): label -> count
    unsigned: list[str] = []  # table keys of certificates held for want of a signature
    # The policy label every subject was judged again under at the partition's last full start:
    # subjects still under another label then failed to be judged again (logged), and are tried
    # again when next decoded, so they need no full start again under that label.
    judged: str | None = None

    def count(self, old: Summary | None, new: Summary | None) -> None:
        """Count a state changed from ``old`` to ``new`` (None: none), by the difference."""
        while len(self.gauges) < GAUGES:
            self.gauges.append({})
        for summary, sign in ((old, -1), (new, 1)):
            if summary is None:
                continue
            self.pending += sign * summary.waiting
            add_to(self.policies, summary.policy, sign)
            for total, counts in zip(self.gauges, summary.by_label(), strict=True):
                for label, n in counts.items():
                    add_to(total, label, sign * n)


def add_to(counts: dict[str, int], label: str, change: int) -> None:
    """Add ``change`` to ``counts[label]``; a count that comes to 0 is dropped."""
    n = counts.get(label, 0) + change
    if n:
        counts[label] = n
    else:
        counts.pop(label, None)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Digest)


def encode(digest: Digest) -> bytes:
    return _encoder.encode(digest)


def decode(raw: bytes) -> Digest:
    return _decoder.decode(raw)


def _readable(raw: bytes) -> Digest | None:
    """The digest ``raw`` holds, or None if it cannot be read (a damaged or foreign value: never
    trusted, so the partition's next start reads its states)."""
    try:
        return decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def stored(derived: DerivedPartition, label: str) -> tuple[Digest | None, str]:
    """The digest a partition starts from, if its database has a valid one, and why (logged).
    None: its states must be read (no digest, as an older version wrote it; one at another
    offset; or subjects stamped under a policy other than ``label``)."""
    raw = derived.get(DIGEST_KEY)
    offset = derived.offset()
    if raw is None:
        if offset is None and derived.is_empty():
            return Digest(), "an empty database"
        return None, f"no digest beside the states at offset {offset}"
    digest = _readable(raw)
    if digest is None:
        return None, "an unreadable digest"
    if digest.offset != offset:
        return None, f"the digest is at offset {digest.offset}, the states at {offset}"
    others = sum(n for policy, n in digest.policies.items() if policy != label)
    if others and digest.judged != label:
        return None, f"{others} subjects stamped under another policy"
    return digest, f"the digest at offset {offset}"


def replay(derived: DerivedPartition, records: Replayed, offset: int) -> Writes:
    """The derived writes for changelog ``records`` (key, value before, value) written to
    ``derived``'s database with ``offset``: the digest moved on by them and a due entry for each
    state's next deadline. Nothing is derived over a database without a valid digest (its
    next start reads the states)."""
    raw = derived.get(DIGEST_KEY)
    if raw is None:
        if derived.offset() is not None or not derived.is_empty():
            return {}
        digest = Digest()
    else:
        found = _readable(raw)
        if found is None or found.offset != derived.offset():
            return {DIGEST_KEY: None}  # unreadable or stale: never taken for valid again
        digest = found
    writes = dict.fromkeys(advance(digest, records), b"")
    digest.offset = offset
    writes[DIGEST_KEY] = encode(digest)
    return writes


def advance(digest: Digest, records: Replayed) -> list[bytes]:
    """Count ``records`` (key, value before, value) into ``digest``; the due entries they file
    (each state's next deadline, in its day or the cursor's)."""
    due = []
    unsigned = set(digest.unsigned)
    for key, old, new in records:
        if key.startswith("u:"):
            (unsigned.discard if new is None else unsigned.add)(key)
            continue
        before = None if old is None else state_format.read_summary(old)
        after = None if new is None else state_format.read_summary(new)
        digest.count(before, after)
        if after is not None and after.policy != digest.judged:
            digest.judged = None  # written under a policy (another worker's) not judged again at a full start
        if after is not None and after.next is not None:
            bucket = bucket_of(after.next)
            if digest.cursor is not None:
                bucket = max(bucket, digest.cursor)
            due.append(due_key(bucket, key.split(":", 2)[2]))
    digest.unsigned = sorted(unsigned)
    return due


def wants(key: str) -> bool:
    """Whether a record of ``key`` changes the digest or the due entries: states and held
    certificates."""
    return key.startswith(("s:", "u:"))
