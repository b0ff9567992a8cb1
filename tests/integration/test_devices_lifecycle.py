"""Device lifecycle (CONTRACT §1): `vitalstream devices add|list|revoke|rotate` against the registry on moto, and a
running gateway refusing a revoked or rotated-away token within its token cache TTL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import orjson
import pytest

from common.devices import revoke_device, rotate_device
from tests.conftest import Resources
from tests.helpers.gateway import reading, running_gateway
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vitalstream", "devices", *args], capture_output=True, text=True, timeout=60
    )


def audit_lines(stderr: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]


async def test_the_devices_commands(resources: Resources) -> None:
    added = cli("add", "dev-life-1", "--patient-id", "pat-9")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert added.stdout == token + "\n"
    assert token.startswith("vst1.")
    assert cli("add", "dev-life-2").returncode == 0

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[:3] for row in rows] == [["dev-life-1", "pat-9", "active"], ["dev-life-2", "-", "active"]]
    assert all(row[3].endswith("Z") and row[3][:2] == "20" for row in rows)
    assert token.split(".")[2] not in listed.stdout + listed.stderr

    revoked = cli("revoke", "dev-life-1")
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == ""
    assert {"action": "revoke", "device_id": "dev-life-1"}.items() <= audit_lines(revoked.stderr)[0].items()
    assert token.split(".")[2] not in revoked.stderr
    assert cli("revoke", "dev-life-1").returncode == 0  # already revoked: said on stderr, not an error
    assert [line.split("\t")[2] for line in cli("list").stdout.splitlines()] == ["revoked", "active"]

    assert cli("rotate", "dev-life-1").returncode == 1  # a revoked device is registered again with `add`
    assert cli("revoke", "no-such-device").returncode == 1
    assert cli("rotate", "no-such-device").returncode == 1
    assert cli("revoke", "bad id").returncode == 2

    rotated = cli("rotate", "dev-life-2")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert rotated.stdout == new + "\n"
    assert new.startswith("vst1.")
    line = audit_lines(rotated.stderr)[0]
    assert {"action": "rotate", "device_id": "dev-life-2"}.items() <= line.items()
    assert new.split(".")[2] not in rotated.stderr


async def refused_after(http: httpx.AsyncClient, token: str, limit: float) -> float:
    """Seconds until ``token`` gets 401 (posting every 50 ms), at most ``limit``; asserts the 401 came."""
    started = time.monotonic()
    body = orjson.dumps(reading("dev-ttl"))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while time.monotonic() - started < limit:
        response = await http.post("/v1/vitals", content=body, headers=headers)
        if response.status_code == 401:
            return time.monotonic() - started
        assert response.status_code == 202, response.text
        await asyncio.sleep(0.05)
    pytest.fail(f"the token still worked {limit} s later")


async def test_a_revoked_or_rotated_token_is_refused_within_the_cache_ttl(
    resources: Resources, clients: AwsClients
) -> None:
    ttl = 1.0
    async with (
        running_gateway(clients.dynamodb, {"dev-ttl": "pat-1"}, token_cache_seconds=ttl) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        old = gateway.tokens["dev-ttl"]
        assert (
            await http.post("/v1/vitals", content=orjson.dumps(reading("dev-ttl")), headers=_h(old))
        ).status_code == 202
        new = await rotate_device(clients.dynamodb, resources.names.device_table, "dev-ttl")
        new_ok = await http.post("/v1/vitals", content=orjson.dumps(reading("dev-ttl")), headers=_h(new))
        assert new_ok.status_code == 202  # the new token works at once
        assert await refused_after(http, old, ttl + 2) <= ttl + 0.5  # the old one within the TTL

        await revoke_device(clients.dynamodb, resources.names.device_table, "dev-ttl")
        assert await refused_after(http, new, ttl + 2) <= ttl + 0.5
        await asyncio.sleep(ttl + 0.2)  # never served from cache again
        again = await http.post("/v1/vitals", content=orjson.dumps(reading("dev-ttl")), headers=_h(new))
        assert again.status_code == 401


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
