"""The fault campaign (``make chaos``): each scenario runs a fleet, injects its fault, and reconciles.

    python -m loadtest.chaos [--scenarios a,b] [--devices N] [--duration S] [--reports DIR]

One local stack (``dev up`` with durable kinesalite and a second vitals worker) serves every scenario in
turn; each scenario has its own devices (``c<run>-<scenario>-NNNNN``) and is reconciled on its own rows.
Faults hit the project's processes and the services they depend on, never the reconciliation:

- ``workerkill``: SIGKILL of a vitals worker at random moments, restarted after a random pause (repeated);
- ``gatewaykill``: SIGKILL of the gateway mid-request while clients retry, restarted on the same port;
- ``sigterm``: SIGTERM of every process of the project (gateway, all workers, Redshift Data API stand-in)
  under load — graceful drain — then all restarted (the emulators stand for AWS: they are not stopped);
- ``pgstop``: PostgreSQL stopped (fast shutdown) for 20 s and restarted;
- ``kinesisrestart``: kinesalite stopped and restarted (its streams on disk, as Kinesis keeps them);
- ``awsfaults``: Kinesis throttling and partial PutRecords failures at 30 % and S3 500/503 SlowDown at 30 %,
  injected in the gateway and the workers through botocore event hooks (``VITALSTREAM_TEST_FAULTS``);
- ``leasefight``: two vitals workers fight for the same leases: one is frozen (SIGSTOP) past its lease,
  the other takes the shards over, then the frozen one wakes up (SIGCONT) believing it still owns them;
- ``split``: a shard split under load (parent-before-child).

Exit status 1 when any scenario does not reconcile (missing, unexpected or doubled not 0).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import boto3

from loadtest.driver import FleetStats, run_fleet
from loadtest.fleet import campaign_mix, make_fleet
from loadtest.journal import Journal
from loadtest.reconcile import Report, audit_totals, dup_range, na, read_journal, reconcile, render
from loadtest.registry import register
from loadtest.stack import Stack, environment

CHAOS_SETTINGS = {
    "VITALSTREAM_FLUSH_SECONDS": "2",
    "VITALSTREAM_LEASE_SECONDS": "3",
    "VITALSTREAM_SHUTDOWN_GRACE_SECONDS": "15",
}
FAULTS = "kinesis=0.3,s3=0.3"


@dataclass
class Context:
    stack: Stack
    rng: random.Random
    duration: float
    started: float = 0.0
    events: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:.1f}s {what}")

    def remaining(self) -> float:
        return self.duration - (time.monotonic() - self.started)


Inject = Callable[[Context], Coroutine[Any, Any, None]]


async def _none(ctx: Context) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Inject
    setup: Inject = _none
    teardown: Inject = _none
    duration: float | None = None  # overrides the campaign's load duration


def _vitals_workers(stack: Stack) -> list[str]:
    return stack.names("worker-vitals")


async def _kill_workers(ctx: Context) -> None:
    kills = ctx.rng.randrange(2)  # every worker in turn, from a random one, at random moments
    while ctx.remaining() > 3:
        await asyncio.sleep(ctx.rng.uniform(1.5, 4.0))
        workers = _vitals_workers(ctx.stack)
        victim = workers[kills % len(workers)]
        kills += 1
        await asyncio.to_thread(ctx.stack.kill, victim)
        ctx.note(f"SIGKILL {victim}")
        await asyncio.sleep(ctx.rng.uniform(0.2, 1.5))
        await asyncio.to_thread(ctx.stack.start, victim)


async def _kill_gateway(ctx: Context) -> None:
    while ctx.remaining() > 4:
        await asyncio.sleep(ctx.rng.uniform(2.0, 5.0))
        await asyncio.to_thread(ctx.stack.kill, "gateway")
        ctx.note("SIGKILL gateway")
        await asyncio.sleep(ctx.rng.uniform(0.3, 1.5))
        await asyncio.to_thread(ctx.stack.start, "gateway")


async def _sigterm_all(ctx: Context) -> None:
    await asyncio.sleep(ctx.duration / 3)
    roles = ctx.stack.roles()
    for name in roles:
        ctx.stack.signal(name, signal.SIGTERM)
    ctx.note(f"SIGTERM {', '.join(roles)}")
    for name in roles:
        if not await asyncio.to_thread(ctx.stack.wait_exit, name, 40):
            raise RuntimeError(f"{name} did not exit within 40 s of SIGTERM")
    await asyncio.sleep(1.0)
    await asyncio.gather(*(asyncio.to_thread(ctx.stack.start, name) for name in roles))
    ctx.note("all restarted")


async def _stop_postgres(ctx: Context) -> None:
    await asyncio.sleep(min(5.0, ctx.duration / 4))
    ctx.stack.signal("postgres", signal.SIGINT)  # fast shutdown: sessions are cut, as in a failover
    ctx.note("PostgreSQL stopped")
    if not await asyncio.to_thread(ctx.stack.wait_exit, "postgres", 30):
        raise RuntimeError("PostgreSQL did not stop")
    await asyncio.sleep(20.0)
    await asyncio.to_thread(ctx.stack.start, "postgres")
    ctx.note("PostgreSQL started")


async def _restart_kinesalite(ctx: Context) -> None:
    await asyncio.sleep(ctx.duration / 3)
    ctx.stack.signal("kinesalite", signal.SIGTERM)
    ctx.note("kinesalite stopped")
    if not await asyncio.to_thread(ctx.stack.wait_exit, "kinesalite", 20):
        await asyncio.to_thread(ctx.stack.kill, "kinesalite")
    await asyncio.sleep(3.0)
    await asyncio.to_thread(ctx.stack.start, "kinesalite")
    ctx.note("kinesalite started")


def _faulted_roles(stack: Stack) -> list[str]:
    return ["gateway", *_vitals_workers(stack)]


async def _faults_on(ctx: Context) -> None:
    faults = {"VITALSTREAM_TEST_FAULTS": FAULTS}
    await asyncio.gather(*(asyncio.to_thread(ctx.stack.restart, n, faults) for n in _faulted_roles(ctx.stack)))
    ctx.note(f"faults {FAULTS} in {', '.join(_faulted_roles(ctx.stack))}")


def _metric_sum(url: str, name: str) -> float:
    """Sum of a Prometheus metric's samples at ``url`` (0 when absent or unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def _faults_off(ctx: Context) -> None:
    state = ctx.stack.state()
    gateway = state.env["VITALSTREAM_GATEWAY_URL"] + "/metrics"
    retries = await asyncio.to_thread(_metric_sum, gateway, "vitalstream_gateway_put_retries_total")
    throttled = await asyncio.to_thread(_metric_sum, gateway, "vitalstream_gateway_put_throttles_total")
    errors = 0.0
    for name in _vitals_workers(ctx.stack):
        url = state.health[name].removesuffix("/healthz") + "/metrics"
        errors += await asyncio.to_thread(_metric_sum, url, "vitalstream_worker_errors_total")
    ctx.note(f"gateway records resent {retries:.0f} (throttled {throttled:.0f}), worker errors {errors:.0f}")
    drop = ("VITALSTREAM_TEST_FAULTS",)
    await asyncio.gather(*(asyncio.to_thread(ctx.stack.restart, n, None, drop) for n in _faulted_roles(ctx.stack)))


