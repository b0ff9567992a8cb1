"""Control of a local stack (``vitalstream dev up``) for the campaigns: signal, stop and restart its parts by pid.

The campaign harness is a composition root like ``vitalstream/`` itself, so it drives the stack through
``vitalstream.devstack``; the fleet model, the truth and the reconciliation import only ``schemas``.
Each process is restarted exactly as it was started (argv, environment, user), read from ``/proc`` while
it runs; ``state.json`` is kept current so ``vitalstream dev down`` stops the restarted processes too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from vitalstream.devstack import stack as devstack
from vitalstream.devstack.processes import LOOPBACK, free_port, http_ok, pid_alive, port_open, spawn, wait_until

ROLES_PREFIX = ("gateway", "worker-", "redshift-data")


@dataclass(frozen=True)
class Spec:
    argv: list[str]
    env: dict[str, str]
    user: str | None


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Stack:
    """One ``dev up --detach`` stack under ``root`` (its ``.vitalstream/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs: dict[str, Spec] = {}
        self._lock = threading.Lock()  # state.json is read, changed and written by several threads

    # life cycle
    def up(self, settings: Mapping[str, str] | None = None, durable_kinesis: bool = True) -> None:
        """Start the stack; ``settings`` (``VITALSTREAM_*``) reach every process it starts."""
        self.root.mkdir(parents=True, exist_ok=True)
        with environment(settings or {}):
            code = devstack.up(detach=True, root=self.root, durable_kinesis=durable_kinesis)
        if code != 0:
            raise RuntimeError("vitalstream dev up failed")
        for name in self.state().pids:
            self.remember(name)

    def down(self) -> None:
        devstack.down(self.root)

    def state(self) -> devstack.StackState:
        state = devstack.load_state(self.root)
        if state is None:
            raise RuntimeError(f"no stack under {self.root}")
        return state

    @property
    def env(self) -> dict[str, str]:
        return self.state().env

    @property
    def log_dir(self) -> Path:
        return devstack.state_dir(self.root) / "logs"

    def pid(self, name: str) -> int:
        return self.state().pids[name]

    def names(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self.state().pids if name.startswith(prefix))

    def roles(self) -> list[str]:
        """The project's own processes (gateway, workers, Redshift Data API stand-in), not the emulators."""
        return [name for name in self.names() if name.startswith(ROLES_PREFIX)]

    # processes
    def remember(self, name: str) -> Spec:
        """Read how ``name`` was started from ``/proc`` (argv, environment, user)."""
        pid = self.pid(name)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        raw_env = Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw_env if b"=" in item)
        uid = os.stat(f"/proc/{pid}").st_uid
        user = pwd.getpwuid(uid).pw_name if uid != os.getuid() else None
        spec = Spec([a.decode() for a in argv], env, user)
        self.specs[name] = spec
        return spec

    def signal(self, name: str, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(self.pid(name)), sig)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would."""
        self.signal(name, signal.SIGKILL)
        self.wait_exit(name, 10)

    def wait_exit(self, name: str, timeout: float) -> bool:
        pid = self.pid(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
        return False

    def start(self, name: str, extra_env: Mapping[str, str] | None = None, drop_env: tuple[str, ...] = ()) -> None:
        """Start ``name`` again as it was started (with ``extra_env`` on top); wait until it answers."""
        spec = self.specs[name]
        env = {k: v for k, v in spec.env.items() if k not in drop_env}
        env.update(extra_env or {})
        proc = spawn(name, spec.argv, self.log_dir, env=env, user=spec.user)
        with self._lock:
            state = self.state()
            state.pids[name] = proc.pid
            devstack.save_state(state, self.root)
        self.specs[name] = Spec(spec.argv, env, spec.user)
        self._wait_healthy(name, proc.pid, proc.log)

    def restart(self, name: str, extra_env: Mapping[str, str] | None = None, drop_env: tuple[str, ...] = ()) -> None:
        """SIGTERM (graceful), then start again."""
        self.signal(name, signal.SIGTERM)
        if not self.wait_exit(name, 40):
            self.kill(name)
        self.start(name, extra_env, drop_env)

    def add_worker(self, pipeline: str, name: str) -> None:
        """One more worker process of ``pipeline``, started like the first one, with its own metrics port."""
        first = self.specs.get(f"worker-{pipeline}") or self.remember(f"worker-{pipeline}")
        port = free_port()
        env = {**first.env, "VITALSTREAM_METRICS_PORT": str(port)}
        self.specs[name] = Spec(first.argv, env, first.user)
        with self._lock:
            state = self.state()
            state.health[name] = f"http://{LOOPBACK}:{port}/healthz"
            state.pids[name] = 0
            devstack.save_state(state, self.root)
        self.start(name)

    def _wait_healthy(self, name: str, pid: int, log: str) -> None:
        state = self.state()
        if name in state.health:
            url = state.health[name]
            wait_until(lambda: http_ok(url), 60, name, pid, log)
        elif name == "kinesalite":
            port = int(self.specs[name].argv[2])
            wait_until(lambda: port_open(port), 30, name, pid, log)
        elif name == "postgres":
            argv = self.specs[name].argv
            port = int(argv[argv.index("-p") + 1])
            wait_until(lambda: port_open(port), 30, name, pid, log)
            time.sleep(1.0)  # accepting TCP is not yet accepting sessions: let recovery finish
