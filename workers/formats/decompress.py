"""On-the-fly gzip decompression of a batch file's byte chunks (pure: an iterator in, an iterator out).

Contract:
- :func:`maybe_gunzip` decompresses when the key ends in ``.gz`` or the first bytes are the gzip magic
  (``1f 8b``); anything else passes through unchanged. Multi-member gzip files (``cat a.gz b.gz``) are read
  whole, as ``gzip -d`` does; zero bytes after a member are padding. ``max_ratio`` and ``ratio_floor`` are the
  caller's policy (the files pipeline's ``FileSettings``).
- Output is produced in pieces of at most ``out_bytes`` however compressible the input (memory stays bounded).
- A stream that is not gzip after all, is cut short, or expands more than ``max_ratio`` times its compressed
  size (counted once more than ``ratio_floor`` bytes came out, so tiny files are not refused) raises
  :class:`DecompressionError`; its ``reason`` is ``unreadable`` or ``decompression_limit``. The message never
  carries file content.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

__all__ = ["DECOMPRESSION_LIMIT", "DecompressionError", "gunzip", "maybe_gunzip"]

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer, nothing else (zlib's own format is refused)
DECOMPRESSION_LIMIT = "decompression_limit"


class DecompressionError(Exception):
    """The compressed stream cannot be read (``reason`` is a ``batch_quarantine`` reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def maybe_gunzip(
    key: str,
    chunks: Iterable[bytes],
    *,
    max_ratio: float,
    ratio_floor: int,
    out_bytes: int = 4 * 1024 * 1024,
) -> Iterator[bytes]:
    """``chunks`` decompressed if the object is gzip (by name or magic), else unchanged.

    Pulls only the pieces that hold the first two bytes before deciding; the rest is pulled as the result is read.
    """
    source = iter(chunks)
    first = b""
    for piece in source:
        first += piece
        if len(first) >= len(GZIP_MAGIC):
            break
    if not first:
        return iter(())
    if key.endswith(".gz") or first.startswith(GZIP_MAGIC):
        return gunzip(_prepend(first, source), max_ratio=max_ratio, ratio_floor=ratio_floor, out_bytes=out_bytes)
    return _prepend(first, source)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def gunzip(chunks: Iterable[bytes], *, max_ratio: float, ratio_floor: int, out_bytes: int) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream piece by piece; see the module contract.

    Zero bytes after a member are padding and skipped, wherever the chunks are cut (as :func:`gzip.decompress`
    does); an empty stream is cut short.
    """
    decoder = zlib.decompressobj(_GZIP_WBITS)
    consumed = 0
    produced = 0
    try:
        for chunk in chunks:
            consumed += len(chunk)
            data = chunk
            while data:
                if decoder.eof:
                    data = data.lstrip(b"\x00")
                    if not data:
                        break
                    decoder = zlib.decompressobj(_GZIP_WBITS)
                out = decoder.decompress(data, out_bytes)
                data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
                if out:
                    produced += len(out)
                    if produced > ratio_floor and produced > max_ratio * consumed:
                        raise DecompressionError(
                            DECOMPRESSION_LIMIT, f"file: expands more than {max_ratio:g} times its compressed size"
                        )
                    yield out
    except zlib.error as exc:
        raise DecompressionError("unreadable", "file: not a readable gzip stream") from exc
    if not decoder.eof:
        raise DecompressionError("unreadable", "file: gzip stream cut short")
