"""RFC 4180 reading and the shared checks of the batch parsers."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from workers.formats.common import (
    DEFAULT_BLOCK_BYTES,
    REJECTED,
    ChunkFile,
    CsvRead,
    ParseResult,
    RowChecks,
    blank_to_null,
    decode_utf8,
    keep_last,
    read_csv_stream,
    read_csv_strings,
)

SCHEMA = pa.schema([("a", pa.string())])


def read(data: bytes, keep: tuple[str, ...] = ("a", "c")) -> CsvRead:
    out = read_csv_strings(data, ("a", "b", "c"), keep, SCHEMA)
    assert isinstance(out, CsvRead)
    return out


def test_physical_line_numbers_survive_quoted_newlines_blank_and_malformed_rows() -> None:
    data = b'a,b,c\n1,2,3\n\n4,5\n"x\ny",7,8\n9,"multi\nline\nfield",11,12\n13,14,15\n'
    out = read(data)
    assert out.columns["a"].to_pylist() == ["1", "x\ny", "13"]
    assert out.lines.to_pylist() == [2, 5, 10]
    assert out.malformed.column("line_number").to_pylist() == [4, 7]
    assert set(out.malformed.column("reason").to_pylist()) == {"malformed_row"}
    assert out.malformed.column("detail").to_pylist() == [
        "row: wrong number of fields (expected 3)",
        "row: wrong number of fields (expected 3); a quoted field runs over 3 lines",
    ]


def test_newlines_in_dropped_columns_still_count() -> None:
    out = read(b'a,b,c\n1,"street\nline 2",3\n4,5,6\n', keep=("a",))
    assert out.lines.to_pylist() == [2, 4]
    assert list(out.columns) == ["a"]


def test_header_is_case_and_order_insensitive_values_trimmed_blank_null() -> None:
    out = read(b"\xef\xbb\xbf C ,B,a\r\n 3 ,2, \r\n")
    assert out.columns["a"].to_pylist() == [None]
    assert out.columns["c"].to_pylist() == ["3"]


EMPTY = "file: empty, no header row"
HEADER_DETAIL = "header: expected columns a,b,c"


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"", "unreadable", EMPTY),
        (b"\n\n", "unreadable", EMPTY),
        (b"a,b,c\n\xff\xfe,1,2\n", "not_utf8", "file: not valid UTF-8"),
        (b"a,b\n1,2\n", "bad_header", HEADER_DETAIL),
        (b"a,b,c,d\n1,2,3,4\n", "bad_header", HEADER_DETAIL),
        (b"a,a,b\n1,2,3\n", "bad_header", HEADER_DETAIL),
        (b'{"a": 1}\n', "bad_header", HEADER_DETAIL),
    ],
)
def test_whole_file_rejections(data: bytes, reason: str, detail: str) -> None:
    out = read_csv_strings(data, ("a", "b", "c"), ("a",), SCHEMA)
    assert isinstance(out, ParseResult)
    assert out.file_rejected
    assert out.rejected.to_pylist() == [{"line_number": None, "reason": reason, "detail": detail, "record_id": None}]
    assert out.good.schema == SCHEMA.append(pa.field("source_line", pa.int64(), nullable=False))
    assert out.rows_in == 1


@pytest.mark.parametrize("data", [b"a,b,c\n", b"a,b,c", b"a,b,c\r\n"])
def test_header_only_file_has_no_rows(data: bytes) -> None:
    out = read(data)
    assert len(out.lines) == 0
    assert out.malformed.num_rows == 0
    assert {name: column.type for name, column in out.columns.items()} == {"a": pa.string(), "c": pa.string()}
    assert out.lines.type == pa.int64()
    assert out.malformed.schema == REJECTED


def test_a_file_larger_than_a_default_block_is_read_whole() -> None:
    rows = b"".join(b"%d,,\n" % i for i in range(DEFAULT_BLOCK_BYTES // 7 + 1000))  # > 4 MiB
    out = read(b"a,b,c\n" + rows, keep=("a",))
    assert len(out.lines) == DEFAULT_BLOCK_BYTES // 7 + 1000
    assert out.lines[-1].as_py() == len(out.lines) + 1


def test_row_checks_first_reason_and_all_details() -> None:
    checks = RowChecks(3)
    checks.add(pa.array([True, False, None]), "r1", "x: one")
    checks.add(pa.array([True, True, False]), "r2", "y: two")
    reason, detail = checks.reasons()
    assert reason.to_pylist() == ["r1", "r2", None]
    assert detail.to_pylist() == ["x: one; y: two", "y: two", None]
    assert checks.failed().to_pylist() == [True, True, False]


def test_keep_last_keeps_the_last_row_of_each_key_in_file_order() -> None:
    table = pa.table({"k": ["a", "b", "a", "c", "b"], "v": [1, 2, 3, 4, 5]})
    kept, superseded = keep_last(table, ["k"])
    assert kept.to_pylist() == [{"k": "a", "v": 3}, {"k": "c", "v": 4}, {"k": "b", "v": 5}]
    assert superseded == 2


def test_keep_last_of_no_rows_and_of_one_row() -> None:
    empty = pa.table({"k": pa.array([], pa.string()), "v": pa.array([], pa.int64())})
    assert keep_last(empty, ["k"]) == (empty, 0)
    one = pa.table({"k": ["a"], "v": [1]})
    assert keep_last(one, ["k"]) == (one, 0)


def test_decode_utf8_drops_a_byte_order_mark_and_refuses_other_encodings() -> None:
    assert decode_utf8(b"\xef\xbb\xbfid,\xc3\xa9") == b"id,\xc3\xa9"
    assert decode_utf8(b"id\xef\xbb\xbf") == b"id\xef\xbb\xbf"  # a mark only counts at the start
    assert decode_utf8(b"\xef\xbb\xbf") == b""
    assert decode_utf8(b"id,\xe9") is None  # Latin-1


def test_blank_to_null_gives_one_string_array_from_chunks() -> None:
    out = blank_to_null(pa.chunked_array([[" a ", "  "], [None, "b"]]))
    assert isinstance(out, pa.Array)
    assert out.type == pa.string()
    assert out.to_pylist() == ["a", None, None, "b"]


def test_safe_harbor_postal_code() -> None:
    import pyarrow as pa

    from workers.formats.values import safe_harbor_postal_code

    values = pa.array(["02139", "02139-4307", "021394307", " 10001 ", "03601", "89301", "021", "SW1A 1AA", "12", None])
    expected = ["021", "021", "021", "100", "000", "000", "021", None, None, None]
    assert safe_harbor_postal_code(values).to_pylist() == expected
    assert safe_harbor_postal_code(safe_harbor_postal_code(values)).to_pylist() == expected


@pytest.mark.parametrize(
    ("message", "reason", "detail"),
    [
        ("In CSV column #0: CSV conversion error to string: invalid UTF8 data", "not_utf8", "file: not valid UTF-8"),
        ("Invalid UTF-8 sequence", "not_utf8", "file: not valid UTF-8"),
        ("CSV parse error: Expected 3 columns", "unreadable", "file: not parseable as RFC 4180 CSV"),
    ],
)
def test_a_block_pyarrow_cannot_read_rejects_the_file_for_its_cause(message: str, reason: str, detail: str) -> None:
    from workers.formats.common import _unparseable

    out = _unparseable(SCHEMA, pa.ArrowInvalid(message))
    assert out.rejected.to_pylist() == [{"line_number": None, "reason": reason, "detail": detail, "record_id": None}]
    assert out.good.schema == SCHEMA.append(pa.field("source_line", pa.int64(), nullable=False))


def test_a_stream_that_turns_non_utf8_in_a_later_block_ends_in_a_whole_file_rejection() -> None:
    data = b"a,b,c\n" + b"x,y,z\n" * 50 + b"\xff,1,2\n"
    parts = list(read_csv_stream([data], ("a", "b", "c"), ("a",), SCHEMA, block_size=64))
    assert all(isinstance(p, CsvRead) for p in parts[:-1])
    last = parts[-1]
    assert isinstance(last, ParseResult)
    assert last.rejected.column("reason").to_pylist() == ["not_utf8"]


def test_chunk_file_is_a_readable_raw_file() -> None:
    import io

    raw = ChunkFile([b"ab", b"", b"cdefg", b"h"])
    assert raw.readable()
    buffered = io.BufferedReader(raw, buffer_size=3)  # reads through readinto
    assert buffered.read(4) == b"abcd"
    assert buffered.read() == b"efgh"
    target = bytearray(5)
    assert ChunkFile([b"xy", b"z"]).readinto(target) == 3
    assert target == bytearray(b"xyz\0\0")


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"", "unreadable", EMPTY),
        (b"a,\xff,c\n1,2,3\n", "not_utf8", "file: not valid UTF-8"),
        (b"a,b,c\r1,2,3\r", "unreadable", "file: lines end in CR alone (RFC 4180: CRLF or LF)"),
        # a CR before trailing blanks is not a line end: only CR/LF are stripped before looking for a lone CR
        (b"a,b,c\r \n1,2,3\r \n", "unreadable", "file: lines end in CR alone (RFC 4180: CRLF or LF)"),
        # ... nor are other bytes: a CR anywhere in the header line but its CRLF end is one
        (b"a,b,c\rX\n1,2,3\n", "unreadable", "file: lines end in CR alone (RFC 4180: CRLF or LF)"),
        (b"a,b\n1,2\n", "bad_header", HEADER_DETAIL),
    ],
)
def test_whole_file_rejections_of_the_stream(data: bytes, reason: str, detail: str) -> None:
    parts = list(read_csv_stream([data], ("a", "b", "c"), ("a",), SCHEMA))
    assert len(parts) == 1
    out = parts[0]
    assert isinstance(out, ParseResult)
    assert out.rejected.to_pylist() == [{"line_number": None, "reason": reason, "detail": detail, "record_id": None}]
    assert out.good.schema == SCHEMA.append(pa.field("source_line", pa.int64(), nullable=False))


def test_a_record_longer_than_the_bound_rejects_the_stream_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.formats import common

    monkeypatch.setattr(common, "MAX_LINE_BYTES", 10)
    parts = list(read_csv_stream([b'a,b,c\n"' + b"x" * 30 + b'",2,3\n'], ("a", "b", "c"), ("a",), SCHEMA, block_size=4))
    out = parts[-1]
    assert isinstance(out, ParseResult)
    assert out.rejected.select(["line_number", "reason", "detail"]).to_pylist() == [
        {"line_number": None, "reason": "unreadable", "detail": "file: a record is longer than 10 bytes"}
    ]
    assert out.good.schema == SCHEMA.append(pa.field("source_line", pa.int64(), nullable=False))


def test_a_bom_right_before_the_header_and_a_quote_first_in_the_block() -> None:
    out = read(b'\xef\xbb\xbfa,b,c\n"x\ny",2,3\n4,5,6\n')
    assert out.columns["a"].to_pylist() == ["x\ny", "4"]
    assert out.lines.to_pylist() == [2, 4]


def test_the_header_is_looked_for_in_its_first_64_kib_only() -> None:
    taken = []

    def chunks() -> Iterator[bytes]:  # 1 MiB without a line end
        for i in range(1024):
            taken.append(i)
            yield b"x" * 1024

    parts = list(read_csv_stream(chunks(), ("a", "b", "c"), ("a",), SCHEMA))
    assert [p.rejected.column("reason").to_pylist() for p in parts if isinstance(p, ParseResult)] == [["bad_header"]]
    assert len(taken) <= 65  # the header line is read up to 64 KiB, not the whole line


def test_physical_lines_are_int64_also_of_an_empty_block_and_of_a_record_numbered_past_the_block() -> None:
    from workers.formats.common import _physical_lines

    starts, invalid, next_line = _physical_lines(pa.table({"a": pa.array([], pa.string())}), [], 7, quoted=True)
    assert (starts.type, starts.to_pylist(), invalid, next_line) == (pa.int64(), [], [], 7)
    # pyarrow numbers a block's records from 1 and within it; a number past it would be taken as its last record
    starts, invalid, next_line = _physical_lines(pa.table({"a": ["x"]}), [(5, 2)], 7, quoted=False)
    assert (starts.type, starts.to_pylist(), invalid, next_line) == (pa.int64(), [7], [8], 10)
    assert read(b"a,b,c\n1,2,3\n").lines.type == pa.int64()


def test_row_checks_give_string_arrays_also_without_a_failure_and_from_chunked_masks() -> None:
    checks = RowChecks(2)
    reason, detail = checks.reasons()
    assert (reason.type, detail.type, reason.to_pylist(), detail.to_pylist()) == (
        pa.string(), pa.string(), [None, None], [None, None]
    )  # fmt: skip
    checks.add(pa.chunked_array([[True], [None]]), "r", "d")
    reason, detail = checks.reasons()
    assert isinstance(reason, pa.Array)
    assert isinstance(detail, pa.Array)
    assert (reason.to_pylist(), detail.to_pylist()) == (["r", None], ["d", None])
    assert checks.failed().to_pylist() == [True, False]
