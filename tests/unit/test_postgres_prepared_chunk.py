"""A chunk of an upsert table prepared for the PostgreSQL chunk merge: its binary COPY in pieces, and the stream
of its new rows when some keys exist (only the pieces holding them re-encoded)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes
from workers.formats.claims import parse_claims
from workers.warehouse.file_tables import CLAIMS
from workers.warehouse.postgres import files
from workers.warehouse.postgres.binary_copy import encode_binary_copy
from workers.warehouse.postgres.files import prepare_chunk


def parsed(first_line: int, *ids: str) -> pa.Table:
    good = parse_claims(csv_bytes(CLAIMS_HEADER, [claim(i) for i in ids])).good
    lines = pa.array(range(first_line, first_line + good.num_rows), pa.int64())
    return good.set_column(good.schema.get_field_index("source_line"), "source_line", lines)


@pytest.fixture
def rows() -> pa.Table:
    return pa.concat_tables([parsed(2, "C3", "C1", "C4"), parsed(5, "C1", "C5", "C6", "C2")])  # C1: line 5 wins


def test_pieces_and_keys_encode_the_last_line_per_key(rows: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "SEGMENT_ROWS", 2)
    prepared = prepare_chunk(CLAIMS, rows)
    assert prepared.superseded == 1
    assert prepared.rows.column("claim_id").to_pylist() == ["C3", "C4", "C1", "C5", "C6", "C2"]
    assert len(prepared.segments) == 3
    columns = prepared.rows.select(list(CLAIMS.column_names))
    assert b"".join(prepared.new_rows(CLAIMS, np.array([], np.int64))) == encode_binary_copy(columns)
    keys = prepared.rows.select(["claim_id", "line_number"]).append_column("position", pa.array(range(1, 7)))
    assert prepared.keys == encode_binary_copy(keys)


@pytest.mark.parametrize("existing", [[0], [1, 4], [5], [0, 1, 2, 3, 4, 5], [2, 3]])
def test_new_rows_leave_out_the_existing_positions(
    rows: pa.Table, monkeypatch: pytest.MonkeyPatch, existing: list[int]
) -> None:
    monkeypatch.setattr(files, "SEGMENT_ROWS", 2)
    prepared = prepare_chunk(CLAIMS, rows)
    keep = np.ones(prepared.rows.num_rows, dtype=bool)
    keep[existing] = False
    expected = encode_binary_copy(prepared.rows.filter(pa.array(keep)).select(list(CLAIMS.column_names)))
    assert b"".join(prepared.new_rows(CLAIMS, np.array(existing, np.int64))) == expected
