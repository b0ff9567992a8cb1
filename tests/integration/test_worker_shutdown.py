"""``workers.main`` as a real process: /metrics + /healthz, SIGTERM drain within grace, unknown pipeline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Resources
from tests.helpers.runtime import (
    lease_owners,
    produce,
    sink_counts,
    spawn_worker,
    wait_exit,
    worker_env,
)
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration
GRACE = 8.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode()
    except OSError:
        return 0, ""


async def test_sigterm_flushes_checkpoints_releases_and_exits_within_grace(
    clients: AwsClients, resources: Resources, sink: tuple[str, str], pids: list[int], tmp_path: Path
) -> None:
    dsn, prefix = sink
    stream, table = resources.names.stream, resources.names.lease_table
    # A long flush age: records stay buffered until the SIGTERM drain flushes them.
    env = worker_env(resources.env, dsn=dsn, prefix=prefix, VITALSTREAM_FLUSH_SECONDS="60",
                     VITALSTREAM_SHUTDOWN_GRACE_SECONDS=str(GRACE))  # fmt: skip
    port = env["VITALSTREAM_METRICS_PORT"]
    pid = spawn_worker("w", env, tmp_path)
    pids.append(pid)

    deadline = time.monotonic() + 20
    metrics = ""
    while time.monotonic() < deadline:
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        if status == 200 and 'vitalstream_worker_leases_held{pipeline="recorder"} 4.0' in metrics:
            break
        await asyncio.sleep(0.2)
    assert 'vitalstream_worker_leases_held{pipeline="recorder"} 4.0' in metrics
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200

    produced = await produce(clients.kinesis, stream, keys=20, rounds=5)
    await asyncio.sleep(2.5)  # fetched and buffered, not flushed (age limit 60 s)
    assert await sink_counts(dsn, prefix) == (0, 0)
    _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    assert f'vitalstream_worker_records_in_total{{pipeline="recorder"}} {float(produced)}' in metrics

    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    code = wait_exit(pid, GRACE + 2)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < GRACE
    assert await sink_counts(dsn, prefix) == (produced, produced)  # flushed and committed once
    conn = await asyncpg.connect(dsn)
    try:
        last = dict(await conn.fetch(f"SELECT shard, max(seq::numeric)::text FROM {prefix}_deliveries GROUP BY shard"))
    finally:
        await conn.close()
    owners = await lease_owners(clients.dynamodb, table, stream)
    assert all(owner is None for owner, _ in owners.values())  # leases released
    assert {shard: cp for shard, (_, cp) in owners.items() if shard in last} == last  # checkpointed


def test_unknown_pipeline_fails_clearly(aws_env: dict[str, str]) -> None:
    repo = Path(__file__).resolve().parents[2]
    code = "import sys; from workers.main import main; sys.exit(main('no-such-pipeline'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown pipeline 'no-such-pipeline'" in result.stderr
