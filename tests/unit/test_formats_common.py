"""RFC 4180 reading and the shared checks of the batch parsers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from workers.formats.common import CsvRead, ParseResult, RowChecks, keep_last, read_csv_strings

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


def test_newlines_in_dropped_columns_still_count() -> None:
    out = read(b'a,b,c\n1,"street\nline 2",3\n4,5,6\n', keep=("a",))
    assert out.lines.to_pylist() == [2, 4]
    assert list(out.columns) == ["a"]


def test_header_is_case_and_order_insensitive_values_trimmed_blank_null() -> None:
    out = read(b"\xef\xbb\xbf C ,B,a\r\n 3 ,2, \r\n")
    assert out.columns["a"].to_pylist() == [None]
    assert out.columns["c"].to_pylist() == ["3"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "unreadable"),
        (b"\n\n", "unreadable"),
        (b"a,b,c\n\xff\xfe,1,2\n", "not_utf8"),
        (b"a,b\n1,2\n", "bad_header"),
        (b"a,b,c,d\n1,2,3,4\n", "bad_header"),
        (b"a,a,b\n1,2,3\n", "bad_header"),
        (b'{"a": 1}\n', "bad_header"),
    ],
)
def test_whole_file_rejections(data: bytes, reason: str) -> None:
    out = read_csv_strings(data, ("a", "b", "c"), ("a",), SCHEMA)
    assert isinstance(out, ParseResult)
    assert out.file_rejected
    assert out.rejected.to_pylist()[0]["reason"] == reason
    assert out.rejected.to_pylist()[0]["line_number"] is None
    assert out.rows_in == 1


@pytest.mark.parametrize("data", [b"a,b,c\n", b"a,b,c", b"a,b,c\r\n"])
def test_header_only_file_has_no_rows(data: bytes) -> None:
    out = read(data)
    assert len(out.lines) == 0
    assert out.malformed.num_rows == 0


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


def test_safe_harbor_postal_code() -> None:
    import pyarrow as pa

    from workers.formats.values import safe_harbor_postal_code

    values = pa.array(["02139", "02139-4307", "021394307", " 10001 ", "03601", "89301", "021", "SW1A 1AA", "12", None])
    expected = ["021", "021", "021", "100", "000", "000", "021", None, None, None]
    assert safe_harbor_postal_code(values).to_pylist() == expected
    assert safe_harbor_postal_code(safe_harbor_postal_code(values)).to_pylist() == expected
