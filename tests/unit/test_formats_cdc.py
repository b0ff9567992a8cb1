"""The DMS CDC reader (workers.formats.cdc): routing, full load vs CDC, ops, deletes, types, PHI, streaming."""

from __future__ import annotations

import datetime as dt
import io
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtest.files import PHI_MARKERS, cdc_file
from workers.formats.cdc import _boundary, _records, cdc_route, read_cdc
from workers.formats.common import REJECTED
from workers.formats.feed import FeedChunk

P = "raw/ehr/cdc/dbo/patients/"


def _row(op: str | None, pid: str, **over: str) -> dict[str, object]:
    row: dict[str, object] = {"Op": op, "dms_commit_ts": "2026-01-05 10:00:00.5", "patient_id": pid,
                              "family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": "1959-12-31",
                              "sex": "female", "postal_code": "02139",
                              "street_address": "742 Evergreen Terrace"}  # fmt: skip
    return row | over


def _read(key: str, data: bytes, size: int = 1 << 20) -> list[FeedChunk]:
    return list(read_cdc(key, iter([data[i : i + size] for i in range(0, len(data), size)])))


def _good(chunks: list[FeedChunk], table: str = "patient_changes") -> list[dict[str, object]]:
    return [r for c in chunks if table in c.tables for r in c.tables[table].to_pylist()]


def _rejected(chunks: list[FeedChunk]) -> list[tuple[object, ...]]:
    return [(r["line_number"], r["reason"]) for c in chunks for r in c.rejected.to_pylist()]


def test_route() -> None:
    assert cdc_route(P + "LOAD00000001.csv") == ("patients", True, "csv")
    assert cdc_route("raw/ehr/cdc/s/encounters/20260105-1000000000.parquet.gz") == ("encounters", False, "parquet")
    assert cdc_route("raw/ehr/cdc/s/orders/LOAD1.csv") is None
    assert cdc_route(P + "notes.txt") is None


def test_cdc_rows_ops_and_deletes() -> None:
    rows = [_row("I", "P1"), _row("d", "P2", birth_date="garbage", sex=""), _row("X", "P3"), _row("U", "", sex="m")]
    for name, data in (("a.csv", cdc_file(rows)), ("a.parquet", cdc_file(rows, parquet=True))):
        chunks = _read(P + name, data)
        good = _good(chunks)
        assert [(r["op"], r["patient_id"], r["change_seq"], r["source_line"]) for r in good] == [
            ("I", "P1", 0, 2),
            ("D", "P2", 1, 3),
        ]
        assert good[0]["dms_commit_ts"] == dt.datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=dt.UTC)
        assert (good[1]["birth_date"], good[1]["sex"]) == (None, None)  # a delete keeps only its key
        assert _rejected(chunks) == [(4, "invalid_op"), (5, "missing_field")]


def test_full_load_has_no_op_and_postal_codes_are_safe_harbor() -> None:
    rows = [_row(None, "P1"), _row(None, "P2", postal_code="03601"), _row(None, "P3", postal_code="SW1A 1AA")]
    good = _good(_read(P + "LOAD00000001.csv", cdc_file(rows, full_load=True)))
    assert [(r["op"], r["postal_code"]) for r in good] == [("L", "021"), ("L", "000"), ("L", None)]


