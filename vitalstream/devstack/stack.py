"""``vitalstream dev up|env|status|down``: the whole local stack, every part its own process.

State (pids, ports, endpoints, data dirs) lives in ``.vitalstream/state.json`` in the working
directory, so ``down`` and ``env`` work from any later shell.

``--warehouse redshift``: every worker loads through the Redshift Data API path
(``VITALSTREAM_WAREHOUSE_URL=redshift-data://…``) against the strict stand-in
(:mod:`vitalstream.devstack.redshift_data`), whose tables are the Redshift DDL in the database
``vitalstream_redshift`` of the private PostgreSQL; ``dev env`` exports that database as
``VITALSTREAM_LOCAL_PG_URL`` (for ``psql``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from vitalstream.devstack.bootstrap import LOADER_ROLE, Names, allow_login, apply_analytics, bootstrap, topic_arn
from vitalstream.devstack.clients import open_clients
from vitalstream.devstack.emulators import start_kinesalite, start_moto
from vitalstream.devstack.postgres import remove_data_dir, start_postgres
from vitalstream.devstack.processes import (
    LOOPBACK,
    Spawned,
    free_port,
    http_ok,
    pid_alive,
    port_open,
    spawn,
    stop_pid,
    wait_until,
)
from vitalstream.devstack.redshift_data import apply_redshift_ddl

DEFAULT_NAMES = Names(
    stream="vitalstream-vitals",
    bucket="vitalstream-lake",
    device_table="vitalstream-devices",
    lease_table="vitalstream-leases",
    ehr_queue="vitalstream-ehr",
    claims_queue="vitalstream-claims",
    alert_topic="vitalstream-alerts",
    alert_queue="vitalstream-alerts",
)
PIPELINES = ("vitals", "ehr", "claims")
WAREHOUSES = ("postgres", "redshift")
REDSHIFT_DATABASE = "vitalstream_redshift"
REDSHIFT_COPY_ROLE = "arn:aws:iam::000000000000:role/vitalstream-redshift-copy"
REDSHIFT_URL = f"redshift-data://vitalstream/dev?iam_role={REDSHIFT_COPY_ROLE}"
"""The warehouse URL of ``--warehouse redshift`` (serverless workgroup ``vitalstream``, database ``dev``)."""
REFRESH_SECONDS = 60
# Stop order: producers first, so the workers can drain, then the emulators and the database.
STOP_ORDER = (
    "simulator",
    "refresher",
    "gateway",
    "worker-vitals",
    "worker-ehr",
    "worker-claims",
    "redshift-data",
    "kinesalite",
    "moto",
    "postgres",
)


@dataclass
class StackState:
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    pg_data_dir: str | None = None
    started_at: float = field(default_factory=time.time)


def state_dir(root: Path | None = None) -> Path:
    return (root or Path.cwd()) / ".vitalstream"


def load_state(root: Path | None = None) -> StackState | None:
    path = state_dir(root) / "state.json"
    if not path.exists():
        return None
    return StackState(**json.loads(path.read_text()))


def save_state(state: StackState, root: Path | None = None) -> None:
    directory = state_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(directory / "state.json")


def running_pids(state: StackState | None) -> dict[str, int]:
    if state is None:
        return {}
    return {name: pid for name, pid in state.pids.items() if pid_alive(pid)}


def stack_env(
    kinesis_url: str,
    moto_url: str,
    warehouse_url: str,
    gateway_url: str,
    names: Names = DEFAULT_NAMES,
    local_pg_url: str | None = None,
) -> dict[str, str]:
    """The environment every command needs to work against the local stack (CONTRACT §5).

    ``local_pg_url``: with a ``redshift-data://`` warehouse, the PostgreSQL database behind the stand-in.
    """
    extra = {"VITALSTREAM_LOCAL_PG_URL": local_pg_url} if local_pg_url else {}
    return {
        **extra,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_KINESIS": kinesis_url,
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_ENDPOINT_URL_SQS": moto_url,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "AWS_ENDPOINT_URL_SNS": moto_url,
        "AWS_ENDPOINT_URL_GLUE": moto_url,
        "VITALSTREAM_GATEWAY_URL": gateway_url,
        "VITALSTREAM_STREAM": names.stream,
        "VITALSTREAM_BUCKET": names.bucket,
        "VITALSTREAM_WAREHOUSE_URL": warehouse_url,
        "VITALSTREAM_DEVICE_TABLE": names.device_table,
        "VITALSTREAM_LEASE_TABLE": names.lease_table,
        "VITALSTREAM_EHR_QUEUE": names.ehr_queue,
        "VITALSTREAM_CLAIMS_QUEUE": names.claims_queue,
        "VITALSTREAM_ALERT_TOPIC": topic_arn("us-east-1", names.alert_topic),
        "VITALSTREAM_ALERT_QUEUE": names.alert_queue,
        "VITALSTREAM_GLUE_DATABASE": names.glue_database,
    }


def format_env(env: dict[str, str]) -> str:
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items()))


def _roles() -> list[str]:
    """Pipeline processes whose code is present in this build."""
    roles = ["gateway"] if _has_module("service.app") else []
    roles += [f"worker-{pipeline}" for pipeline in PIPELINES if _has_module(f"workers.pipelines.{pipeline}")]
    return roles


def _has_module(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def local_warehouse_url(env: dict[str, str]) -> str:
    """The PostgreSQL URL holding the warehouse tables of a running stack (behind the stand-in, or direct)."""
    return env.get("VITALSTREAM_LOCAL_PG_URL") or env["VITALSTREAM_WAREHOUSE_URL"]


def up(
    detach: bool,
    fleet: int = 0,
    rate: float = 1.0,
    root: Path | None = None,
    warehouse: str = "postgres",
    durable_kinesis: bool = False,
) -> int:
    """Start everything; foreground runs until Ctrl-C, ``detach`` returns once all is healthy.

    ``warehouse``: ``postgres`` (workers load the private PostgreSQL directly) or ``redshift`` (through the
    Redshift Data API stand-in; see the module docstring). ``durable_kinesis``: kinesalite keeps its streams
    under ``.vitalstream/kinesis`` (the chaos campaign restarts it); removed by :func:`down` like the database
    files.
    """
    if warehouse not in WAREHOUSES:
        raise ValueError(f"warehouse must be one of {WAREHOUSES}")
    existing = running_pids(load_state(root))
    if existing:
        listed = ", ".join(f"{name}={pid}" for name, pid in sorted(existing.items()))
        print(
            f"vitalstream dev stack is already running ({listed}); run `vitalstream dev down` first.", file=sys.stderr
        )
        return 1
    directory = state_dir(root)
    log_dir = directory / "logs"
    started = time.monotonic()
    state = StackState(env={})
    try:
        with ThreadPoolExecutor(3) as pool:
            kinesis_dir = directory / "kinesis" if durable_kinesis else None
            remove_data_dir(str(directory / "kinesis"))  # a fresh stack never sees an old run's records
            kin_f = pool.submit(start_kinesalite, log_dir, None, False, kinesis_dir)
            moto_f = pool.submit(start_moto, log_dir)
            pg_f = pool.submit(start_postgres, log_dir, directory)
            for future in (kin_f, moto_f):
                proc, _ = future.result()
                _record(state, proc)
            pg = pg_f.result()
            _record(state, pg.process)
            state.pg_data_dir = pg.data_dir
        gateway_url = f"http://{LOOPBACK}:{free_port()}"
        if warehouse == "redshift":
            local_pg = pg.url.rpartition("/")[0] + f"/{REDSHIFT_DATABASE}"
            state.env = stack_env(
                kin_f.result()[1], moto_f.result()[1], REDSHIFT_URL, gateway_url, local_pg_url=local_pg
            )
        else:
            state.env = stack_env(kin_f.result()[1], moto_f.result()[1], pg.url, gateway_url)
        save_state(state, root)
        asyncio.run(_bootstrap(state.env))
        _start_redshift_data(state, log_dir)
        _start_roles(state, log_dir)
        save_state(state, root)
        print(
            f"vitalstream local stack is up in {time.monotonic() - started:.1f}s "
            f'(gateway {gateway_url}); `eval "$(vitalstream dev env)"` to use it.',
            flush=True,
        )
        if fleet:
            _start_simulator(state, log_dir, fleet, rate)
            save_state(state, root)
            asyncio.run(_upload_samples(state.env))
    except BaseException:
        save_state(state, root)
        down(root)
        raise
    if detach:
        return 0
    return _foreground(state, root)


def _record(state: StackState, proc: Spawned) -> None:
    state.pids[proc.name] = proc.pid
    state.logs[proc.name] = proc.log


async def _bootstrap(env: dict[str, str]) -> None:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        async with AsyncExitStack() as stack:
            clients = await open_clients(stack, env["AWS_REGION"])
            local = env.get("VITALSTREAM_LOCAL_PG_URL")
            await bootstrap(clients, DEFAULT_NAMES, None if local else env["VITALSTREAM_WAREHOUSE_URL"])
            if local:
                await apply_redshift_ddl(local)
                # The stand-in is PostgreSQL: the PostgreSQL marts stand in for schemas/sql/redshift/analytics/
                # (which sqlglot checks), so `warehouse refresh` runs through the Data API here too.
                await apply_analytics(local)
            else:
                await allow_login(env["VITALSTREAM_WAREHOUSE_URL"])
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _upload_samples(env: dict[str, str]) -> None:
    """One file of each batch format (X12 837P/837I/835, DMS CDC, HL7 v2 ADT) into the landing zone, so a new user of
    ``make run`` sees the claims and EHR tables fill too (the workers pick them up from the S3 events)."""
    from loadtest.files import sample_files

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        async with AsyncExitStack() as stack:
            clients = await open_clients(stack, env["AWS_REGION"])
            for key, data in sample_files().items():
                await clients.s3.put_object(Bucket=DEFAULT_NAMES.bucket, Key=key, Body=data)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    print(f"uploaded {len(sample_files())} sample batch files (X12, DMS CDC, HL7 v2) to s3://{DEFAULT_NAMES.bucket}/raw/",
          flush=True)  # fmt: skip


def _cli() -> list[str]:
    return [sys.executable, "-m", "vitalstream"]


def as_user(url: str, user: str) -> str:
    """``url`` (``postgresql://owner@host:port/db``) with another user name (and no password)."""
    parts = urlsplit(url)
    host = parts.hostname or LOOPBACK
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _start_roles(state: StackState, log_dir: Path) -> None:
    env = {**os.environ, **state.env, "PYTHONUNBUFFERED": "1"}
    # Workers load as vitalstream_loader (CONTRACT §10); `dev env` keeps the owner's URL. (A redshift-data://
    # warehouse is reached through the Data API stand-in, which connects on its own.)
    owner_url = state.env["VITALSTREAM_WAREHOUSE_URL"]
    loader_url = as_user(owner_url, LOADER_ROLE) if owner_url.startswith("postgres") else owner_url
    loader_env = {**env, "VITALSTREAM_WAREHOUSE_URL": loader_url}
    for role in _roles():
        if role == "gateway":
            argv = [*_cli(), "gateway"]
            health = f"{state.env['VITALSTREAM_GATEWAY_URL']}/readyz"
            role_env = env
        else:
            port = free_port()
            argv = [*_cli(), "worker", role.removeprefix("worker-")]
            health = f"http://{LOOPBACK}:{port}/healthz"
            role_env = {**loader_env, "VITALSTREAM_METRICS_PORT": str(port)}
        proc = spawn(role, argv, log_dir, env=role_env)
        _record(state, proc)
        state.health[role] = health
    # The materialized marts, refreshed as the owner (only the owner of a materialized view may refresh it).
    _record(
        state, spawn("refresher", [*_cli(), "warehouse", "refresh", "--every", str(REFRESH_SECONDS)], log_dir, env=env)
    )
    for role, url in state.health.items():
        wait_until(lambda url=url: http_ok(url), 60, role, state.pids[role], state.logs[role])  # type: ignore[misc]


def _start_redshift_data(state: StackState, log_dir: Path) -> None:
    """The Redshift Data API stand-in on the private PostgreSQL (for ``redshift-data://`` warehouse URLs)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "vitalstream.devstack.redshift_data",
        "--port",
        str(port),
        "--warehouse-url",
        local_warehouse_url(state.env),
    ]
    proc = spawn("redshift-data", argv, log_dir, env={**os.environ, **state.env})
    _record(state, proc)
    wait_until(lambda: port_open(port), 20, "redshift-data stand-in", proc.pid, proc.log)
    state.env["AWS_ENDPOINT_URL_REDSHIFT_DATA"] = f"http://{LOOPBACK}:{port}"


def _start_simulator(state: StackState, log_dir: Path, fleet: int, rate: float) -> None:
    env = {**os.environ, **state.env, "PYTHONUNBUFFERED": "1"}
    argv = [
        *_cli(),
        "simulate",
        "--devices",
        str(fleet),
        "--rate",
        str(rate),
        "--duration",
        "0",
    ]
    _record(state, spawn("simulator", argv, log_dir, env=env))


def _foreground(state: StackState, root: Path | None) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from vitalstream.devstack.status import render_status

    next_report = time.monotonic() + 15
    try:
        while not stop:
            time.sleep(0.5)
            dead = [name for name, pid in state.pids.items() if not pid_alive(pid)]
            if dead:
                print(
                    f"stopped unexpectedly: {', '.join(dead)} (logs in {state_dir(root) / 'logs'})",
                    file=sys.stderr,
                    flush=True,
                )
                for name in dead:
                    state.pids.pop(name)
                save_state(state, root)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + 15
                print(render_status(state), flush=True)
    finally:
        print("stopping the local stack…", flush=True)
        down(root)
    return 0


def down(root: Path | None = None) -> int:
    """Stop everything ``up`` started, gracefully then forcefully; remove the database files."""
    state = load_state(root)
    if state is None:
        print("vitalstream dev stack is not running.")
        return 0
    order = sorted(state.pids, key=lambda name: STOP_ORDER.index(name) if name in STOP_ORDER else 0)
    for name in order:
        pid = state.pids[name]
        stop_pid(
            pid,
            grace=30 if name.startswith("worker") else 10,
            sig=signal.SIGINT if name == "postgres" else signal.SIGTERM,
        )
    if state.pg_data_dir:
        remove_data_dir(state.pg_data_dir)
    remove_data_dir(str(state_dir(root) / "kinesis"))
    (state_dir(root) / "state.json").unlink(missing_ok=True)
    print("vitalstream dev stack stopped.")
    return 0


def env(root: Path | None = None) -> int:
    state = load_state(root)
    if state is None or not running_pids(state):
        print("vitalstream dev stack is not running: start it with `vitalstream dev up --detach`.", file=sys.stderr)
        return 1
    print(format_env(state.env))
    return 0
