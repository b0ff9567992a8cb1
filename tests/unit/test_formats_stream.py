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