def test_typed_parquet_columns() -> None:
    table = pa.table(
        {
            "Op": ["U"],
            "dms_commit_ts": pa.array([dt.datetime(2026, 1, 5, 10, 0, 1)], pa.timestamp("us")),
            "encounter_id": ["E1"],
            "patient_id": ["P1"],
            "provider_id": ["DR7"],
            "encounter_type": ["inpatient"],
            "admit_at": pa.array([dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
            "discharge_at": pa.array([None], pa.timestamp("us", tz="UTC")),
            "primary_dx": ["I10"],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    [row] = _good(_read("raw/ehr/cdc/dbo/encounters/x.parquet", out.getvalue()), "encounter_changes")
    assert row["dms_commit_ts"] == dt.datetime(2026, 1, 5, 10, 0, 1, tzinfo=dt.UTC)
    assert row["admit_at"] == dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    assert row["length_of_stay_hours"] is None


def test_whole_file_rejections() -> None:
    assert _rejected(_read(P + "a.csv", b"patient_id,dms_commit_ts\nP1,2026-01-05 10:00:00\n")) == [
        (None, "bad_header")
    ]
    assert _rejected(_read(P + "a.parquet", b"not parquet")) == [(None, "unreadable")]
    assert _rejected(_read("raw/ehr/cdc/dbo/orders/a.csv", b"x")) == [(None, "unknown_table")]


def test_streaming_in_small_pieces_gives_the_same_rows() -> None:
    rows = [_row("U", f"P{i}", sex="other" if i % 2 else "female") for i in range(500)]
    data = cdc_file(rows)
    assert _good(_read(P + "a.csv", data, 7)) == _good(_read(P + "a.csv", data))


def test_no_phi_in_the_output() -> None:
    rows = [_row("I", "P1"), _row("X", "P2")]
    text = " ".join(
        str(t.to_pylist()) for c in _read(P + "a.csv", cdc_file(rows)) for t in (*c.tables.values(), c.rejected)
    )
    for marker in PHI_MARKERS:
        assert marker not in text


# -- the mutation audit of issue 18 ---------------------------------------------------------------------------

HEADER = b"op,dms_commit_ts,patient_id,birth_date,sex,postal_code"


def _outcome(
    key: str, data: bytes, size: int = 1 << 20, block: int = 1 << 20
) -> tuple[list[FeedChunk], list[tuple[Any, ...]]]:
    chunks = list(read_cdc(key, iter([data[i : i + size] for i in range(0, len(data), size)]), block_size=block))
    return chunks, [(r["line_number"], r["reason"], r["detail"], r["record_id"]) for c in chunks
                    for r in c.rejected.to_pylist()]  # fmt: skip


def test_a_whole_file_rejection_is_one_typed_row_and_no_table() -> None:
    cases = [
        (P + "a.csv", b"", "unreadable", "file: not readable as DMS CSV"),
        (P + "a.csv", b" \r\n \n", "unreadable", "file: not readable as DMS CSV"),
        (P + "a.parquet", b"PAR1", "unreadable", "file: not readable as DMS PARQUET"),
        (P + "a.csv", b"op,patient_id,sex\nI,P1,F\n", "bad_header",
         "header: missing column(s) birth_date, postal_code, dms_commit_ts"),
        ("raw/ehr/cdc/dbo/orders/a.csv", HEADER + b"\n", "unknown_table",
         "key: not a .csv or .parquet file under raw/ehr/cdc/<schema>/{patients,encounters}/"),
    ]  # fmt: skip
    for key, data, reason, detail in cases:
        [chunk] = list(read_cdc(key, iter([data])))
        assert (dict(chunk.tables), chunk.whole_file, chunk.rejected.schema) == ({}, True, REJECTED), key
        assert chunk.rejected.to_pylist() == [
            {"line_number": None, "reason": reason, "detail": detail, "record_id": None}
        ], key


def test_the_header_may_be_longer_than_a_block_only_if_it_ends_within_the_first_read() -> None:
    data = HEADER + b",extra\nI,2026-01-05 10:00:00,P1,,,,x\n"  # a 60-byte header line
    for size in (8, 61):  # the first read: 64 bytes (7 pieces of 8 are exactly the block: not yet over it), 61
        chunks, rejected = _outcome(P + "a.csv", data, size, 56)
        assert ([r["patient_id"] for r in _good(chunks)], rejected) == (["P1"], []), size
    _, rejected = _outcome(P + "a.csv", data, 1, 56)  # the first read: 57 bytes, no line feed
    assert rejected == [(None, "unreadable", "file: not readable as DMS CSV", None)]


def test_record_boundaries_are_line_feeds_outside_quotes() -> None:
    assert _boundary(b"") is None
    assert _boundary(b"a,b") is None
    assert _boundary(b"\n") == 1
    assert _boundary(b"a\nb\nc") == 4
    assert _boundary(b'a,"x\ny"\nb') == 8
    assert _boundary(b'a,"x\ny') is None
    assert _boundary(b'\n"x\ny') == 1
    assert _boundary(b'a\nb\nc,"x\ny\nz') == 4  # back over two line feeds inside quotes
    assert _boundary(b'a,"say ""hi""\n"\nb') == 16  # doubled quotes inside quotes


def test_header_names_are_trimmed_and_case_free_and_a_bom_or_crlf_is_no_part_of_them() -> None:
    header = b"\xef\xbb\xbfOp, DMS_Commit_TS ,Patient_ID,birth_date,sex,postal_code\r\n"
    chunks, rejected = _outcome(P + "a.csv", header + b"i,2026-01-05 10:00:00,P1,1959-12-31,F,02139\r\n", 7, 64)
    assert ([(r["op"], r["patient_id"], r["sex"]) for r in _good(chunks)], rejected) == ([("I", "P1", "F")], [])
    # A header alone (its line ended by a CR) is no rows and no rejection, up to a block with no line feed.
    assert _outcome(P + "a.csv", HEADER + b"\r", block=len(HEADER) + 1) == ([], [])
    _, rejected = _outcome(P + "a.csv", HEADER + b"\r", block=len(HEADER))
    assert rejected == [(None, "unreadable", "file: not readable as DMS CSV", None)]


def test_csv_values_are_text_as_written() -> None:
    rows = [_row("I", "0042", sex="1", postal_code="02139", birth_date="1959-12-31")]
    for name, data in (("a.csv", cdc_file(rows)), ("a.parquet", cdc_file(rows, parquet=True))):
        [good] = _good(_read(P + name, data))
        assert (good["patient_id"], good["sex"], good["postal_code"]) == ("0042", "1", "021"), name


def _pieces(chunks: list[bytes], block: int) -> list[bytes]:
    return list(_records(iter(chunks), block))


def test_csv_pieces_are_cut_after_a_record_once_a_block_has_come() -> None:
    assert _pieces([], 4) == []
    assert _pieces([b"a\nb\n", b"c\nd", b"\ne\n"], 4) == [b"a\nb\n", b"c\nd\ne\n"]  # 4 bytes: a block
    assert _pieces([b"a\nb\nc", b"d\ne"], 4) == [b"a\nb\n", b"cd\n", b"e"]
    assert _pieces([b"a\nb", b"\nc\n"], 4) == [b"a\nb\nc\n"]  # 3 bytes: not yet a block
    assert _pieces([b'"x\ny', b'z\n"\n', b"w\n"], 4) == [b'"x\nyz\n"\n', b"w\n"]  # no record end: a block more
    record = b'"' + b"x" * 17 + b'"\n'  # 20 bytes: four blocks of 4 and more
    assert _pieces([record[i : i + 1] for i in range(20)], 4) == [record]  # looked at 4, 8, 12, 16: not over
    assert _pieces([record[:16], record[16:]], 4) == [record]
    with pytest.raises(pa.ArrowInvalid):
        _pieces([record[:17], record[17:]], 4)  # 17 bytes and no record end: over four blocks


def test_route_cases() -> None:
    cases = {
        "cdc/dbo/patients/a.csv": ("patients", False, "csv"),  # the shortest key
        "raw/ehr/cdc/dbo/patients/LOAD0001.CSV.gz": ("patients", True, "csv"),
        "raw/ehr/cdc/dbo/encounters/load2.parquet": ("encounters", True, "parquet"),
        "raw/ehr/cdc/dbo/encounters/xLOAD.parquet": ("encounters", False, "parquet"),
        "raw/ehr/xyz/dbo/patients/a.csv": None,
        "dbo/patients/a.csv": None,
        "raw/ehr/cdc/dbo/patients/x/a.csv": None,
        "raw/ehr/cdc/dbo/patients/a.csv.GZ": None,  # only a lower-case .gz is a compression suffix
        "raw/ehr/cdc/dbo/patients/a.gz": None,
        "raw/ehr/cdc/dbo/patients/a.csvx": None,
    }
    assert {key: cdc_route(key) for key in cases} == cases


def test_typed_parquet_columns_of_a_patient_file() -> None:
    table = pa.table(
        {
            "OP": ["I", "I"],
            "DMS_COMMIT_TS": pa.array([dt.datetime(2026, 1, 5, 10, 0, 1, 250000)] * 2, pa.timestamp("ms")),
            "patient_id": pa.array([42, 7], pa.int64()),
            "birth_date": pa.array([dt.date(1959, 12, 31), None], pa.date32()),
            "sex": ["F", " "],
            "postal_code": ["10001", ""],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    rows = _good(_read(P + "x.parquet", out.getvalue()))
    assert [(r["patient_id"], r["birth_date"], r["sex"], r["postal_code"]) for r in rows] == [
        ("42", dt.date(1959, 12, 31), "F", "100"),
        ("7", None, None, None),
    ]
    assert rows[0]["dms_commit_ts"] == dt.datetime(2026, 1, 5, 10, 0, 1, 250000, tzinfo=dt.UTC)


def test_a_csv_header_that_is_not_utf8_is_unreadable() -> None:
    _, rejected = _outcome(P + "a.csv", b"\xff" + HEADER + b"\nI,2026-01-05 10:00:00,P1,,,\n")
    assert rejected == [(None, "unreadable", "file: not readable as DMS CSV", None)]


def test_commit_times() -> None:
    stamps = ["2026-01-05 10:00:00", "2026-01-05T10:00:00.123456789", "2026-01-05T11:30:00+01:30",
              "2026-01-05 10:00:00Z", "2026-01-05 10:00", "05/01/2026 10:00:00", "2026-01-05 10:00:00.5 "]  # fmt: skip
    rows = [_row("I", f"P{i}", dms_commit_ts=ts) for i, ts in enumerate(stamps)]
    chunks, rejected = _outcome(P + "a.csv", cdc_file(rows))
    assert [(r["patient_id"], r["dms_commit_ts"]) for r in _good(chunks)] == [
        ("P0", dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)),
        ("P1", dt.datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=dt.UTC)),
        ("P2", dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)),
        ("P3", dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)),
        ("P6", dt.datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=dt.UTC)),
    ]
    detail = "dms_commit_ts: not an RFC 3339 timestamp with offset"
    assert rejected == [(6, "invalid_timestamp", detail, "P4"), (7, "invalid_timestamp", detail, "P5")]


def _visit(op: str, eid: str, **over: str) -> dict[str, object]:
    row: dict[str, object] = {"Op": op, "dms_commit_ts": "2026-01-05 10:00:00", "encounter_id": eid, "patient_id": "P1",
           "provider_id": "DR7", "encounter_type": "inpatient", "admit_at": "2026-01-01T08:00:00Z",
           "discharge_at": "2026-01-02T10:30:00Z", "primary_dx": "I10"}  # fmt: skip
    return row | over


def test_encounter_changes_each_check() -> None:
    rows = [
        _visit("I", "E1"),
        _visit("U", "E2", discharge_at=""),
        _visit("D", "E3", patient_id="", admit_at="", discharge_at="x", primary_dx="X" * 20),
        _visit("I", "E4", patient_id=""),
        _visit("I", "E5", admit_at=""),
        _visit("I", "E6", discharge_at="2025-12-31T00:00:00Z"),
        _visit("I", "E" * 65),
        _visit("I", "E8", patient_id="P" * 65),
        _visit("I", "E9", provider_id="D" * 65),
        _visit("I", "E10", encounter_type="T" * 65),
        _visit("I", "E11", primary_dx="X" * 17),
        _visit("I", "E12", admit_at="yesterday"),
        _visit("I", "E13", discharge_at="tomorrow"),
        _visit("I", ""),
        _visit("I", "E15", dms_commit_ts=""),
        _visit("I", "E" * 64, patient_id="P" * 64, provider_id="D" * 64, encounter_type="T" * 64, primary_dx="X" * 16),
    ]
    chunks, rejected = _outcome("raw/ehr/cdc/dbo/encounters/a.csv", cdc_file(rows))
    at = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    fields = ("encounter_id", "op", "patient_id", "admit_at", "discharge_at", "length_of_stay_hours", "primary_dx",
              "source_line", "change_seq")  # fmt: skip
    good = [tuple(r[f] for f in fields) for r in _good(chunks, "encounter_changes")]
    assert good == [
        ("E1", "I", "P1", at, dt.datetime(2026, 1, 2, 10, 30, tzinfo=dt.UTC), 26.5, "I10", 2, 0),
        ("E2", "U", "P1", at, None, None, "I10", 3, 1),
        ("E3", "D", None, None, None, None, None, 4, 2),  # a delete: its key only
        ("E" * 64, "I", "P" * 64, at, dt.datetime(2026, 1, 2, 10, 30, tzinfo=dt.UTC), 26.5, "X" * 16, 17, 15),
    ]
    assert [r["provider_id"] for r in _good(chunks, "encounter_changes")] == ["DR7", "DR7", None, "D" * 64]
    assert rejected == [
        (5, "missing_field", "patient_id: required value is missing", "E4"),
        (6, "missing_field", "admit_at: required value is missing", "E5"),
        (7, "discharge_before_admit", "discharge_at: earlier than admit_at", "E6"),
        (8, "field_too_long", "encounter_id: longer than 64 bytes", None),
        (9, "field_too_long", "patient_id: longer than 64 bytes", "E8"),
        (10, "field_too_long", "provider_id: longer than 64 bytes", "E9"),
        (11, "field_too_long", "encounter_type: longer than 64 bytes", "E10"),
        (12, "field_too_long", "primary_dx: longer than 16 bytes", "E11"),
        (13, "invalid_timestamp", "admit_at: not an RFC 3339 timestamp with offset", "E12"),
        (14, "invalid_timestamp", "discharge_at: not an RFC 3339 timestamp with offset", "E13"),
        (15, "missing_field", "encounter_id: required value is missing", None),
        (16, "missing_field", "dms_commit_ts: required value is missing", "E15"),
    ]


def test_patient_changes_each_check() -> None:
    rows = [_row("I", "P" * 64, sex="S" * 16), _row("I", "P" * 65), _row("I", "P2", sex="S" * 17),
            _row("I", "P3", birth_date="1959-13-01"), _row("U", "P4", birth_date="", sex="", postal_code=""),
            _row("", "P5")]  # fmt: skip
    chunks, rejected = _outcome(P + "a.csv", cdc_file(rows))
    good = [(r["patient_id"], r["birth_date"], r["sex"], r["postal_code"]) for r in _good(chunks)]
    assert good == [("P" * 64, dt.date(1959, 12, 31), "S" * 16, "021"), ("P4", None, None, None)]
    assert rejected == [
        (3, "field_too_long", "patient_id: longer than 64 bytes", None),
        (4, "field_too_long", "sex: longer than 16 bytes", "P2"),
        (5, "invalid_date", "birth_date: not an ISO 8601 date (YYYY-MM-DD)", "P3"),
        (7, "invalid_op", "Op: not one of I, U, D", "P5"),
    ]


def test_a_large_parquet_file_is_spooled_to_disk_not_held() -> None:
    n = 24  # 24 row groups of one 1 MiB row: 24 MiB
    table = pa.table({"Op": ["I"] * n, "dms_commit_ts": ["2026-01-05 10:00:00"] * n,
                      "patient_id": [f"P{i}" for i in range(n)], "birth_date": [""] * n, "sex": ["F"] * n,
                      "postal_code": ["02139"] * n,
                      "street_address": [os.urandom(1 << 19).hex() for _ in range(n)]})  # fmt: skip
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=1, compression="none")
    data = out.getvalue()

    def stream() -> Iterator[bytes]:
        for i in range(0, len(data), 1 << 16):
            yield data[i : i + (1 << 16)]

    tracemalloc.start()
    try:
        rows = sum(len(_good([c])) for c in read_cdc(P + "a.parquet", stream()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == n
    assert peak < 16 << 20, peak  # 8 MiB in memory at most, then a file on disk


def test_zoned_parquet_timestamps_are_their_utc_instants() -> None:
    # A zone other than UTC was shown as its local wall time marked Z (an hour late for Paris in winter).
    paris = pa.timestamp("ms", tz="Europe/Paris")
    at = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    table = pa.table(
        {
            "Op": ["I"],
            "dms_commit_ts": pa.array([dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)], paris),
            "encounter_id": ["E1"],
            "patient_id": ["P1"],
            "provider_id": ["DR7"],
            "encounter_type": ["inpatient"],
            "admit_at": pa.array([at], paris),
            "discharge_at": pa.array([at + dt.timedelta(hours=2)], pa.timestamp("s", tz="America/New_York")),
            "primary_dx": ["I10"],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    [row] = _good(_read("raw/ehr/cdc/dbo/encounters/x.parquet", out.getvalue()), "encounter_changes")
    assert (row["dms_commit_ts"], row["admit_at"]) == (dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC), at)
    assert (row["discharge_at"], row["length_of_stay_hours"]) == (at + dt.timedelta(hours=2), 2.0)


def test_a_csv_piece_is_one_chunk_whatever_its_size() -> None:
    rows = [_row("U", f"P{i}", street_address="x" * 2000) for i in range(1500)]  # 3 MiB in one piece
    chunks, rejected = _outcome(P + "a.csv", cdc_file(rows), 1 << 16, 4 << 20)  # pyarrow's own block: 1 MiB
    assert (len(chunks), len(_good(chunks)), rejected) == (1, 1500, [])