async def _lease_fight(ctx: Context) -> None:
    workers = _vitals_workers(ctx.stack)
    lease = float(CHAOS_SETTINGS["VITALSTREAM_LEASE_SECONDS"])
    while ctx.remaining() > 3 * lease:
        await asyncio.sleep(ctx.rng.uniform(1.0, 3.0))
        frozen = ctx.rng.choice(workers)
        ctx.stack.signal(frozen, signal.SIGSTOP)
        ctx.note(f"SIGSTOP {frozen}")
        await asyncio.sleep(lease * ctx.rng.uniform(2.0, 3.0))  # its leases expire and are taken over
        ctx.stack.signal(frozen, signal.SIGCONT)
        ctx.note(f"SIGCONT {frozen}")


async def _split(ctx: Context) -> None:
    await asyncio.sleep(ctx.duration / 3)
    env = ctx.stack.env

    def split() -> None:
        client = boto3.client(
            "kinesis", region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL_KINESIS"],
            aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106 - the local emulator
        )  # fmt: skip
        stream = env["VITALSTREAM_STREAM"]
        shards = client.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
        open_shards = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        shard = ctx.rng.choice(open_shards)
        low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        client.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2))

    await asyncio.to_thread(split)
    ctx.note("shard split")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("workerkill", _kill_workers, duration=40.0),
        Scenario("gatewaykill", _kill_gateway),
        Scenario("sigterm", _sigterm_all),
        Scenario("pgstop", _stop_postgres, duration=32.0),
        Scenario("kinesisrestart", _restart_kinesalite),
        Scenario("awsfaults", _none, setup=_faults_on, teardown=_faults_off),
        Scenario("leasefight", _lease_fight),
        Scenario("split", _split),
    )
}
SHORT = ("workerkill", "gatewaykill", "awsfaults")  # the short form in `make test`


@dataclass
class Outcome:
    report: Report
    stats: FleetStats
    seconds: float
    events: list[str]


