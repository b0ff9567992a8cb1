"""``vitalstream dev status``: health, stream lag, rows per table, quarantine by reason."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import TYPE_CHECKING

import asyncpg

from schemas.ddl import CONTRACT_TABLES
from vitalstream.devstack.processes import http_ok, pid_alive

if TYPE_CHECKING:
    from vitalstream.devstack.stack import StackState


async def warehouse_counts(url: str) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Rows per warehouse table, quarantined vitals by reason, deterioration alerts by risk (and unpublished)."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        counts: dict[str, int] = {}
        for table in CONTRACT_TABLES:
            try:
                counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            except asyncpg.UndefinedTableError:
                counts[table] = -1
        reasons: dict[str, int] = {}
        if counts.get("vitals_quarantine", -1) >= 0:
            rows = await conn.fetch("SELECT reason, count(*) AS n FROM vitals_quarantine GROUP BY reason")
            reasons = {row["reason"]: int(row["n"]) for row in rows}
        alerts: dict[str, int] = {}
        if counts.get("deterioration_alerts", -1) >= 0:
            rows = await conn.fetch(
                "SELECT risk, count(*) AS n, count(*) FILTER (WHERE published_at IS NULL) AS unpublished "
                "FROM deterioration_alerts GROUP BY risk"
            )
            alerts = {row["risk"]: int(row["n"]) for row in rows}
            alerts["unpublished"] = sum(int(row["unpublished"]) for row in rows)
        return counts, reasons, alerts
    finally:
        await conn.close()


def stream_lag_ms(metrics_url: str) -> float | None:
    """Sum of MillisBehindLatest over the shards a vitals worker reports, if it is running."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:  # noqa: S310 - loopback only
            text = response.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vitalstream_worker_millis_behind_latest{")
    ]
    return max(values) if values else None


def render_status(state: StackState) -> str:
    lines = ["vitalstream local stack"]
    for name, pid in sorted(state.pids.items()):
        alive = pid_alive(pid)
        health = state.health.get(name)
        healthy = alive and (health is None or http_ok(health))
        lines.append(f"  {name:<15} pid {pid:<8} {'healthy' if healthy else 'DOWN' if not alive else 'unhealthy'}")
    worker = state.health.get("worker-vitals")
    if worker:
        lag = stream_lag_ms(worker.replace("/healthz", "/metrics"))
        lines.append(f"  stream lag      {'n/a' if lag is None else f'{lag / 1000:.1f}s behind latest'}")
    try:
        local = state.env.get("VITALSTREAM_LOCAL_PG_URL") or state.env["VITALSTREAM_WAREHOUSE_URL"]
        counts, reasons, alerts = asyncio.run(warehouse_counts(local))
    except (OSError, asyncpg.PostgresError) as exc:
        lines.append(f"  warehouse       unreachable ({type(exc).__name__})")
        return "\n".join(lines)
    lines.append("  warehouse rows")
    for table, count in counts.items():
        lines.append(f"    {table:<20} {'missing' if count < 0 else count}")
    lines.append("  quarantined vitals by reason")
    for reason, count in sorted(reasons.items()) or [("(none)", 0)]:
        lines.append(f"    {reason:<20} {count}")
    lines.append("  deterioration alerts (NEWS2; `vitalstream alerts tail` prints them)")
    for risk, count in sorted(alerts.items()) or [("(none)", 0)]:
        lines.append(f"    {risk:<20} {count}")
    return "\n".join(lines)


def status() -> int:
    from vitalstream.devstack.stack import load_state, running_pids

    state = load_state()
    if state is None or not running_pids(state):
        print("vitalstream dev stack is not running.")
        return 1
    print(render_status(state))
    return 0
