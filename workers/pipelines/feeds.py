"""Adapter from the streaming feed readers (``(key, Iterator[bytes]) -> Iterator[FeedChunk]``: X12, HL7 v2,
DMS CDC) to the file handler's :class:`~workers.pipelines.files.ParsedFile`, one per chunk as it comes (memory
bounded by the reader's chunk, never by the file)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from workers.formats.feed import FeedChunk
from workers.pipelines.files import ParsedFile

__all__ = ["chunks_of", "parsed"]

_GZIP_MAGIC = b"\x1f\x8b"
_PIECE = 1 << 20


def chunks_of(data: bytes) -> Iterator[bytes]:
    """``data`` as 1 MiB chunks, gunzipped on the fly when it is gzip (``.gz`` objects; by magic number, so
    bytes a caller already decompressed pass through)."""
    if not data.startswith(_GZIP_MAGIC):
        for start in range(0, len(data), _PIECE):
            yield data[start : start + _PIECE]
        return
    inflate = zlib.decompressobj(wbits=31)
    for start in range(0, len(data), _PIECE):
        piece = inflate.decompress(data[start : start + _PIECE], _PIECE)
        while True:
            if piece:
                yield piece
            if not inflate.unconsumed_tail:
                break
            piece = inflate.decompress(inflate.unconsumed_tail, _PIECE)
    tail = inflate.flush()
    if tail:
        yield tail


def parsed(chunks: Iterable[FeedChunk]) -> Iterator[ParsedFile]:
    """Each reader chunk as a :class:`ParsedFile` (whole-file rejection, part and retraction carried over
    explicitly: a rejected row with a null line is a whole-file rejection only when the reader says so)."""
    for chunk in chunks:
        yield ParsedFile(
            dict(chunk.tables),
            chunk.rejected,
            chunk.duplicates,
            rejects_file=chunk.whole_file,
            part=chunk.part,
            retracts=chunk.retracts,
        )
