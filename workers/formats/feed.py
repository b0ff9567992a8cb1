"""What the streaming feed readers (:mod:`~workers.formats.x12`, :mod:`~workers.formats.cdc`) yield, and the
byte-chunk stream they read from.

Contract: a reader is ``(key, Iterator[bytes]) -> Iterator[FeedChunk]``, pure (no I/O beyond consuming the
iterator), never raising on bad input. Each chunk carries good rows per lake table and rejected rows
(:data:`~workers.formats.common.REJECTED`, absolute line numbers); the pipeline turns each chunk into one
``ParsedFile`` as it comes (nothing is collected per file). A chunk that rejects the whole file says so
(``whole_file``; it is then the reader's last chunk); any other rejected row, even with a null line (an X12
interchange), rejects only itself. ``part`` / ``retracts``: see :class:`FeedChunk`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from workers.formats.common import REJECTED

__all__ = ["ChunkStream", "FeedChunk", "rejection"]


@dataclass(frozen=True, slots=True)
class FeedChunk:
    """Good rows by lake table, rejected rows (``REJECTED``) and rows superseded within the chunk.

    ``whole_file``: the chunk's one rejected row rejects the whole file. ``part``: the ordinal of the part of
    the file (an X12 interchange) every row of this chunk belongs to, when the reader released them before the
    part was decided; ``retracts``: this chunk rejects part N whole, so chunks tagged N must not be loaded."""

    tables: Mapping[str, pa.Table] = field(default_factory=dict)
    rejected: pa.Table = field(default_factory=REJECTED.empty_table)
    duplicates: int = 0
    whole_file: bool = False
    part: int | None = None
    retracts: int | None = None


def rejection(line_number: int | None, reason: str, detail: str, record_id: str | None = None) -> dict[str, object]:
    """One ``REJECTED`` row as a dict (``detail`` must never carry a value from the file)."""
    return {"line_number": line_number, "reason": reason, "detail": detail, "record_id": record_id}


class ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (holds at most one chunk)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        # what is left of the current chunk (a view: no copy)
        self._rest = memoryview(b"")  # pragma: no mutate (only its emptiness is read before it is replaced)

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            try:
                self._rest = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(target), len(self._rest))
        target[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n
