"""gzip on the fly (workers.formats.decompress): what is decompressed, piece sizes, padding and members however the
stream is cut, the ratio limit at its exact edges, and the errors' reasons and messages."""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Iterator

import pytest

from workers.formats.decompress import DecompressionError, maybe_gunzip

LIMITS = {"max_ratio": 200, "ratio_floor": 1 << 26}  # the files pipeline's defaults (FileSettings)
TEXT = b"".join(b"line %d of a batch file\n" % i for i in range(2000))


def read(
    key: str, chunks: list[bytes], *, max_ratio: float = 200, ratio_floor: int = 1 << 26, **out: int
) -> list[bytes]:
    return list(maybe_gunzip(key, chunks, max_ratio=max_ratio, ratio_floor=ratio_floor, **out))


def refused(
    key: str, chunks: list[bytes], *, max_ratio: float = 200, ratio_floor: int = 1 << 26, **out: int
) -> DecompressionError:
    with pytest.raises(DecompressionError) as info:
        read(key, chunks, max_ratio=max_ratio, ratio_floor=ratio_floor, **out)
    assert str(info.value) == info.value.detail
    return info.value


def test_gzip_by_name_or_by_magic_anything_else_unchanged() -> None:
    packed = gzip.compress(TEXT)
    assert b"".join(read("a.csv.gz", [packed])) == TEXT
    assert b"".join(read("a.csv", [packed])) == TEXT  # by magic
    assert b"".join(read("a.csv", [packed[i : i + 1] for i in range(len(packed))])) == TEXT  # magic cut in two
    assert b"".join(read("a.csv", [TEXT[:1], TEXT[1:2], TEXT[2:]])) == TEXT
    assert read("a.csv", [b"x"]) == [b"x"]
    assert read("a.csv.gz", []) == []
    assert read("a.csv.gz", [b"", b""]) == []


def test_decides_on_the_first_two_bytes_and_pulls_nothing_more_until_read() -> None:
    pulled: list[bytes] = []

    def source() -> Iterator[bytes]:
        for piece in (b"a", b"b", b"c", b"d"):
            pulled.append(piece)
            yield piece

    result = maybe_gunzip("a.csv", source(), **LIMITS)
    assert pulled == [b"a", b"b"]
    assert b"".join(result) == b"abcd"


def test_a_gz_name_over_bytes_that_are_not_gzip_is_unreadable() -> None:
    for data in (TEXT, zlib.compress(TEXT)):  # zlib's own format is not gzip either
        error = refused("a.csv.gz", [data])
        assert (error.reason, error.detail) == ("unreadable", "file: not a readable gzip stream")
    error = refused("a.csv.gz", [gzip.compress(TEXT) + zlib.compress(TEXT)])  # nor as a second member
    assert (error.reason, error.detail) == ("unreadable", "file: not a readable gzip stream")


def test_a_cut_stream_is_unreadable() -> None:
    packed = gzip.compress(TEXT)
    for end in (2, 10, len(packed) // 2, len(packed) - 1):
        error = refused("a.gz", [packed[:end]])
        assert (error.reason, error.detail) == ("unreadable", "file: gzip stream cut short")


def test_pieces_are_at_most_out_bytes_and_4_mib_by_default() -> None:
    pieces = read("a.gz", [gzip.compress(TEXT)], out_bytes=333)
    assert b"".join(pieces) == TEXT
    assert max(map(len, pieces)) == 333
    zeros = gzip.compress(bytes(4 * 1024 * 1024 + 1), compresslevel=1)
    assert [len(p) for p in read("a.gz", [zeros])] == [4 * 1024 * 1024, 1]


def test_members_and_zero_padding_read_the_same_however_the_stream_is_cut() -> None:
    one, two = gzip.compress(TEXT[:30000]), gzip.compress(TEXT[30000:])
    stream = one + bytes(700) + two + bytes(300)
    assert gzip.decompress(stream) == TEXT  # what the standard library makes of it
    for cut in (len(one) - 1, len(one), len(one) + 1, len(one) + 700, len(one) + 701, len(stream) - 300):
        assert b"".join(read("a.gz", [stream[:cut], stream[cut:]])) == TEXT, cut
    assert b"".join(read("a.gz", [one + two])) == TEXT  # two members in one chunk
    rng = random.Random(3)
    cuts = sorted(rng.sample(range(1, len(stream)), 40))
    assert b"".join(read("a.gz", [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)])) == TEXT


def test_bytes_after_the_last_member_that_are_not_padding_are_unreadable() -> None:
    packed = gzip.compress(TEXT)
    for chunks in ([packed + b"XX"], [packed, b"XX"], [packed + bytes(5), b"XX"], [packed, bytes(5) + b"X"]):
        error = refused("a.gz", chunks)
        assert error.reason == "unreadable"
        assert error.detail in ("file: not a readable gzip stream", "file: gzip stream cut short")


def padded(size: int, consumed: int) -> bytes:
    """``size`` zero bytes gzipped, then zero padding up to ``consumed`` compressed bytes."""
    packed = gzip.compress(bytes(size))
    assert len(packed) < consumed
    return packed + bytes(consumed - len(packed))


def test_the_ratio_limit_at_its_edges() -> None:
    # 10 x 1000 compressed bytes may come out, not one byte more (pieces of 1000: checked as they come)
    assert sum(map(len, read("a.gz", [padded(10_000, 1000)], max_ratio=10, ratio_floor=0, out_bytes=1000))) == 10_000
    error = refused("a.gz", [padded(10_001, 1000)], max_ratio=10, ratio_floor=0, out_bytes=1000)
    assert error.reason == "decompression_limit"
    assert error.detail == "file: expands more than 10 times its compressed size"
    error = refused("a.gz", [padded(10_001, 1000)], max_ratio=2.5, ratio_floor=0, out_bytes=1000)
    assert error.detail == "file: expands more than 2.5 times its compressed size"
    # counted only once more than ratio_floor bytes came out
    assert sum(map(len, read("a.gz", [padded(10_001, 1000)], max_ratio=10, ratio_floor=10_001))) == 10_001
    refused("a.gz", [padded(10_001, 1000)], max_ratio=10, ratio_floor=10_000)


def test_the_ratio_counts_every_compressed_byte_read_so_far() -> None:
    noise = random.Random(5).randbytes(5000)
    one, two = gzip.compress(noise), gzip.compress(bytes(50_000))
    ratio = (len(noise) + 50_000) / (len(one) + len(two))  # about 10; the second member alone is about 600
    assert b"".join(read("a.gz", [one, two], max_ratio=ratio, ratio_floor=0)) == noise + bytes(50_000)
    refused("a.gz", [one, two], max_ratio=ratio * 0.99, ratio_floor=0)
