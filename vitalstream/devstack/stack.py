"""``vitalstream dev up|env|status|down``: the whole local stack, every part its own process.

State (pids, ports, endpoints, data dirs) lives in ``.vitalstream/state.json`` in the working
directory, so ``down`` and ``env`` work from any later shell.
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

from vitalstream.devstack.bootstrap import Names, bootstrap
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

DEFAULT_NAMES = Names(
    stream="vitalstream-vitals",
    bucket="vitalstream-lake",
    device_table="vitalstream-devices",
    lease_table="vitalstream-leases",
    ehr_queue="vitalstream-ehr",
    claims_queue="vitalstream-claims",
)
PIPELINES = ("vitals", "ehr", "claims")
# Stop order: producers first, so the workers can drain, then the emulators and the database.
STOP_ORDER = (
    "simulator",
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
    kinesis_url: str, moto_url: str, warehouse_url: str, gateway_url: str, names: Names = DEFAULT_NAMES
) -> dict[str, str]:
    """The environment every command needs to work against the local stack (CONTRACT §5)."""
    return {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_KINESIS": kinesis_url,
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_ENDPOINT_URL_SQS": moto_url,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "VITALSTREAM_GATEWAY_URL": gateway_url,
        "VITALSTREAM_STREAM": names.stream,
        "VITALSTREAM_BUCKET": names.bucket,
        "VITALSTREAM_WAREHOUSE_URL": warehouse_url,
        "VITALSTREAM_DEVICE_TABLE": names.device_table,
        "VITALSTREAM_LEASE_TABLE": names.lease_table,
        "VITALSTREAM_EHR_QUEUE": names.ehr_queue,
        "VITALSTREAM_CLAIMS_QUEUE": names.claims_queue,
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


def up(detach: bool, fleet: int = 0, rate: float = 1.0, root: Path | None = None, durable_kinesis: bool = False) -> int:
    """Start everything; foreground runs until Ctrl-C, ``detach`` returns once all is healthy.

    ``durable_kinesis``: kinesalite keeps its streams under ``.vitalstream/kinesis`` (the chaos campaign
    restarts it); removed by :func:`down` like the database files.
    """
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
            await bootstrap(clients, DEFAULT_NAMES, env["VITALSTREAM_WAREHOUSE_URL"])
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cli() -> list[str]:
    return [sys.executable, "-m", "vitalstream"]


def _start_roles(state: StackState, log_dir: Path) -> None:
    env = {**os.environ, **state.env, "PYTHONUNBUFFERED": "1"}
    for role in _roles():
        if role == "gateway":
            argv = [*_cli(), "gateway"]
            health = f"{state.env['VITALSTREAM_GATEWAY_URL']}/readyz"
            role_env = env
        else:
            port = free_port()
            argv = [*_cli(), "worker", role.removeprefix("worker-")]
            health = f"http://{LOOPBACK}:{port}/healthz"
            role_env = {**env, "VITALSTREAM_METRICS_PORT": str(port)}
        proc = spawn(role, argv, log_dir, env=role_env)
        _record(state, proc)
        state.health[role] = health
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
        state.env["VITALSTREAM_WAREHOUSE_URL"],
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
