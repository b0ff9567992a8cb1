"""Test harness: the local stack's real components, started once per session.

Reuses the devstack code (kinesalite, moto server, private PostgreSQL, resource bootstrap), so the
tests run against exactly what ``vitalstream dev up`` runs. Each test gets freshly named resources
(stream, bucket, tables, queues) and emptied warehouse tables, so tests never see each other's data.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings

from schemas.ddl import CONTRACT_TABLES, INTERNAL_TABLES
from vitalstream.devstack.bootstrap import Names, apply_ddl, bootstrap
from vitalstream.devstack.clients import AwsClients, open_clients
from vitalstream.devstack.emulators import start_kinesalite, start_moto
from vitalstream.devstack.postgres import PostgresServer, remove_data_dir, start_postgres
from vitalstream.devstack.processes import stop_pid
from vitalstream.devstack.redshift_data import RedshiftDataStandIn, apply_redshift_ddl, start_redshift_data
from vitalstream.devstack.stack import DEFAULT_NAMES, stack_env

WAREHOUSE_TABLES = CONTRACT_TABLES + INTERNAL_TABLES

# `make mutate`: mutmut runs the unit tests in its own processes, with MUTANT_UNDER_TEST in the environment
# (the mutant's name, or "stats"/"fail"/"" in its set-up phases); only then does this hook act.
MUTATION_RUN = "MUTANT_UNDER_TEST" in os.environ


def pytest_configure(config: pytest.Config) -> None:
    if MUTATION_RUN:
        # A mutant only needs a verdict: no shrinking of a failing example (the slowest part of a hypothesis
        # failure), and no deadline or health check, which fail on timing alone when the machine is busy.
        settings.register_profile(
            "mutation",
            deadline=None,
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        settings.load_profile("mutation")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", ""):
        # mutmut hands a mutant's tests to pytest as an unordered set and stops at the first failure (-x):
        # the fastest first, as its stats run timed them, so a mutant a quick test catches never waits for a
        # slow property test that happened to come first.
        durations = _mutmut_test_durations(config.rootpath / "mutmut-stats.json")
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


@functools.cache
def _mutmut_test_durations(stats: Path) -> dict[str, float]:
    try:
        durations = json.loads(stats.read_bytes())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(test): float(seconds) for test, seconds in durations.items()}


@dataclass(frozen=True)
class LocalStack:
    kinesis_url: str
    moto_url: str
    postgres: PostgresServer
    log_dir: Path

    @property
    def warehouse_url(self) -> str:
        return self.postgres.url


@dataclass(frozen=True)
class Resources:
    """Names of one test's resources plus the environment that points every process at them."""

    names: Names
    env: dict[str, str]
    warehouse_url: str


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    base = tmp_path_factory.mktemp("stack")
    log_dir = base / "logs"
    kinesis, kinesis_url = start_kinesalite(log_dir, die_with_parent=True)
    moto, moto_url = start_moto(log_dir, die_with_parent=True)
    pg = start_postgres(log_dir, base, die_with_parent=True)
    try:
        yield LocalStack(kinesis_url, moto_url, pg, log_dir)
    finally:
        stop_pid(kinesis.pid)
        stop_pid(moto.pid)
        stop_pid(pg.process.pid, sig=signal.SIGINT)
        remove_data_dir(pg.data_dir)


@pytest.fixture(scope="session")
async def warehouse_schema(local_stack: LocalStack) -> str:
    await apply_ddl(local_stack.warehouse_url)
    return local_stack.warehouse_url


@pytest.fixture(scope="session")
async def redshift_schema(local_stack: LocalStack) -> str:
    """A second database on the private PostgreSQL holding the *Redshift* DDL (what the stand-in runs on)."""
    url = local_stack.warehouse_url.rpartition("/")[0] + "/vitalstream_redshift"
    await apply_redshift_ddl(url)
    return url


@dataclass(frozen=True)
class RedshiftStandIn:
    """The strict Redshift Data API stand-in of one test: its endpoint, the database behind it, the server."""

    endpoint: str
    url: str
    server: RedshiftDataStandIn


@pytest.fixture
async def redshift(
    aws_env: dict[str, str], redshift_schema: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RedshiftStandIn]:
    """The stand-in on emptied Redshift tables; ``AWS_ENDPOINT_URL_REDSHIFT_DATA`` points at it."""
    conn = await asyncpg.connect(redshift_schema)
    try:
        await conn.execute(f"TRUNCATE {', '.join(WAREHOUSE_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    server, endpoint = await start_redshift_data(redshift_schema)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", endpoint)
    try:
        yield RedshiftStandIn(endpoint, redshift_schema, server)
    finally:
        await server.close()


@pytest.fixture
def unique_names() -> Names:
    suffix = uuid.uuid4().hex[:10]
    return Names(**{field: f"{value}-{suffix}" for field, value in DEFAULT_NAMES.__dict__.items()})


@pytest.fixture
def aws_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, unique_names: Names) -> dict[str, str]:
    """Points this process (and any child it spawns with ``os.environ``) at the emulators."""
    env = stack_env(
        local_stack.kinesis_url, local_stack.moto_url, local_stack.warehouse_url, "http://127.0.0.1:0", unique_names
    )
    for key in [k for k in os.environ if k.startswith(("AWS_", "VITALSTREAM_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
async def clients(aws_env: dict[str, str]) -> AsyncIterator[AwsClients]:
    async with AsyncExitStack() as stack:
        yield await open_clients(stack, aws_env["AWS_REGION"])


@pytest.fixture
async def resources(
    aws_env: dict[str, str], clients: AwsClients, unique_names: Names, warehouse_schema: str
) -> Resources:
    """Freshly named stream (4 shards), bucket, queues, tables; empty warehouse tables."""
    await bootstrap(clients, unique_names, warehouse_url=None)
    conn = await asyncpg.connect(warehouse_schema)
    try:
        await conn.execute(f"TRUNCATE {', '.join(WAREHOUSE_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    return Resources(names=unique_names, env=dict(aws_env), warehouse_url=warehouse_schema)


def with_stream(resources: Resources, stream: str) -> Resources:
    """The same resources with another stream name (tests that need a stream of another shape)."""
    names = replace(resources.names, stream=stream)
    return Resources(
        names=names, env={**resources.env, "VITALSTREAM_STREAM": stream}, warehouse_url=resources.warehouse_url
    )
