"""Load plans: counts, the claims status guard, the Parquet and binary-COPY encodings."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.errors import TerminalError
from schemas.arrow import BATCH_QUARANTINE
from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes
from workers.formats.claims import parse_claims
from workers.sinks.files_s3 import parquet_bytes
from workers.warehouse.file_types import FileLoad, LoadPlan, check_plan
from workers.warehouse.postgres.binary_copy import encode_binary_copy

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def quarantine(n: int) -> pa.Table:
    rows = [
        {"pipeline": "claims", "source_key": "k", "line_number": i, "reason": "r", "detail": None} for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=BATCH_QUARANTINE)


def test_result_sums_files() -> None:
    claims = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", 1), claim("C1", 2)])).good
    plan = LoadPlan(
        "b",
        "claims",
        (FileLoad("k", NOW, quarantine(2), {"claims": claims}, rows_duplicate=1), FileLoad("j", NOW, quarantine(1))),
    )
    result = plan.result()
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined, result.rows_duplicate) == (6, 2, 3, 1)


def test_status_guard_refuses_values_the_warehouse_must_not_hold() -> None:
    claims = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1")])).good
    bad = claims.set_column(claims.schema.get_field_index("status"), "status", pa.array(["approved"]))
    check_plan(LoadPlan("b", "claims", (FileLoad("k", NOW, quarantine(0), {"claims": claims}),)))
    with pytest.raises(TerminalError, match=r"fact_claims\.status") as info:
        check_plan(LoadPlan("b", "claims", (FileLoad("k", NOW, quarantine(0), {"claims": bad}),)))
    assert "approved" not in str(info.value)


def test_encodings() -> None:
    claims = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1")])).good
    assert pq.read_table(io.BytesIO(parquet_bytes(claims))).equals(claims)
    copy = encode_binary_copy(claims)
    assert copy.startswith(b"PGCOPY\n\xff\r\n\x00")
    assert copy.endswith(b"\xff\xff")