async def run_scenario(
    stack: Stack, scenario: Scenario, run_id: str, reports: Path, devices: int, duration: float, seed: int
) -> Outcome:
    """One scenario with ``devices`` devices for ``duration`` s of load on ``stack``, reconciled."""
    started = time.monotonic()
    prefix = f"c{run_id}-{scenario.name}"
    fleet = make_fleet(devices, seed, prefix=prefix, mix=campaign_mix())
    env = stack.env
    ctx = Context(stack, random.Random(seed), duration)
    with environment(env):
        tokens = await register(fleet)
    conn = await asyncpg.connect(env["VITALSTREAM_WAREHOUSE_URL"])
    try:
        before = await audit_totals(conn)
    finally:
        await conn.close()
    directory = reports / f"run-{run_id}" / scenario.name
    journal = Journal(directory, "chaos")
    ctx.started = time.monotonic()
    await scenario.setup(ctx)
    ctx.started = time.monotonic()
    fault = asyncio.create_task(scenario.inject(ctx))
    try:
        stats = await run_fleet(env["VITALSTREAM_GATEWAY_URL"], fleet, tokens, journal, rate=1.0, duration=duration)
    finally:
        await fault
        journal.close()
    report = await reconcile(
        scenario.name, read_journal(directory), env["VITALSTREAM_WAREHOUSE_URL"], prefix + "-", before, wait=120
    )
    await scenario.teardown(ctx)
    return Outcome(report, stats, time.monotonic() - started, ctx.events)


def _cell(text: str, width: int, column: int) -> str:
    return text.rjust(width) if column else text.ljust(width)


def table(outcomes: list[Outcome]) -> str:
    """Scenario by (sent, loaded, quarantined, duplicates removed, missing, unexpected, doubled, max freshness)."""
    head = ("scenario", "requests", "sent", "accepted", "loaded", "quarantined", "dup removed", "missing",
            "unexpected", "doubled", "uncertain", "max fresh", "result")  # fmt: skip
    rows = [head]
    for o in outcomes:
        r, t = o.report, o.report.truth
        dup = f"{na(r.duplicates_removed)} ({dup_range(t)})"
        rows.append((
            r.name, str(t.requests), str(t.readings_sent), str(t.readings_accepted), str(r.fact_rows),
            str(sum(r.quarantine_rows.values())), dup, str(r.missing), str(r.unexpected), str(r.doubled),
            str(r.uncertain), f"{max(r.freshness):.1f}s" if r.freshness else "-", "OK" if r.ok else "FAILED",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(_cell(cell, w, i) for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def campaign(names: list[str], devices: int, duration: float, reports: Path, seed: int) -> list[Outcome]:
    run_id = format(int(time.time() * 1000) % 36**4, "x")
    stack = Stack(reports / "stack")
    outcomes: list[Outcome] = []
    print(f"chaos: starting the local stack under {stack.root} …", flush=True)
    await asyncio.to_thread(stack.up, CHAOS_SETTINGS)
    try:
        await asyncio.to_thread(stack.add_worker, "vitals", "worker-vitals-2")
        for index, name in enumerate(names):
            print(f"chaos: {name} ({devices} devices, {SCENARIOS[name].duration or duration:.0f} s of load) …",
                  flush=True)  # fmt: skip
            scenario = SCENARIOS[name]
            length = scenario.duration or duration
            outcome = await run_scenario(stack, scenario, f"{run_id}{index}", reports, devices, length, seed + index)
            outcomes.append(outcome)
            print(render(outcome.report), flush=True)
            print(f"  faults: {'; '.join(outcome.events) or 'none'}", flush=True)
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.stats.statuses.items()))
            print(f"  answers to every attempt: {answers}", flush=True)
            print(f"  ({outcome.seconds:.0f} s)", flush=True)
    finally:
        await asyncio.to_thread(stack.down)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.chaos", description="the fault campaign")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--short", action="store_true", help=f"the short form: {', '.join(SHORT)}")
    parser.add_argument("--devices", type=int, default=30)
    parser.add_argument("--duration", type=float, default=25.0, help="seconds of load per scenario")
    parser.add_argument("--reports", type=Path, default=Path("loadtest/reports/chaos"))
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    names = list(SHORT) if args.short else [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    started = time.monotonic()
    outcomes = asyncio.run(campaign(names, args.devices, args.duration, args.reports.resolve(), args.seed))
    print(f"\nchaos campaign: {len(outcomes)} scenarios in {time.monotonic() - started:.0f} s\n", flush=True)
    print(table(outcomes), flush=True)
    return 0 if all(o.report.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
