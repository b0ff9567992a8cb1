"""A private PostgreSQL cluster: the local stand-in for Redshift.

As root the server runs as the ``postgres`` user (it refuses to run as root) with its data and
socket under ``/tmp`` (that user cannot enter ``/root``). It listens on 127.0.0.1 only and trusts
local connections; ``fsync`` is off because the data is disposable.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vitalstream.devstack.processes import LOOPBACK, Spawned, StackError, free_port, spawn, wait_until

SUPERUSER = "vitalstream"
DATABASE = "vitalstream"


@dataclass(frozen=True)
class PostgresServer:
    process: Spawned
    data_dir: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{DATABASE}"


def find_bindir() -> Path:
    """The directory with ``initdb`` and ``postgres`` (PostgreSQL 15 or newer)."""
    if env := os.environ.get("VITALSTREAM_PG_BINDIR"):
        return Path(env)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key, reverse=True)
    for binary in versions:
        if _version_key(binary) >= 15:
            return Path(binary).parent
    if (initdb := shutil.which("initdb")) and shutil.which("postgres"):
        return Path(initdb).parent
    raise StackError(
        "PostgreSQL 15+ server binaries not found: install them (apt-get install postgresql-15, "
        "or postgresql) or set VITALSTREAM_PG_BINDIR"
    )


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except (ValueError, IndexError):
        return 0


def _run_as() -> str | None:
    """The user the server must run as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise StackError("running as root needs a 'postgres' system user (apt-get install postgresql)") from exc
    return "postgres"


def start_postgres(
    log_dir: Path, state_dir: Path, port: int | None = None, die_with_parent: bool = False
) -> PostgresServer:
    """initdb a fresh cluster and start it; returns once it accepts connections."""
    bindir = find_bindir()
    user = _run_as()
    if user:
        data_dir = Path(tempfile.mkdtemp(prefix="vitalstream-pg-", dir="/tmp"))
        shutil.chown(data_dir, user=user, group=user)
    else:
        data_dir = state_dir / "pg"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
    pgdata = data_dir / "data"
    initdb = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        user=user,
        capture_output=True,
        text=True,
        check=False,
    )
    if initdb.returncode != 0:
        raise StackError(f"initdb failed: {initdb.stderr.strip()[-2000:]}")
    port = port or free_port()
    argv = [
        str(bindir / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-k",
        str(data_dir),
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
        "-c",
        "max_wal_size=4GB",
        "-c",
        "log_min_messages=warning",
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(log_dir, user=user)
    proc = spawn("postgres", argv, log_dir, env=_pg_env(), user=user, die_with_parent=die_with_parent)
    pg_isready = bindir / "pg_isready"

    def ready() -> bool:
        result = subprocess.run(
            [str(pg_isready), "-q", "-h", LOOPBACK, "-p", str(port), "-U", SUPERUSER, "-d", "postgres"],
            check=False,
        )
        return result.returncode == 0

    wait_until(ready, 30, "PostgreSQL", proc.pid, proc.log)
    create = subprocess.run(
        [str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", SUPERUSER, DATABASE],
        capture_output=True,
        text=True,
        check=False,
    )
    if create.returncode != 0 and "already exists" not in create.stderr:
        raise StackError(f"createdb failed: {create.stderr.strip()}")
    return PostgresServer(process=proc, data_dir=str(data_dir), port=port)


def _pg_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def remove_data_dir(data_dir: str) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
