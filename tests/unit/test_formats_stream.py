"""The streaming readers: blocks cut at record boundaries, absolute line numbers, content-determined blocks,
gzip on the fly (multi-member, ratio limit), and the same rows however the input was chunked."""

from __future__ import annotations

import gzip
import random

import orjson
import pyarrow as pa
import pytest

from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes
from workers.formats.claims import parse_claims, parse_claims_stream
from workers.formats.common import ChunkFile, line_blocks, record_blocks
from workers.formats.decompress import DecompressionError, maybe_gunzip
from workers.formats.fhir import parse_fhir, parse_fhir_stream


def pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at random places (what an S3 stream hands over)."""
    rng = random.Random(seed)
    out, start = [], 0
    while start < len(data):
        size = rng.randint(1, 700)
        out.append(data[start : start + size])
        start += size
    return out


def tricky_claims() -> bytes:
    rows = []
    for i in range(300):
        if i % 37 == 5:
            rows.append(claim(f"C{i}", 1, denial_reason='multi\nline "quoted"\r\nreason'))
        elif i % 53 == 7:
            rows.append([f"C{i}", "1", "P1"])  # wrong number of fields
        elif i % 41 == 3:
            rows.append(claim(f"C{i}", 1, status="nope"))
        elif i % 29 == 0:
            rows.append(claim("C1", 1, paid_amount=f"{i}.00"))  # a duplicate key: the last line wins
        else:
            rows.append(claim(f"C{i}", 1))
        if i % 60 == 11:
            rows.append({})  # a blank-ish row
    return csv_bytes(CLAIMS_HEADER, rows)


@pytest.mark.parametrize("block_size", [64, 300, 1024, 1 << 20])
@pytest.mark.parametrize("seed", [1, 2])
def test_claims_in_blocks_give_the_lines_of_the_whole_file(block_size: int, seed: int) -> None:
    data = tricky_claims()
    whole = parse_claims(data)
    parts = list(parse_claims_stream(pieces(data, seed), block_size=block_size))
    if block_size < 1024:
        assert len(parts) > 5
    rejected = pa.concat_tables([p.rejected for p in parts]).sort_by("line_number")
    assert rejected.to_pylist() == whole.rejected.to_pylist()
    good = pa.concat_tables([p.good for p in parts])
    # Every good line is there once; duplicates across blocks are left for the warehouse (last line wins).
    lines = good.column("source_line").to_pylist()
    assert len(set(lines)) == len(lines)
    assert set(whole.good.column("source_line").to_pylist()) <= set(lines)
    assert good.num_rows + sum(p.duplicates for p in parts) == whole.good.num_rows + whole.duplicates


def test_record_blocks_never_cut_inside_quotes_and_depend_only_on_content() -> None:
    data = tricky_claims()
    blocks = list(record_blocks(ChunkFile(pieces(data, 3)), 200))
    assert b"".join(blocks) == data
    for block in blocks:
        assert block.count(b'"') % 2 == 0
        assert block.endswith(b"\n")
    assert blocks == list(record_blocks(ChunkFile([data]), 200))


def test_line_blocks_are_content_determined_with_absolute_line_numbers() -> None:
    data = b"".join(orjson.dumps({"resourceType": "Patient", "id": f"P{i}"}) + b"\n" for i in range(500))
    a = list(line_blocks(pieces(data, 4), 1000))
    b = list(line_blocks([data], 1000))
    assert a == b
    assert [first for first, _ in a][:3] == [1, 1 + len(a[0][1]), 1 + len(a[0][1]) + len(a[1][1])]
    assert sum(len(lines) for _, lines in a) == 500


def test_fhir_in_blocks_keeps_absolute_lines() -> None:
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"P{i}"}) for i in range(200)]
    lines[150] = b"{not json"
    data = b"\n".join(lines) + b"\n"
    parts = list(parse_fhir_stream(pieces(data, 5), block_size=256))
    assert len(parts) > 10
    rejected = pa.concat_tables([p.rejected for p in parts]).to_pylist()
    assert [(r["line_number"], r["reason"]) for r in rejected] == [(151, "malformed_row")]
    assert parse_fhir(data).rejected.to_pylist() == rejected


def test_fhir_file_that_turns_non_utf8_mid_file_is_rejected_whole_last() -> None:
    data = b"".join(orjson.dumps({"resourceType": "Patient", "id": f"P{i}"}) + b"\n" for i in range(100))
    parts = list(parse_fhir_stream([data + b'{"id": "\xff"}\n'], block_size=256))
    assert parts[-1].file_rejected
    assert parts[-1].rejected.column("reason").to_pylist() == ["not_utf8"]


def test_gunzip_multi_member_in_small_pieces() -> None:
    data = tricky_claims()
    packed = gzip.compress(data[:5000]) + gzip.compress(data[5000:])
    assert b"".join(maybe_gunzip("x.csv", pieces(packed, 6), max_ratio=200, ratio_floor=1 << 26, out_bytes=333)) == data
    # not gzip: unchanged
    assert b"".join(maybe_gunzip("x.csv", pieces(data, 6), max_ratio=200, ratio_floor=1 << 26)) == data


def test_gunzip_refuses_a_bomb_and_a_cut_stream() -> None:
    bomb = gzip.compress(b"a" * 10_000_000)
    with pytest.raises(DecompressionError) as info:
        b"".join(maybe_gunzip("b.gz", [bomb], max_ratio=50, ratio_floor=1 << 20))
    assert info.value.reason == "decompression_limit"
    with pytest.raises(DecompressionError) as info:
        b"".join(maybe_gunzip("c.gz", [gzip.compress(b"x" * 1000)[:-10]], max_ratio=200, ratio_floor=1 << 26))
    assert info.value.reason == "unreadable"


@pytest.mark.parametrize(
    ("limit", "first", "rest"),
    [(-1, b"ab\n", b"cd\nef"), (None, b"ab\n", b"cd\nef"), (0, b"", b"ab\ncd\nef"), (2, b"ab", b"\ncd\nef")],
)
def test_chunk_file_readline_stops_at_a_line_end_or_the_limit(limit: int | None, first: bytes, rest: bytes) -> None:
    source = ChunkFile([b"a", b"b\nc", b"d\ne", b"f"])
    assert source.readline(limit) == first
    assert source.read() == rest
    assert ChunkFile([b"ab", b"c"]).readline() == b"abc"  # no line end: to the end
    assert ChunkFile([b"\nab"]).readline() == b"\n"  # a line end first
    buffered = ChunkFile([b"ab\n\ncd"])
    assert [buffered.readline(), buffered.readline(), buffered.readline()] == [b"ab\n", b"\n", b"cd"]


class Counted:
    """Chunks that count how many were taken."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = iter(chunks)
        self.taken = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.taken += 1
        return chunk


