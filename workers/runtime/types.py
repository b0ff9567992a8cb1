"""The interfaces between the runtime, the sources and the pipelines.

A *source* delivers records per partition (a Kinesis shard, an S3 object); the runner groups them into
:class:`Batch` es under a flush policy, asks the source to record the batch as pending (:meth:`Source.begin`),
passes it to the pipeline's :class:`BatchHandler`, and only after the handler returned (durable) settles it
with the source (:meth:`Source.settle`: checkpoint / delete the message). Retries, flushing, metrics and
checkpoint ordering live in the runtime; sources and handlers only implement these small protocols.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where an S3 object's bytes are, for handlers that stream them instead of holding them."""

    bucket: str
    key: str
    version_id: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as the source delivered it; ``data`` is opaque bytes (no PHI is ever logged from it)."""

    data: bytes  # Kinesis record data; for s3_events empty when ``ref`` is given (the object is streamed)
    key: str  # partition key (Kinesis) or object key (S3)
    position: str  # sequence number (Kinesis) or "<etag or version>" (S3)
    arrived_at_us: int  # ApproximateArrivalTimestamp / S3 event time, epoch microseconds UTC
    ref: ObjectRef | None = None  # s3_events: the object to stream (bounded memory for any size)


@dataclass(frozen=True, slots=True)
class Batch:
    """A contiguous run of records of ONE partition (never mixes shards), in source order.

    ``batch_id`` is deterministic from (pipeline, source_id, first_position, last_position), so a replay of
    the same range after a takeover gets the same id: handlers key their idempotence (object keys,
    ``load_audit``) on it.
    """

    batch_id: str
    pipeline: str
    source_id: str  # shard id, or the S3 object key
    records: tuple[SourceRecord, ...]
    first_position: str
    last_position: str
    replay: bool = False  # True when rebuilt from a recorded pending range after a takeover


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a handler did with a batch; the runtime turns it into metrics."""

    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int


class BatchHandler(Protocol):
    """What a pipeline gives the runtime: stages + sinks behind one call."""

    async def handle(self, batch: Batch) -> BatchResult:
        """Process ``batch``; durable when it returns; idempotent per ``batch_id`` (a replay changes nothing).

        Raise :class:`common.errors.TransientError` (or anything ``classify`` deems transient) to be retried
        with backoff; anything terminal makes the runtime call :meth:`quarantine` instead.
        """
        ...

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        """Route the batch's records to quarantine (e.g. raw archive + ``batch_quarantine`` row) so the batch
        goes on. Called after ``handle`` raised a terminal error; must also be idempotent per ``batch_id``."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """What :meth:`Source.poll` returns: records of one partition, in order, plus control flags.

    - ``whole``: the records are exactly one batch (a replayed pending range, one S3 object): the runner
      flushes what it buffered for the partition, then handles these records alone, unsplit and unmerged.
    - ``replay``: the records were rebuilt from a recorded pending range (implies ``whole``).
    - ``end``: the partition reached its end after these records (SHARD_END): flush it now.
    - ``revoked``: the source lost the partition (lease stolen or expired): drop everything buffered for it,
      uncommitted; the new owner replays from the last checkpoint / pending range.
    """

    source_id: str
    records: tuple[SourceRecord, ...] = ()
    whole: bool = False
    replay: bool = False
    end: bool = False
    revoked: bool = False


class LeaseLostError(Exception):
    """The source no longer owns the batch's partition: the conditional write (fencing) refused the
    pending-range record or the checkpoint. The runner drops the partition's buffered records."""


@runtime_checkable
class Source(Protocol):
    """Where batches come from. Implemented by ``workers.sources.kinesis`` and ``workers.sources.s3_events``.

    Contract, in the order the runner calls it for each batch::

        poll -> begin(batch) -> handler.handle(batch) -> settle(batch, committed=True)

    Deliveries of one partition are returned in source order; a source never returns a record again once
    it was delivered in the same ownership, except as a ``replay`` after a takeover. Memory is bounded by
    the source's own buffer: when the runner does not poll (slow sink), the source stops fetching.
    """

    async def poll(self, max_wait: float) -> Sequence[Delivery]:
        """Deliveries available now, waiting at most ``max_wait`` seconds for the first one ([] if none)."""
        ...

    async def begin(self, batch: Batch) -> None:
        """Record ``batch`` as pending before any side effect (Kinesis: pending range in the lease item,
        conditional on ownership). Raises :class:`LeaseLostError` when fenced out."""
        ...

    async def settle(self, batch: Batch, *, committed: bool) -> None:
        """``committed=True``: the handler made the batch durable: checkpoint it / delete its message (raises
        :class:`LeaseLostError` when fenced out). ``committed=False``: the runtime gave up on it for now:
        make it available again (Kinesis: release the lease; SQS: visibility 0, so the redrive policy moves a
        message that keeps failing to its dead-letter queue)."""
        ...

    async def close(self) -> None:
        """Stop fetching, release every lease / in-flight message without checkpointing anything more."""
        ...


def batch_id_for(pipeline: str, source_id: str, first_position: str, last_position: str) -> str:
    """Deterministic batch id: 32 hex chars of SHA-256 over the four parts (safe in object keys)."""
    raw = "\x1f".join((pipeline, source_id, first_position, last_position)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def make_batch(pipeline: str, source_id: str, records: Sequence[SourceRecord], *, replay: bool = False) -> Batch:
    """Build a :class:`Batch` from a non-empty, ordered run of one partition's records."""
    if not records:
        raise ValueError("a batch needs at least one record")
    first, last = records[0].position, records[-1].position
    return Batch(
        batch_id=batch_id_for(pipeline, source_id, first, last),
        pipeline=pipeline,
        source_id=source_id,
        records=tuple(records),
        first_position=first,
        last_position=last,
        replay=replay,
    )
