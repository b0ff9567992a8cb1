"""The AWS emulators: kinesalite (Kinesis) and moto server (S3, SQS, DynamoDB)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from vitalstream.devstack.processes import (
    LOOPBACK,
    Spawned,
    StackError,
    free_port,
    http_ok,
    port_open,
    spawn,
    wait_until,
)

LAUNCHER = Path(__file__).with_name("kinesalite_launcher.js")


def find_node_modules() -> Path:
    """The ``node_modules`` folder holding kinesalite (``make install`` puts it at the repo root)."""
    candidates = []
    if env := os.environ.get("VITALSTREAM_NODE_MODULES"):
        candidates.append(Path(env))
    candidates += [Path.cwd() / "node_modules", Path(__file__).resolve().parents[2] / "node_modules"]
    for candidate in candidates:
        if (candidate / "kinesalite" / "package.json").exists():
            return candidate
    raise StackError(
        "kinesalite is not installed: run `make install` (npm ci) in the vitalstream checkout, "
        "or point VITALSTREAM_NODE_MODULES at a node_modules folder that has it"
    )


def start_kinesalite(
    log_dir: Path, port: int | None = None, die_with_parent: bool = False, data_dir: Path | None = None
) -> tuple[Spawned, str]:
    """Start kinesalite on 127.0.0.1; returns the process and its endpoint URL.

    ``data_dir``: keep the streams on disk there (LevelDB), so a restarted kinesalite still has its records,
    as Kinesis would; in memory otherwise.
    """
    node = shutil.which("node")
    if node is None:
        raise StackError("Node.js is required for kinesalite: install Node.js 20 (apt-get install nodejs)")
    modules = find_node_modules()
    port = port or free_port()
    env = {**os.environ, "NODE_PATH": str(modules)}
    argv = [node, str(LAUNCHER), str(port)]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv.append(str(data_dir))
    proc = spawn("kinesalite", argv, log_dir, env=env, die_with_parent=die_with_parent)
    wait_until(lambda: port_open(port), 20, "kinesalite", proc.pid, proc.log)
    return proc, f"http://{LOOPBACK}:{port}"


def start_moto(log_dir: Path, port: int | None = None, die_with_parent: bool = False) -> tuple[Spawned, str]:
    """Start moto server (S3, SQS, DynamoDB over real HTTP); returns the process and endpoint URL."""
    port = port or free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
    proc = spawn("moto", argv, log_dir, env=env, die_with_parent=die_with_parent)
    url = f"http://{LOOPBACK}:{port}"
    wait_until(lambda: http_ok(f"{url}/moto-api/"), 30, "moto server", proc.pid, proc.log)
    return proc, url