def test_chunk_file_takes_no_chunk_more_than_it_needs_and_counts_what_it_hands_out() -> None:
    chunks = Counted(b"ab", b"cd", b"ef")
    source = ChunkFile(chunks)
    assert (source.read(1), source.read(1), chunks.taken) == (b"a", b"b", 1)
    assert (source.read(2), chunks.taken, source.position) == (b"cd", 2, 4)
    assert (source.read(), chunks.taken, source.position) == (b"ef", 3, 6)
    chunks = Counted(b"a", b"b")
    assert (ChunkFile(chunks).at_end(), chunks.taken) == (False, 1)
    chunks = Counted(b"ab", b"cd")
    assert (ChunkFile(chunks).readline(2), chunks.taken) == (b"ab", 1)  # the limit is reached: no read-ahead
    chunks = Counted(b"ab\n", b"cd\n")
    source = ChunkFile(chunks)
    assert (source.readline(), chunks.taken, source.position) == (b"ab\n", 1, 3)
    assert ChunkFile([b"\n", b"a\n"]).readline() == b"\n"  # the first line end, in the first chunk
    source = ChunkFile([b"a\nb\nc\n"])
    assert [source.readline(), source.readline(), source.readline()] == [b"a\n", b"b\n", b"c\n"]  # from the buffer


def test_chunk_file_at_end_reads_ahead_past_empty_chunks() -> None:
    source = ChunkFile([b"", b"a", b"", b""])
    assert not source.at_end()
    assert source.read(1) == b"a"
    assert source.at_end()


def one_byte_chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("split", [lambda d: [d], one_byte_chunks, lambda d: [d[:2], d[2:4], d[4:]]])
def test_line_blocks_cut_at_the_first_line_end_at_or_after_block_size_and_drop_a_leading_bom(split: object) -> None:
    data = b"\xef\xbb\xbfab\ncd\ne\n\nfghij\n\xef\xbb\xbfk\n"  # a BOM after the start is content
    blocks = list(line_blocks(split(data), 4))  # type: ignore[operator]
    assert blocks == [(1, [b"ab", b"cd"]), (3, [b"e", b"", b"fghij"]), (6, [b"\xef\xbb\xbfk"])]


