"""The DMS CDC reader (workers.formats.cdc): routing, full load vs CDC, ops, deletes, types, PHI, streaming."""

from __future__ import annotations

import datetime as dt
import io

import pyarrow as pa
import pyarrow.parquet as pq

from loadtest.files import PHI_MARKERS, cdc_file
from workers.formats.cdc import cdc_route, read_cdc
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
