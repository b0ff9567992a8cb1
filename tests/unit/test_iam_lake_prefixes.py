"""Every lake key the code writes, reads, deletes or COPYs is allowed to the role that does it, by the template.

The grants are derived from deploy/aws/vitalstream.yaml (vitalstream.devstack.iam_policy, the same reading the
Redshift Data API stand-in enforces); the keys come from the layout functions the code uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.helpers.vitals import R, readings_table
from vitalstream.devstack.iam_policy import allowed, lake_grants, load_template
from workers.sinks import files_layout, layout
from workers.warehouse.redshift.files import staging_prefix
from workers.warehouse.redshift.vitals import load_statements
from workers.warehouse.vitals_types import LoadTables

BATCH = "shard-0-00000000000000000001-00000000000000000009"
HOUR_US = 1_767_225_600_000_000  # 2026-01-01T00:00Z
BUCKET = "lake"
SOURCES = ("raw/ehr/patients/2026/p.csv", "raw/ehr/fhir/bulk.ndjson", "raw/claims/x12/c.x12", "elsewhere/c.csv")


def _vitals_keys() -> dict[str, list[str]]:
    day, hour = layout.hour_partition(HOUR_US)
    processed = layout.processed_key(BATCH, day, hour)
    quarantine = [layout.quarantine_key(BATCH, reason, day) for reason in ("implausible", "spike")]
    return {
        "write": [layout.raw_key("iot/vitals", BATCH, HOUR_US), processed, *quarantine, layout.pending_key(BATCH),
                  layout.manifest_key(BATCH), layout.quarantine_manifest_key(BATCH)],
        "read": [layout.manifest_key(BATCH)],
        "delete": [processed, *quarantine],
        "copy": [layout.manifest_key(BATCH), layout.quarantine_manifest_key(BATCH), processed, *quarantine,
                 layout.pending_key(BATCH)],
    }  # fmt: skip


def _file_keys() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"write": [], "read": [], "delete": [], "copy": []}
    for source in SOURCES:
        pipeline = "claims" if "claims" in source else "ehr"
        lake = [files_layout.processed_key(pipeline, t, source) for t in ("patients", "encounters", pipeline)]
        lake.append(files_layout.quarantine_key(pipeline, source))
        staged = [f"{staging_prefix(pipeline, BATCH.replace('-', ''))}{n}" for n in ("patients.parquet",
                  "patients.manifest", "batch_quarantine.parquet", "batch_quarantine.manifest")]  # fmt: skip
        out["write"] += lake + staged
        out["delete"] += lake
        if source.startswith("raw/"):  # a backfill from elsewhere reads what its operator grants
            out["read"].append(source)
        out["copy"] += staged
    return out


@pytest.mark.parametrize("keys", [_vitals_keys(), _file_keys()], ids=["vitals", "files"])
def test_worker_and_copy_roles_allow_every_key_the_code_uses(keys: dict[str, list[str]]) -> None:
    worker = lake_grants("WorkerRole")
    copy = lake_grants("RedshiftCopyRole")
    for action, kind in (("s3:PutObject", "write"), ("s3:GetObject", "read"), ("s3:DeleteObject", "delete")):
        refused = [k for k in keys[kind] if not allowed(worker.get(action, []), k)]
        assert not refused, f"WorkerRole has no {action} on {refused}"
    refused = [k for k in keys["copy"] if not allowed(copy.get("s3:GetObject", []), k)]
    assert not refused, f"RedshiftCopyRole cannot read the COPY sources {refused}"


def test_copy_role_allows_what_the_vitals_load_copies() -> None:
    """The URLs in the generated COPY statements (and, for a plain COPY, its key prefix listing)."""
    rows = readings_table([R("d1", "heart_rate", 0, 70)]).drop_columns(["arrival_seq", "source_seq"])
    clean = rows.append_column("batch_id", pa.array([BATCH]))
    tables = LoadTables(
        clean, clean.slice(0, 0), clean.slice(0, 0), rows_in=1, duplicates_dropped=0,
        manifest_url=layout.s3_url(BUCKET, layout.manifest_key(BATCH)),
        quarantine_manifest_url=layout.s3_url(BUCKET, layout.quarantine_manifest_key(BATCH)),
        pending_url=layout.s3_url(BUCKET, layout.pending_key(BATCH)),
    )  # fmt: skip
    statements = load_statements(BATCH, "vitals", tables, "arn:aws:iam::1:role/copy")
    urls = [m for s in statements for m in re.findall(r"FROM '(s3://[^']+)'", s) if s.startswith("COPY")]
    assert urls
    copy = lake_grants("RedshiftCopyRole")
    for url in urls:
        key = url.removeprefix(f"s3://{BUCKET}/")
        assert allowed(copy["s3:GetObject"], key), key
        assert allowed(copy["s3:ListBucket"], key), key


def test_gateway_role_touches_no_lake_object() -> None:
    assert lake_grants("GatewayRole") == {}
    service = Path(__file__).resolve().parents[2] / "service"
    sources = "\n".join(p.read_text() for p in service.rglob("*.py"))
    assert '"s3"' not in sources
    assert "'s3'" not in sources


def _policy(resource: str) -> list[dict[str, Any]]:
    return list(load_template()["Resources"][resource]["Properties"]["PolicyDocument"]["Statement"])


def test_7_statement_owner_condition_survives_session_renames_and_clusters_get_credentials() -> None:
    """IRSA sessions are renamed on refresh: the owner condition must match any session of the worker role."""
    template = load_template()
    worker_inline = str(template["Resources"]["WorkerRole"]["Properties"]["Policies"])
    assert "statement-owner-iam-userid" not in worker_inline
    (own,) = _policy("WorkerStatementResultsPolicy")
    assert set(own["Action"]) == {
        "redshift-data:DescribeStatement", "redshift-data:GetStatementResult", "redshift-data:CancelStatement"
    }  # fmt: skip
    assert own["Condition"] == {
        "StringLike": {"redshift-data:statement-owner-iam-userid": {"Fn::Sub": "${WorkerRole.RoleId}:*"}}
    }
    assert "${aws:userid}" not in str(template)
    assert template["Resources"]["WorkerStatementResultsPolicy"]["Properties"]["Roles"] == [{"Ref": "WorkerRole"}]
    cluster = template["Resources"]["WorkerClusterPolicy"]
    assert cluster["Condition"] == "UseRedshiftCluster"
    actions = {a for s in _policy("WorkerClusterPolicy") for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                   else s["Action"])}  # fmt: skip
    assert {"redshift:GetClusterCredentialsWithIAM", "redshift:GetClusterCredentials",
            "redshift-data:BatchExecuteStatement"} <= actions  # fmt: skip
