"""`vitalstream dev up|env|status|down` as a new user runs them, from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from schemas.ddl import CONTRACT_TABLES
from tests.helpers.batch import CLAIMS_HEADER, PATIENTS_HEADER, claim, csv_bytes, patient
from vitalstream.devstack.processes import pid_alive

pytestmark = pytest.mark.e2e


PROBE = """
import asyncio
from contextlib import AsyncExitStack
from vitalstream.devstack.clients import open_clients

async def main():
    async with AsyncExitStack() as stack:
        c = await open_clients(stack, "us-east-1")
        print((await c.kinesis.list_streams())["StreamNames"])
        print([b["Name"] for b in (await c.s3.list_buckets())["Buckets"]])
        print(sorted((await c.dynamodb.list_tables())["TableNames"]))
        print(sorted(u.rsplit("/", 1)[1] for u in (await c.sqs.list_queues())["QueueUrls"]))
        async with AsyncExitStack() as more:
            from common.aws import ClientFactory
            rsd = await more.enter_async_context(ClientFactory("us-east-1").client("redshift-data"))
            sid = (await rsd.execute_statement(WorkgroupName="local", Database="vitalstream",
                                               Sql="SELECT count(*) FROM load_audit"))["Id"]
            for _ in range(100):
                status = (await rsd.describe_statement(Id=sid))["Status"]
                if status in ("FINISHED", "FAILED", "ABORTED"):
                    break
                await asyncio.sleep(0.1)
            print([status])

asyncio.run(main())
"""


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vitalstream", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def _env_from_exports(text: str) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f"{text}\nenv -0"], capture_output=True, text=True, check=True, env={})
    return dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)


LAND = """
import asyncio, sys
from contextlib import AsyncExitStack
from vitalstream.devstack.clients import open_clients

async def main():
    async with AsyncExitStack() as stack:
        c = await open_clients(stack, "us-east-1")
        bucket, key = sys.argv[1], sys.argv[2]
        await c.s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())

asyncio.run(main())
"""


def _psql(env: dict[str, str], query: str) -> str:
    url = env.get("VITALSTREAM_LOCAL_PG_URL") or env["VITALSTREAM_WAREHOUSE_URL"]
    done = subprocess.run(["psql", url, "-Atc", query], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _until(env: dict[str, str], query: str, within: float = 30) -> str:
    deadline = time.monotonic() + within
    rows = ""
    while time.monotonic() < deadline and not rows:
        rows = _psql(env, query)
        time.sleep(0.5)
    return rows


@pytest.mark.parametrize("warehouse", ["postgres", "redshift"])
def test_dev_up_env_status_down(tmp_path: Path, warehouse: str) -> None:
    """Both warehouses: with ``--warehouse redshift`` every worker loads through the Data API stand-in."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VITALSTREAM_"))}
    up = _cli("dev", "up", "--detach", "--warehouse", warehouse, cwd=tmp_path, env=base_env)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / ".vitalstream" / "state.json").read_text())
    pids = state["pids"]
    try:
        assert {"kinesalite", "moto", "postgres"} <= set(pids)
        again = _cli("dev", "up", "--detach", cwd=tmp_path, env=base_env)
        assert again.returncode != 0
        assert "already running" in again.stderr

        exports = _cli("dev", "env", cwd=tmp_path, env=base_env)
        assert exports.returncode == 0, exports.stderr
        env = {**base_env, **_env_from_exports(exports.stdout)}
        for name in ("VITALSTREAM_GATEWAY_URL", "VITALSTREAM_STREAM", "VITALSTREAM_BUCKET", "VITALSTREAM_WAREHOUSE_URL",
                     "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS",
                     "AWS_ENDPOINT_URL_DYNAMODB"):  # fmt: skip
            assert env.get(name), name

        probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False)
        assert probe.returncode == 0, probe.stderr
        streams, buckets, tables, queues, statement = (eval(line) for line in probe.stdout.splitlines())  # noqa: S307
        assert statement == ["FINISHED"]
        assert streams == [env["VITALSTREAM_STREAM"]]
        assert buckets == [env["VITALSTREAM_BUCKET"]]
        assert tables == sorted([env["VITALSTREAM_DEVICE_TABLE"], env["VITALSTREAM_LEASE_TABLE"]])
        assert {"vitalstream-ehr", "vitalstream-claims"} <= set(queues)

        if warehouse == "redshift":
            assert env["VITALSTREAM_WAREHOUSE_URL"].startswith("redshift-data://")
            assert env["VITALSTREAM_LOCAL_PG_URL"].startswith("postgresql://")
            assert env["AWS_ENDPOINT_URL_REDSHIFT_DATA"]
        else:
            assert "VITALSTREAM_LOCAL_PG_URL" not in env
        local = env.get("VITALSTREAM_LOCAL_PG_URL") or env["VITALSTREAM_WAREHOUSE_URL"]
        psql = subprocess.run(["psql", local, "-Atc", r"\dt"], capture_output=True, text=True, check=False)
        assert psql.returncode == 0, psql.stderr
        assert {line.split("|")[1] for line in psql.stdout.splitlines()} >= set(CONTRACT_TABLES)

        token = _cli("devices", "add", "bedside-1", "--patient-id", "pt-1", cwd=tmp_path, env=env)
        assert token.returncode == 0, token.stderr
        assert len(token.stdout.strip().splitlines()) == 1
        assert token.stdout.startswith("vst1.")
        reading = {
            "device_id": "bedside-1",
            "metric": "8867-4",
            "value": 72,
            "unit": "bpm",
            "measured_at": datetime.now(UTC).isoformat(),
        }
        response = httpx.post(
            f"{env['VITALSTREAM_GATEWAY_URL']}/v1/vitals",
            json=reading,
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        )
        assert response.status_code == 202, response.text
        rows = _until(env, "SELECT device_id, patient_id, metric, value, unit FROM fact_vitals")
        assert rows == "bedside-1|pt-1|heart_rate|72|/min"

        # The ehr and claims workers: files landed in raw/ are loaded (through the Data API path on redshift).
        for key, body in (
            ("raw/ehr/patients/p.csv", csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2", sex="male")])),
            ("raw/claims/2026/01/c.csv", csv_bytes(CLAIMS_HEADER, [claim("C1", 1), claim("C1", 2)])),
        ):
            landed = subprocess.run([sys.executable, "-c", LAND, env["VITALSTREAM_BUCKET"], key], input=body,
                                    env=env, capture_output=True, check=False)  # fmt: skip
            assert landed.returncode == 0, landed.stderr
        assert _until(env, "SELECT string_agg(patient_id, ',' ORDER BY patient_id) FROM dim_patient "
                      "HAVING count(*) > 0") == "P1,P2"  # fmt: skip
        assert _until(env, "SELECT count(*) FROM fact_claims HAVING count(*) > 0") == "2"
        assert _psql(env, "SELECT pipeline FROM load_audit WHERE pipeline <> 'vitals' ORDER BY 1") == "claims\nehr"

        simulated = _cli("simulate", "--devices", "3", "--rate", "2", "--duration", "3", cwd=tmp_path, env=env)
        assert simulated.returncode == 0, simulated.stderr
        assert "http_202=" in simulated.stdout
        assert "transport_errors" not in simulated.stdout

        status = _cli("dev", "status", cwd=tmp_path, env=base_env)
        assert status.returncode == 0, status.stderr
        assert "fact_vitals" in status.stdout
    finally:
        down = _cli("dev", "down", cwd=tmp_path, env=base_env)
    assert down.returncode == 0, down.stderr
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert not (tmp_path / ".vitalstream" / "state.json").exists()
