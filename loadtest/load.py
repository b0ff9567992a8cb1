"""The load test (``make loadtest``): locust against the local stack, then reconciliation and a summary.

    python -m loadtest.load [--shape steady|ramp|spike] [--users N] [--duration S] [--processes P]

Uses the stack ``vitalstream dev up`` runs in the current directory when there is one, else starts one
(``dev up --detach``) under the run's report directory and stops it at the end. Loopback only, bounded by
``--duration`` (plus the drain). Reports go to ``loadtest/reports/load/<run>/``: locust's HTML report and
CSV statistics, the journals, ``summary.txt``. Exit status 1 when the run does not reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import orjson

from loadtest.fleet import campaign_mix, make_fleet
from loadtest.reconcile import Report, audit_totals, percentile, read_journal, reconcile, render
from loadtest.registry import register
from loadtest.shapes import SHAPES
from loadtest.stack import Stack, environment
from vitalstream.devstack import stack as devstack
from vitalstream.devstack.processes import free_port


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux ``/proc``), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _role_pids(own: Stack | None) -> dict[str, int]:
    state = own.state() if own is not None else devstack.load_state()
    if state is None:
        return {}
    return {name: pid for name, pid in state.pids.items() if name == "gateway" or name.startswith("worker-vitals")}


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := cpu_seconds(pid)) is not None}


def _stack_env(reports: Path) -> tuple[dict[str, str], Stack | None]:
    """The running ``dev up`` stack's environment, or a new stack (returned, to be stopped)."""
    state = devstack.load_state()
    if state is not None and devstack.running_pids(state):
        return state.env, None
    stack = Stack(reports / "stack")
    stack.up(durable_kinesis=False)
    return stack.env, stack


