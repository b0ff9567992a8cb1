"""The byte-chunk stream the feed readers read through (workers.formats.feed.ChunkStream)."""

from __future__ import annotations

import io

import pyarrow as pa

from workers.formats.common import REJECTED
from workers.formats.feed import ChunkStream, rejection


def test_reads_the_chunks_bytes_in_order_in_any_read_sizes() -> None:
    chunks = [b"abc", b"", b"d", b"efghij", b"", b""]
    stream = ChunkStream(iter(chunks))
    assert stream.readable()
    target = bytearray(4)
    reads = []
    while n := stream.readinto(target):
        reads.append(bytes(target[:n]))
    assert reads == [b"abc", b"d", b"efgh", b"ij"]  # never past the end of a chunk nor of the target
    assert stream.readinto(target) == 0  # still at the end
    buffered = io.BufferedReader(ChunkStream(iter(chunks)), buffer_size=2)
    assert buffered.read(5) == b"abcde"
    assert buffered.read() == b"fghij"
    assert buffered.read() == b""


def test_an_empty_iterator_is_an_empty_stream() -> None:
    assert ChunkStream(iter([])).readinto(bytearray(8)) == 0
    assert ChunkStream(iter([b"", b""])).readall() == b""


def test_a_rejection_is_one_rejected_row() -> None:
    row = rejection(7, "invalid_claim", "claim: no CLM", "C1")
    assert row == {"line_number": 7, "reason": "invalid_claim", "detail": "claim: no CLM", "record_id": "C1"}
    assert rejection(None, "invalid_envelope", "ISA: bad")["record_id"] is None
    table = pa.Table.from_pylist([row], schema=REJECTED)
    assert table.to_pylist() == [row]