@pytest.mark.parametrize(
    ("data", "block_size", "blocks"),
    [
        (b"abc\ndef\n", 4, [(1, [b"abc"]), (2, [b"def"])]),  # a line end at exactly block_size bytes
        (b"abc\ndef\ngh\n", 4, [(1, [b"abc"]), (2, [b"def"]), (3, [b"gh"])]),  # several blocks in one chunk
        (b"x\n\xef\xbb\xbf", 2, [(1, [b"x"]), (2, [b"\xef\xbb\xbf"])]),  # a BOM at the end is content
        (b"ab\ncd\n", 4, [(1, [b"ab", b"cd"])]),
        (b"\nabc\n", 1, [(1, [b""]), (2, [b"abc"])]),  # a line end first
        (b"\xef\xbb\xbf", 2, []),
        (b"\xef\xbb", 2, [(1, [b"\xef\xbb"])]),
        (b"\xef\xbb\xbfx", 2, [(1, [b"x"])]),
        (b"\xef\xbb\xbf\xef\xbb\xbfx\n", 2, [(1, [b"\xef\xbb\xbfx"])]),  # one mark is dropped, the next is content
    ],
)
def test_line_blocks_edges(data: bytes, block_size: int, blocks: list[tuple[int, list[bytes]]]) -> None:
    assert list(line_blocks([data], block_size)) == blocks
    assert list(line_blocks(one_byte_chunks(data), block_size)) == blocks


def test_line_blocks_refuse_a_line_longer_than_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.formats import common

    monkeypatch.setattr(common, "MAX_LINE_BYTES", 10)
    assert list(line_blocks([b"x" * 14], 4)) == [(1, [b"x" * 14])]  # bound + block size: still read
    with pytest.raises(common.LineTooLongError):
        list(line_blocks([b"x" * 15], 4))


@pytest.mark.parametrize(
    ("buffer", "limit", "position"),
    [
        (b"\nabc", 4, 0),  # a line end first
        (b"abc", 3, -1),  # none
        (b'"a\nb"\n', 6, 5),  # the first line end is inside quotes
        (b'"a\nb"\n', 5, -1),
        (b'"a\n', 3, -1),
        (b'ab\n"c\nd', 7, 2),  # a quote opened after the last line end before limit
        (b'ab\ncd\n"', 5, 2),  # a line end and a quote past limit count for nothing
        (b'x"\ny"\nz"\n', 9, 5),  # quotes between candidates: "x\"\ny\"\n" is balanced
        (b'""\n"\n', 5, 2),
        (b'"a"\n', 4, 3),  # a quote at position 0
        (b'"\n"\n', 1, -1),  # line ends at or past limit are no candidates, balanced or not
    ],
)
def test_boundary_is_the_last_line_end_before_limit_outside_quotes(buffer: bytes, limit: int, position: int) -> None:
    from workers.formats.common import _boundary

    assert _boundary(bytearray(buffer), limit) == position


def test_record_blocks_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.formats import common

    def blocks(data: bytes, size: int) -> list[bytes]:
        return list(record_blocks(ChunkFile(one_byte_chunks(data)), size))

    assert blocks(b"\nab\ncd\n", 2) == [b"\n", b"ab\n", b"cd\n"]  # a line end first is a boundary
    # a long quoted record leaves more than a block behind: the next block is cut within block_size again
    assert blocks(b'"long\nquoted"\nab\ncd\nef\ngh\nij', 8) == [b'"long\nquoted"\n', b"ab\ncd\n", b"ef\ngh\nij"]
    assert blocks(b'a\n"open\nquote', 4) == [b"a\n", b'"open\nquote']  # no boundary up to the end
    monkeypatch.setattr(common, "MAX_LINE_BYTES", 10)
    assert blocks(b'"' + b"x" * 13 + b'"\n', 4) == [b'"' + b"x" * 13 + b'"\n']
    with pytest.raises(common.LineTooLongError):
        blocks(b'"' + b"x" * 14 + b'"\n', 4)
    monkeypatch.setattr(common, "MAX_LINE_BYTES", 7)
    assert blocks(b'"' + b"x" * 18 + b'"\n', 7) == [b'"' + b"x" * 18 + b'"\n']  # 14 bytes read, no cut: not past
