"""Deployment of the analytics layer (CONTRACT §10): Glue catalog, least-privilege roles, the refresh schedules."""

from __future__ import annotations

from typing import Any

import pytest

from common.settings import WorkerSettings, env_names
from schemas.glue import LAKE_TABLES, table_input
from tests.unit.test_deploy import OVERLAYS, _kind, _one, _template


def _resources() -> dict[str, Any]:
    return dict(_template()["Resources"])


def _policy_actions(role: str) -> dict[str, set[str]]:
    (policy,) = _resources()[role]["Properties"]["Policies"]
    out: dict[str, set[str]] = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        out[statement["Sid"]] = {action} if isinstance(action, str) else set(action)
    return out


def _resource_texts(statement_resources: Any) -> list[str]:
    items = statement_resources if isinstance(statement_resources, list) else [statement_resources]
    return [item["Fn::Sub"] if isinstance(item, dict) and "Fn::Sub" in item else str(item) for item in items]


def test_glue_tables_in_cloudformation_are_the_code_s_definitions() -> None:
    resources = _resources()
    tables = {r["Properties"]["TableInput"]["Name"]: r for r in resources.values() if r["Type"] == "AWS::Glue::Table"}
    assert set(tables) == {t.name for t in LAKE_TABLES}
    for table in LAKE_TABLES:
        resource = tables[table.name]["Properties"]
        assert resource["DatabaseName"] == {"Ref": "GlueDatabase"}
        expected = table_input(table, "BUCKET")
        got = resource["TableInput"]
        assert got["PartitionKeys"] == expected["PartitionKeys"], table.name
        assert got["TableType"] == "EXTERNAL_TABLE"
        assert got["Parameters"] == expected["Parameters"]
        storage, want = got["StorageDescriptor"], expected["StorageDescriptor"]
        assert storage["Columns"] == want["Columns"], table.name
        assert storage["SerdeInfo"] == want["SerdeInfo"]
        assert (storage["InputFormat"], storage["OutputFormat"]) == (want["InputFormat"], want["OutputFormat"])
        assert storage["Location"] == {"Fn::Sub": f"s3://${{LakeBucket}}/{table.prefix}"}
    assert resources["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"] == {"Ref": "GlueDatabaseName"}
    assert _template()["Parameters"]["GlueDatabaseName"]["Default"] == WorkerSettings().glue_database


def test_workers_may_only_add_partitions_of_the_partitioned_tables() -> None:
    statements = _policy_actions("WorkerRole")
    glue = {a for actions in statements.values() for a in actions if a.startswith("glue:")}
    assert glue == {"glue:BatchCreatePartition"}
    (policy,) = _resources()["WorkerRole"]["Properties"]["Policies"]
    (statement,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "RegisterLakePartitions"]
    targets = sorted(t.rsplit(":", 1)[1] for t in _resource_texts(statement["Resource"]))
    partitioned = sorted(f"table/${{GlueDatabase}}/{t.name}" for t in LAKE_TABLES if t.partition_keys)
    assert targets == sorted(["catalog", "database/${GlueDatabase}", *partitioned])


def test_spectrum_role_reads_the_catalogue_and_is_the_namespace_default() -> None:
    actions = set().union(*_policy_actions("RedshiftSpectrumRole").values())
    assert {a for a in actions if a.startswith("glue:")} == {
        "glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:GetPartition",
        "glue:GetPartitions", "glue:BatchGetPartition",
    }  # fmt: skip
    assert not {a for a in actions if a.startswith("s3:Put") or a.startswith("s3:Delete")}
    namespace = _resources()["Namespace"]["Properties"]
    assert namespace["DefaultIamRoleArn"] == {"Fn::GetAtt": ["RedshiftSpectrumRole", "Arn"]}
    assert not {a for a in set().union(*_policy_actions("RedshiftCopyRole").values()) if a.startswith("glue:")}


def test_refresh_role_runs_statements_as_the_owner_only() -> None:
    actions = set().union(*_policy_actions("RefreshRole").values())
    assert actions == {"redshift-data:ExecuteStatement", "secretsmanager:GetSecretValue"}
    (status,) = _resources()["RefreshStatementStatusPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert status["Action"] == "redshift-data:DescribeStatement"
    assert status["Condition"] == {
        "StringLike": {"redshift-data:statement-owner-iam-userid": {"Fn::Sub": "${RefreshRole.RoleId}:*"}}
    }
    task = _resources()["RefreshTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    assert container["Command"] == ["warehouse", "refresh"]
    names = {e["Name"] for e in container["Environment"]}
    assert names <= env_names(WorkerSettings) | {"AWS_REGION"}
    schedule = _resources()["RefreshSchedule"]["Properties"]
    assert schedule["Target"]["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "RefreshTaskDefinition"}
    assert schedule["Target"]["RoleArn"] == {"Fn::GetAtt": ["RefreshSchedulerRole", "Arn"]}
    assert set().union(*_policy_actions("RefreshSchedulerRole").values()) == {"ecs:RunTask", "iam:PassRole"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cronjob_refreshes_with_its_own_identity(overlay: str) -> None:
    (cronjob,) = _kind(overlay, "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["warehouse", "refresh"]
    assert pod["serviceAccountName"] == "vitalstream-refresh"
    namespace_name = _one(overlay, "ConfigMap", _config_name(overlay, "vitalstream-common"))["data"][
        "VITALSTREAM_STREAM"
    ].removesuffix("-vitals")
    account = _one(overlay, "ServiceAccount", "vitalstream-refresh")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        f"arn:aws:iam::ACCOUNT_ID:role/{namespace_name}-refresh"
    )
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(_one(overlay, "ConfigMap", source["configMapRef"]["name"])["data"])
    assert set(env) <= env_names(WorkerSettings) | {"AWS_REGION"}
    url = env["VITALSTREAM_WAREHOUSE_URL"]
    assert url.startswith(f"redshift-data://{namespace_name}/vitalstream?secret_arn=arn:aws:secretsmanager:")
    assert f":secret:{namespace_name}-redshift-admin" in url
    workers = _one(overlay, "ConfigMap", _config_name(overlay, "vitalstream-worker"))["data"]
    assert workers["VITALSTREAM_GLUE_DATABASE"] == "vitalstream"


def _config_name(overlay: str, prefix: str) -> str:
    (name,) = [
        d["metadata"]["name"] for d in _kind(overlay, "ConfigMap") if d["metadata"]["name"].startswith(prefix + "-")
    ]
    return str(name)