def _locust(run_dir: Path, env: dict[str, str], shape: str, users: int, duration: float, processes: int) -> int:
    argv = [
        sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")),
        "--headless", "--host", env["VITALSTREAM_GATEWAY_URL"],
        "--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust.html"),
        "--stop-timeout", "60", "--only-summary", "--loglevel", "INFO",
    ]  # fmt: skip
    if processes > 1:
        port = str(free_port())
        argv += ["--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                 "--master-host", "127.0.0.1", "--master-port", port, "--expect-workers", str(processes)]  # fmt: skip
    child_env = {
        **os.environ, **env,
        "LOADTEST_RUN_DIR": str(run_dir), "LOADTEST_SHAPE": shape, "LOADTEST_USERS": str(users),
        "LOADTEST_DURATION": str(duration), "LOADTEST_PROCESSES": str(processes),
    }  # fmt: skip
    with (run_dir / "locust.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=duration + 180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the master and its forked workers
            proc.wait()
            return -1


def _locust_figures(run_dir: Path) -> dict[str, str]:
    figures: dict[str, str] = {}
    stats = run_dir / "locust_stats.csv"
    if stats.exists():
        for row in csv.DictReader(stats.open()):
            if row.get("Name") == "Aggregated":
                figures = {k: row.get(k, "") for k in ("Request Count", "Failure Count", "Requests/s", "50%", "95%",
                                                         "99%", "Max Response Time")}  # fmt: skip
    failures = run_dir / "locust_failures.csv"
    errors = []
    if failures.exists():
        errors = [f"{row['Error']}: {row['Occurrences']}" for row in csv.DictReader(failures.open())]
    figures["errors"] = ", ".join(errors) or "none"
    return figures


def summary(report: Report, figures: dict[str, str], shape: str, users: int, duration: float, processes: int) -> str:
    eps = report.readings_per_second()
    lines = [
        f"load test: shape {shape}, {users} users (devices, 1 snapshot/s each), {duration:.0f} s, "
        f"{processes} locust processes",
        f"  requests (attempts)      {figures.get('Request Count', '-')} ({_num(figures.get('Requests/s'))} req/s)",
        f"  latency p50/p95/p99/max  {figures.get('50%', '-')} / {figures.get('95%', '-')} / "
        f"{figures.get('99%', '-')} / {_num(figures.get('Max Response Time'))} ms",
        f"  errors by status         {figures.get('errors')}",
        f"  readings/s end to end    {eps:.0f}" if eps else "  readings/s end to end    -",
        f"  freshness p50/p95        {_s(report.freshness_at(0.5))} / {_s(report.freshness_at(0.95))} "
        "(measured_at → loaded_at)",
        f"  alert latency p50/p95    {_s(percentile(report.alert_latency, 0.5))} / "
        f"{_s(percentile(report.alert_latency, 0.95))}"
        + ("" if report.alerts_table else " (no deterioration_alerts table: not available)"),
    ]
    return "\n".join(lines)


def _cpu_lines(before: dict[str, float], after: dict[str, float], report: Report) -> str:
    """CPU the gateway and the vitals workers used per request and per reading (capacity arithmetic)."""
    used = {name: after[name] - before[name] for name in before if name in after}
    if not used:
        return ""
    attempts = report.truth.attempts
    readings = report.truth.readings_accepted
    lines = []
    if (gateway := used.get("gateway")) and attempts:
        per_request = gateway / attempts
        per_reading = gateway / max(1, report.truth.readings_sent)
        lines.append(f"  gateway CPU               {gateway:.1f} s: {per_request * 1e6:.0f} µs/request, "
                     f"{per_reading * 1e6:.0f} µs/reading → {1 / per_reading:,.0f} readings/s per core")  # fmt: skip
    workers = sum(v for k, v in used.items() if k.startswith("worker-vitals"))
    if workers and readings:
        per_reading = workers / readings
        lines.append(f"  vitals workers CPU        {workers:.1f} s: {per_reading * 1e6:.0f} µs/reading → "
                     f"{1 / per_reading:,.0f} readings/s per core (PostgreSQL's share not included)")  # fmt: skip
    return "\n" + "\n".join(lines)


def _num(text: str | None) -> str:
    try:
        return f"{float(text or ''):.1f}"
    except ValueError:
        return "-"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


async def run(
    shape: str, users: int, duration: float, processes: int, reports: Path, seed: int, env: dict[str, str] | None = None
) -> tuple[int, Report | None]:
    """One locust run and its reconciliation: (exit status, report). ``env``: the stack to use (default: see
    :func:`_stack_env`)."""
    run_id = format(int(time.time() * 1000) % 36**4, "x")
    run_dir = reports / f"run-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    own_stack: Stack | None = None
    env_given = env is not None
    if env is None:
        env, own_stack = await asyncio.to_thread(_stack_env, reports)
    assert env is not None
    try:
        prefix = f"l{run_id}-{shape}"
        devices = 2 * users + processes  # every process has a pool larger than the users it may get
        fleet = make_fleet(devices, seed, prefix=prefix, mix=campaign_mix())
        with environment(env):
            tokens = await register(fleet)
        (run_dir / "fleet.json").write_bytes(
            orjson.dumps({"prefix": prefix, "seed": seed, "devices": devices, "tokens": tokens})
        )
        conn = await asyncpg.connect(env["VITALSTREAM_WAREHOUSE_URL"])
        try:
            before = await audit_totals(conn)
        finally:
            await conn.close()
        print(f"loadtest: locust, shape {shape}, {users} users, {duration:.0f} s, {processes} processes → {run_dir}",
              flush=True)  # fmt: skip
        pids = {} if env_given else _role_pids(own_stack)
        cpu_before = _cpu(pids)
        code = await asyncio.to_thread(_locust, run_dir, env, shape, users, duration, processes)
        if code not in (0, 1):  # 1: some requests failed (e.g. 503 under overload), which is not our verdict
            print(f"locust exited with {code}; see {run_dir / 'locust.log'}", file=sys.stderr)
            return 2, None
        report = await reconcile(
            f"load {shape}", read_journal(run_dir), env["VITALSTREAM_WAREHOUSE_URL"], prefix + "-", before, wait=90
        )
        cpu_after = _cpu(pids)
    finally:
        if own_stack is not None:
            await asyncio.to_thread(own_stack.down)
    figures = _locust_figures(run_dir)
    text = render(report) + "\n\n" + summary(report, figures, shape, users, duration, processes)
    text += _cpu_lines(cpu_before, cpu_after, report)
    (run_dir / "summary.txt").write_text(text + "\n")
    print(text, flush=True)
    print(f"\nreports: {run_dir} (locust.html, locust_stats.csv, summary.txt)", flush=True)
    return (0 if report.ok else 1), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.load", description="locust load test + reconciliation")
    parser.add_argument("--shape", choices=SHAPES, default="steady")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--reports", type=Path, default=Path("loadtest/reports/load"))
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    code, _ = asyncio.run(run(args.shape, args.users, args.duration, args.processes, args.reports.resolve(), args.seed))
    return code


if __name__ == "__main__":
    sys.exit(main())
