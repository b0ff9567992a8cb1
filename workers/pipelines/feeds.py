"""Adapter from the streaming feed readers (``(key, Iterator[bytes]) -> Iterator[FeedChunk]``) to the file
handler's :class:`~workers.pipelines.files.ParsedFile` (until the handler consumes chunks itself)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa

from workers.formats.common import REJECTED, keep_last
from workers.formats.feed import FeedChunk
from workers.pipelines.files import ParsedFile

__all__ = ["chunks_of", "collect"]

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


def collect(chunks: Iterable[FeedChunk], keys: Mapping[str, tuple[str, ...]] | None = None) -> ParsedFile:
    """One :class:`ParsedFile` of every chunk: tables concatenated in order; for a table named in ``keys``
    the last row of each key wins (counted as duplicates)."""
    tables: dict[str, list[pa.Table]] = {}
    rejected: list[pa.Table] = []
    duplicates = 0
    for chunk in chunks:
        for name, rows in chunk.tables.items():
            tables.setdefault(name, []).append(rows)
        rejected.append(chunk.rejected)
        duplicates += chunk.duplicates
    out: dict[str, pa.Table] = {}
    for name, parts in tables.items():
        table = pa.concat_tables(parts)
        if keys and name in keys and len(parts) > 1:
            table, superseded = keep_last(table, keys[name])
            duplicates += superseded
        out[name] = table
    return ParsedFile(out, pa.concat_tables(rejected) if rejected else REJECTED.empty_table(), duplicates)
