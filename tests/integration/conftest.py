"""Fixtures of the runtime tests that run real worker processes against a PostgreSQL recording sink."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.conftest import Resources
from tests.helpers.runtime import create_sink, drop_sink
from vitalstream.devstack.processes import stop_pid
from vitalstream.devstack.redshift_data import start_redshift_data


@pytest.fixture
async def sink(resources: Resources) -> AsyncIterator[tuple[str, str]]:
    """A fresh recording-sink table set in the warehouse database: (warehouse url, table prefix)."""
    prefix = f"rt_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(resources.warehouse_url)
    await create_sink(conn, prefix)
    yield resources.warehouse_url, prefix
    await drop_sink(conn, prefix)
    await conn.close()


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Worker pids a test started; each is stopped (SIGTERM, then SIGKILL) at the end."""
    started: list[int] = []
    yield started
    for pid in started:
        stop_pid(pid, grace=3)


@pytest.fixture
async def redshift_on_test_db(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A Data API stand-in on the test's own PostgreSQL database; ``AWS_ENDPOINT_URL_REDSHIFT_DATA`` points at it."""
    stand_in, endpoint = await start_redshift_data(resources.warehouse_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", endpoint)
    try:
        yield endpoint
    finally:
        await stand_in.close()
