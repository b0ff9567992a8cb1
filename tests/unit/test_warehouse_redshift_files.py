"""Redshift batch-load SQL and staging: every statement parses as Redshift, writes are guarded, staging is pure."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from schemas.arrow import BATCH_QUARANTINE, CLAIMS, PATIENTS
from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes
from workers.formats.claims import parse_claims
from workers.runtime.types import BatchResult
from workers.warehouse.file_tables import SPECS
from workers.warehouse.file_types import FileLoad, LoadPlan
from workers.warehouse.redshift import file_sql as rs
from workers.warehouse.redshift.files import staged_tables, staging_prefix

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/copy"
BATCH = "0123456789abcdef0123456789abcdef"
GUARD = f"NOT EXISTS (SELECT 1 FROM load_audit AS a WHERE a.batch_id = '{BATCH}')"


def staged(*files: rs.StagedFile, quarantine: bool = True) -> rs.StagedBatch:
    tables = set().union(*(f.lake_tables for f in files))
    manifests = {t: f"s3://lake/staging/x/{BATCH}/{t}.manifest" for t in tables}
    if quarantine:
        manifests[rs.QUARANTINE] = f"s3://lake/staging/x/{BATCH}/batch_quarantine.manifest"
    return rs.StagedBatch(BATCH, "ehr", ROLE, files, manifests, BatchResult(7, 4, 2, 1))


FHIR = rs.StagedFile("raw/ehr/fhir/a.ndjson", T0, frozenset({"patients", "encounters"}))
LATER = rs.StagedFile("raw/ehr/patients/b.csv", T0 + timedelta(hours=1), frozenset({"patients"}))
CLAIM_FILE = rs.StagedFile("raw/claims/c.csv", T0, frozenset({"claims"}))


def parse(statement: str) -> exp.Expression:
    tree = sqlglot.parse_one(statement, read="redshift")
    assert tree is not None
    return tree


@pytest.mark.parametrize("files", [(FHIR, LATER), (CLAIM_FILE,), (LATER,)], ids=["ehr", "claims", "patients"])
def test_every_statement_parses_as_redshift(files: tuple[rs.StagedFile, ...]) -> None:
    statements = rs.load_statements(staged(*files))
    for statement in statements:
        tree = parse(statement)
        if statement.startswith("LOCK "):
            assert isinstance(tree, exp.Command)  # sqlglot has no LOCK node; Redshift has LOCK
        else:
            assert not isinstance(tree, exp.Command), statement
        assert "ON CONFLICT" not in statement
        assert "IS DISTINCT FROM" not in statement
    assert statements[0] == "LOCK load_lock"
    assert statements[-1].startswith("SELECT rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit")
    assert statements[-2].startswith("INSERT INTO load_audit")
    assert len(statements) <= rs.MAX_STATEMENTS


def test_every_write_is_guarded_by_the_audit_row() -> None:
    statements = rs.load_statements(staged(FHIR, LATER, CLAIM_FILE))
    writes = [s for s in statements if s.split()[0] in ("UPDATE", "INSERT", "DELETE") or "_new AS SELECT" in s]
    # SCD2 source + two files, two MERGE sources, the claims' adjudications, quarantine delete + insert, audit
    assert len(writes) == 1 + 4 + 2 + 1 + 2 + 1
    for statement in writes:
        assert GUARD in statement, statement
    merges = [s for s in statements if s.startswith("MERGE INTO")]
    assert [m.split()[2] for m in merges] == ["fact_claims", "fact_encounters"]
    for merge in merges:  # the source is a guarded table (Redshift MERGE takes a table source)
        assert f"USING rs_{merge.split()[2]}_new AS s" in merge


def test_staging_and_copy_from_the_manifest() -> None:
    statements = rs.load_statements(staged(CLAIM_FILE))
    create = next(s for s in statements if s.startswith("CREATE TEMP TABLE rs_fact_claims ("))
    assert "billed_amount DECIMAL(12,2)" in create
    assert "service_date DATE" in create
    assert create.endswith("file_index INTEGER, row_index BIGINT)")
    copy = next(s for s in statements if s.startswith("COPY rs_fact_claims "))
    assert copy.endswith(
        f"FROM 's3://lake/staging/x/{BATCH}/claims.manifest' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST"
    )
    assert "(claim_id, line_number, " in copy
    assert "denial_reason, file_index, row_index)" in copy


def test_claims_status_is_enforced_in_staging_and_last_row_wins() -> None:
    source, merge = rs.merge(SPECS["claims"], BATCH)
    assert "s.status IN ('paid', 'denied', 'pending')" in source
    assert "PARTITION BY s.claim_id, s.line_number ORDER BY s.file_index DESC, s.row_index DESC" in source
    assert "WHERE x.rn = 1" in source
    assert "ON fact_claims.claim_id = s.claim_id AND fact_claims.line_number = s.line_number" in merge
    assert "WHEN MATCHED THEN UPDATE SET patient_id = s.patient_id" in merge
    assert "claim_id = s.claim_id," not in merge.split("WHEN NOT MATCHED")[0].split("UPDATE SET")[1]
    assert "status" not in rs.merge(SPECS["encounters"], BATCH)[0].split("WHERE")[1]


def test_scd2_statements_per_file_in_order() -> None:
    statements = rs.load_statements(staged(FHIR, LATER))
    scd2 = [s for s in statements if s.startswith(("UPDATE dim_patient", "INSERT INTO dim_patient"))]
    assert [s.split()[0] for s in scd2] == ["UPDATE", "INSERT", "UPDATE", "INSERT"]
    assert "s.file_index = 0" in scd2[0]
    assert "s.file_index = 1" in scd2[2]
    later = "CAST('2026-01-01 01:00:00+00:00' AS TIMESTAMPTZ)"
    assert f"SET valid_to = {later}, is_current = false" in scd2[2]
    assert f"d.is_current AND d.valid_from < {later}" in scd2[2]
    assert (
        "(d.postal_code <> s.postal_code OR (d.postal_code IS NULL AND s.postal_code IS NOT NULL) "
        "OR (d.postal_code IS NOT NULL AND s.postal_code IS NULL))"
    ) in scd2[2]
    assert f"{later}, CAST(NULL AS TIMESTAMPTZ), true" in scd2[3]
    assert "NOT EXISTS (SELECT 1 FROM dim_patient AS d WHERE d.patient_id = s.patient_id AND d.is_current)" in scd2[3]


def test_quarantine_is_replaced_per_source_key_even_without_new_rows() -> None:
    statements = rs.load_statements(staged(CLAIM_FILE, quarantine=False))
    deletes = [s for s in statements if s.startswith("DELETE FROM batch_quarantine")]
    assert deletes == [f"DELETE FROM batch_quarantine WHERE pipeline = 'ehr' AND source_key IN ('raw/claims/c.csv') "
                       f"AND {GUARD}"]  # fmt: skip
    assert not [s for s in statements if s.startswith("INSERT INTO batch_quarantine")]
    audit = next(s for s in statements if s.startswith("INSERT INTO load_audit"))
    loaded = "((SELECT COUNT(*) FROM rs_fact_claims_new))"
    assert f"SELECT '{BATCH}', 'ehr', 7, {loaded}, 2, 5 - {loaded} WHERE {GUARD}" in audit


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="manifest"):
        rs.load_statements(rs.StagedBatch(BATCH, "ehr", ROLE, (FHIR,), {}, BatchResult(0, 0, 0, 0)))
    with pytest.raises(ValueError, match="exceed"):
        rs.load_statements(staged(*[LATER] * 20))
    with pytest.raises(ValueError, match="timezone"):
        rs.scd2_close(SPECS["patients"], BATCH, 0, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="backslash"):
        rs.load_statements(staged(rs.StagedFile("raw\\x.csv", T0, frozenset())))
    with pytest.raises(ValueError, match="plain"):
        staging_prefix("claims", "../x")
    assert staging_prefix("claims", BATCH) == f"staging/claims/{BATCH}/"


def test_staged_tables_concatenate_files_with_positions() -> None:
    good = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", 1), claim("C1", 2)])).good
    patients = pa.Table.from_pylist([{"patient_id": "P1", "birth_date": None, "sex": "x", "postal_code": None}],
                                    schema=PATIENTS)  # fmt: skip
    q = pa.Table.from_pylist([{"pipeline": "claims", "source_key": "b", "line_number": 2, "reason": "r",
                               "detail": None}], schema=BATCH_QUARANTINE)  # fmt: skip
    empty = BATCH_QUARANTINE.empty_table()
    plan = LoadPlan(BATCH, "claims", (
        FileLoad("a", T0, empty, {"claims": good, "patients": patients.slice(0, 0)}),
        FileLoad("b", T0, q, {"claims": good.slice(1)}),
    ))  # fmt: skip
    out = staged_tables(plan)
    assert sorted(out) == ["batch_quarantine", "claims"]
    claims = out["claims"]
    assert claims.column_names == list(rs.staged_columns(SPECS["claims"]))
    assert claims.schema.field("billed_amount").type == CLAIMS.field("billed_amount").type
    assert claims.column("file_index").to_pylist() == [0, 0, 1]
    assert claims.column("row_index").to_pylist() == [0, 1, 2]
    assert claims.column("line_number").to_pylist() == [1, 2, 2]
    assert out["batch_quarantine"].column_names == list(rs.staged_columns(None))
    assert out["batch_quarantine"].num_rows == 1


class RecordingS3:
    def __init__(self) -> None:
        self.puts: list[dict[str, object]] = []

    async def put_object(self, **kwargs: object) -> None:
        self.puts.append(kwargs)


async def test_staging_objects_are_deterministic_and_encrypted_when_configured() -> None:
    from workers.warehouse.redshift.client import RedshiftStatements, RedshiftTarget
    from workers.warehouse.redshift.files import RedshiftBatchLoader

    s3 = RecordingS3()
    statements = RedshiftStatements(object(), RedshiftTarget("dev", workgroup="wg", iam_role=ROLE))
    loader = RedshiftBatchLoader(statements, s3, "lake", kms_key_id="alias/phi")
    rows = pa.Table.from_pylist([{"patient_id": "P1", "birth_date": None, "sex": None, "postal_code": None}])
    url = await loader._stage(staging_prefix("ehr", BATCH), "patients", rows)
    assert url == f"s3://lake/staging/ehr/{BATCH}/patients.manifest"
    assert [p["Key"] for p in s3.puts] == [
        f"staging/ehr/{BATCH}/patients.parquet",
        f"staging/ehr/{BATCH}/patients.manifest",
    ]
    assert {(p["ServerSideEncryption"], p["SSEKMSKeyId"]) for p in s3.puts} == {("aws:kms", "alias/phi")}
    manifest = s3.puts[1]["Body"]
    assert isinstance(manifest, bytes)
    assert f'"url": "s3://lake/staging/ehr/{BATCH}/patients.parquet"'.encode() in manifest
    assert f'"content_length": {len(s3.puts[0]["Body"])}'.encode() in manifest  # type: ignore[arg-type]


def test_a_loader_without_copy_role_is_refused() -> None:
    from common.errors import TerminalError
    from workers.warehouse.redshift.client import RedshiftStatements, RedshiftTarget
    from workers.warehouse.redshift.files import RedshiftBatchLoader

    with pytest.raises(TerminalError, match="IAM role"):
        RedshiftBatchLoader(RedshiftStatements(object(), RedshiftTarget("dev", workgroup="wg")), RecordingS3(), "b")


def test_a_batch_may_use_exactly_the_data_apis_forty_statements() -> None:
    files = [
        rs.StagedFile(f"raw/ehr/p{i:02}.csv", T0 + timedelta(minutes=i), frozenset({"patients"})) for i in range(16)
    ]
    assert len(rs.load_statements(staged(*files[:15]))) == rs.MAX_STATEMENTS  # 10 + 2 per file
    with pytest.raises(ValueError, match=r"^42 statements exceed BatchExecuteStatement's 40$"):
        rs.load_statements(staged(*files))
    with pytest.raises(ValueError, match=r"^a batch needs at least one file$"):
        rs.load_statements(staged())


def test_refusals_and_utc_version_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"^not a plain SQL identifier: 'fact claims'$"):
        rs.staging_name("fact claims")
    naive = rs.StagedFile("raw/ehr/p.csv", datetime(2026, 1, 1), frozenset({"patients"}))
    with pytest.raises(ValueError, match=r"^valid_from must be timezone-aware$"):
        rs.load_statements(staged(naive))
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        local = rs.StagedFile(
            "raw/ehr/p.csv", datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))), naive.lake_tables
        )
        statements = rs.load_statements(staged(local))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    close = next(s for s in statements if s.startswith("UPDATE dim_patient"))
    assert "SET valid_to = CAST('2026-01-01 00:00:00+00:00' AS TIMESTAMPTZ)" in close


def test_feed_tables_count_every_staged_row_in_the_audit() -> None:
    remits = rs.StagedFile("raw/claims/r.x12", T0, frozenset({"remittances"}))
    audit = next(s for s in rs.load_statements(staged(remits, CLAIM_FILE)) if s.startswith("INSERT INTO load_audit"))
    counted = sorted(t.name for t in parse(audit).find_all(exp.Table) if t.name.startswith("rs_"))
    assert counted == sorted(["rs_claim_remittances", "rs_fact_claims_new"] * 2)  # loaded, and in rows_duplicate


def test_a_batch_without_table_rows_audits_nothing_loaded() -> None:
    empty = rs.StagedFile("raw/ehr/empty.csv", T0, frozenset())
    audit = next(s for s in rs.load_statements(staged(empty)) if s.startswith("INSERT INTO load_audit"))
    select = parse(audit).expression
    assert [e.sql("redshift") for e in select.selects] == [
        "'0123456789abcdef0123456789abcdef'",
        "'ehr'",
        "7",
        "0",
        "2",
        "5 - 0",
    ]
