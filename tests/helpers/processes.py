"""Run the real gateway and worker processes for end-to-end tests (``python -m vitalstream …``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from vitalstream.devstack.processes import LOOPBACK, free_port, http_ok, spawn, stop_pid, wait_until


@dataclass
class Role:
    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str
    log_dir: Path
    pid: int = 0
    log: str = ""
    history: list[int] = field(default_factory=list)

    def start(self, timeout: float = 60) -> None:
        proc = spawn(self.name, self.argv, self.log_dir, env=self.env)
        self.pid, self.log = proc.pid, proc.log
        self.history.append(proc.pid)
        wait_until(lambda: http_ok(self.health_url), timeout, self.name, proc.pid, proc.log)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no flush, no checkpoint, no lease release."""
        os.killpg(os.getpgid(self.pid), signal.SIGKILL)
        with suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def stop(self, grace: float = 30) -> None:
        stop_pid(self.pid, grace=grace)

    def log_text(self) -> str:
        return Path(self.log).read_text(errors="replace") if self.log else ""


def _cli() -> list[str]:
    return [sys.executable, "-m", "vitalstream"]


def gateway_role(env: dict[str, str], log_dir: Path) -> Role:
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    role_env = {**os.environ, **env, "VITALSTREAM_GATEWAY_URL": url, "PYTHONUNBUFFERED": "1"}
    return Role("gateway", [*_cli(), "gateway"], role_env, f"{url}/readyz", log_dir)


def worker_role(pipeline: str, env: dict[str, str], log_dir: Path, name: str | None = None) -> Role:
    port = free_port()
    role_env = {**os.environ, **env, "VITALSTREAM_METRICS_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    return Role(
        name or f"worker-{pipeline}",
        [*_cli(), "worker", pipeline],
        role_env,
        f"http://{LOOPBACK}:{port}/healthz",
        log_dir,
    )


@contextmanager
def running(*roles: Role) -> Iterator[tuple[Role, ...]]:
    """Start ``roles`` in order; stop them all (by pid) on exit, whatever happened."""
    started: list[Role] = []
    try:
        for role in roles:
            role.start()
            started.append(role)
        yield roles
    finally:
        for role in reversed(started):
            role.stop()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_cli(), *args], env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=120
    )
