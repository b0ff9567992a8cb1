"""Reconcile the warehouse against the ground truth of what was sent (CONTRACT §4 and §9).

Reads the journal files (JSON lines of :class:`loadtest.truth.Sent`) of one run, waits until the pipeline
has drained, and compares ``fact_vitals`` / ``vitals_quarantine`` (and ``deterioration_alerts`` when the table
exists) for the run's devices with :func:`loadtest.truth.expect`:

- **missing**: an expected row absent from its table (a spike loaded into ``fact_vitals`` counts once here,
  as the quarantine row it should have been, and once as unexpected);
- **unexpected**: a row where the truth puts none (wrong table, wrong reason, wrong value, or unknown key);
- **doubled**: extra rows of one key across both tables.

    python -m loadtest.reconcile --journal loadtest/reports/RUN --prefix lt-RUN- --warehouse-url postgresql://…

Exit status 1 when missing, unexpected or doubled is not 0 (alerts included when the table exists).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from loadtest.truth import RISK_ORDER, Key, Sent, Truth, expect

VALUE_TOLERANCE = 1e-6


@dataclass
class AuditTotals:
    batches: int = 0
    rows_in: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicate: int = 0

    def minus(self, other: AuditTotals) -> AuditTotals:
        return AuditTotals(*(a - b for a, b in zip(vars(self).values(), vars(other).values(), strict=True)))


@dataclass
class Report:
    """The outcome of one reconciliation (one row of a campaign table)."""

    name: str
    truth: Truth
    fact_rows: int = 0
    quarantine_rows: Counter[str] = field(default_factory=Counter)
    held: int = 0
    missing: int = 0
    unexpected: int = 0
    doubled: int = 0
    uncertain: int = 0
    duplicates_removed: int | None = None
    audit_rows_in: int | None = None
    freshness: list[float] = field(default_factory=list)  # seconds, measured_at → loaded_at
    alerts_table: bool = False
    alerts_raised: int = 0
    alerts_missing: int = 0
    alerts_unexpected: int = 0
    alerts_doubled: int = 0
    alert_latency: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    first_measured: datetime | None = None
    last_loaded: datetime | None = None

    def readings_per_second(self) -> float | None:
        """Rows landed (loaded or quarantined) per second, from the first reading measured to the last loaded."""
        if self.first_measured is None or self.last_loaded is None:
            return None
        span = (self.last_loaded - self.first_measured).total_seconds()
        return (self.fact_rows + sum(self.quarantine_rows.values())) / span if span > 0 else None

    @property
    def ok(self) -> bool:
        alerts = (self.alerts_missing + self.alerts_unexpected + self.alerts_doubled) if self.alerts_table else 0
        return self.missing == 0 and self.unexpected == 0 and self.doubled == 0 and alerts == 0

    def freshness_at(self, q: float) -> float | None:
        return percentile(self.freshness, q)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def read_journal(directory: Path) -> list[Sent]:
    """Every request of a run's journals; of the lines of one request (device, first attempt) the last wins."""
    entries: dict[tuple[str, float], Sent] = {}
    for path in sorted(directory.glob("journal*.jsonl")):
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    sent = Sent.from_json(orjson.loads(line))
                    entries[(sent.device_id, sent.sent_at)] = sent
    return list(entries.values())


async def audit_totals(conn: Any) -> AuditTotals:
    row = await conn.fetchrow(
        "SELECT count(*), coalesce(sum(rows_in), 0), coalesce(sum(rows_loaded), 0),"
        " coalesce(sum(rows_quarantined), 0), coalesce(sum(rows_duplicate), 0) FROM load_audit"
        " WHERE pipeline = 'vitals'"
    )
    return AuditTotals(*(int(v) for v in row.values()))


async def _counts(conn: Any, prefix: str) -> tuple[int, int, int]:
    like = prefix + "%"
    fact = await conn.fetchval("SELECT count(*) FROM fact_vitals WHERE device_id LIKE $1", like)
    quarantine = await conn.fetchval("SELECT count(*) FROM vitals_quarantine WHERE device_id LIKE $1", like)
    held = 0
    if await conn.fetchval("SELECT to_regclass('vitals_pending')"):
        held = await conn.fetchval("SELECT count(*) FROM vitals_pending WHERE device_id LIKE $1", like)
    return int(fact), int(quarantine), int(held)


async def wait_drained(
    warehouse_url: str, prefix: str, expected_rows: int, within: float = 120, quiet: float = 20
) -> None:
    """Until the run's rows reach the expected count with nothing held, or nothing changed for ``quiet`` s
    (at most ``within`` s)."""
    conn = await asyncpg.connect(warehouse_url)
    try:
        deadline = time.monotonic() + within
        last: tuple[int, int, int] | None = None
        changed = time.monotonic()
        while time.monotonic() < deadline:
            try:
                counts = await _counts(conn, prefix)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(1)
                conn = await asyncpg.connect(warehouse_url)
                continue
            if counts[0] + counts[1] >= expected_rows and counts[2] == 0:
                return
            if counts != last:
                last, changed = counts, time.monotonic()
            elif time.monotonic() - changed > quiet and counts[2] == 0:
                return  # nothing moves and nothing is held (held readings are released within the hold limit)
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def reconcile(
    name: str,
    journal: list[Sent],
    warehouse_url: str,
    prefix: str,
    audit_before: AuditTotals | None = None,
    wait: float = 120,
) -> Report:
    """Wait for the pipeline to drain (up to ``wait`` s), then compare the warehouse with the truth."""
    truth = expect(journal)
    await wait_drained(warehouse_url, prefix, len(truth.fact) + len(truth.quarantine) - len(truth.uncertain), wait)
    report = Report(name=name, truth=truth)
    conn = await asyncpg.connect(warehouse_url)
    try:
        like = prefix + "%"
        fact = await conn.fetch(
            "SELECT device_id, metric, measured_at, value, loaded_at FROM fact_vitals WHERE device_id LIKE $1", like
        )
        quarantine = await conn.fetch(
            "SELECT device_id, metric, measured_at, value, reason FROM vitals_quarantine WHERE device_id LIKE $1",
            like,
        )
        report.held = (await _counts(conn, prefix))[2]
        if audit_before is not None:
            delta = (await audit_totals(conn)).minus(audit_before)
            report.duplicates_removed, report.audit_rows_in = delta.duplicate, delta.rows_in
        report.alerts_table = bool(await conn.fetchval("SELECT to_regclass('deterioration_alerts')"))
        alerts = []
        if report.alerts_table:
            alerts = await conn.fetch(
                "SELECT patient_id, hour_start, risk, raised_at FROM deterioration_alerts WHERE patient_id LIKE $1",
                like,  # the fleet's patient ids start with the device prefix too (``<prefix>pt-…``)
            )
    finally:
        await conn.close()
    _compare_rows(report, fact, quarantine)
    if report.alerts_table:
        compare_alerts(report, alerts)
    return report


def _compare_rows(report: Report, fact: list[Any], quarantine: list[Any]) -> None:
    truth = report.truth
    seen: Counter[Key] = Counter()
    report.fact_rows = len(fact)
    for row in fact:
        key: Key = (row["device_id"], row["metric"], row["measured_at"])
        seen[key] += 1
        if key in truth.uncertain:
            continue
        expected = truth.fact.get(key)
        if expected is None or abs(float(row["value"]) - expected) > VALUE_TOLERANCE * max(1.0, abs(expected)):
            report.unexpected += 1
            _example(report, f"unexpected fact_vitals row {_show(key)} value={row['value']} expected={expected}")
        if report.first_measured is None or row["measured_at"] < report.first_measured:
            report.first_measured = row["measured_at"]
        if report.last_loaded is None or row["loaded_at"] > report.last_loaded:
            report.last_loaded = row["loaded_at"]
        sent = truth.measured_sent.get(key)
        if sent is not None and not sent[1]:
            report.freshness.append((row["loaded_at"] - row["measured_at"]).total_seconds())
    for row in quarantine:
        key = (row["device_id"], row["metric"], row["measured_at"])
        seen[key] += 1
        report.quarantine_rows[row["reason"]] += 1
        if key in truth.uncertain:
            continue
        if truth.quarantine.get(key) != row["reason"]:
            report.unexpected += 1
            _example(
                report, f"unexpected quarantine row {_show(key)} reason={row['reason']} expected={_place(truth, key)}"
            )
    fact_keys = {(r["device_id"], r["metric"], r["measured_at"]) for r in fact}
    quarantine_keys = {(r["device_id"], r["metric"], r["measured_at"]): r["reason"] for r in quarantine}
    for key in truth.fact:
        if key not in truth.uncertain and key not in fact_keys:
            report.missing += 1
            found = f" (quarantined as {quarantine_keys[key]})" if key in quarantine_keys else ""
            _example(report, f"missing from fact_vitals {_show(key)}{found}")
    for key, reason in truth.quarantine.items():
        if key not in truth.uncertain and quarantine_keys.get(key) != reason:
            report.missing += 1
            _example(report, f"missing from vitals_quarantine ({reason}) {_show(key)}"
                             f"{' (in fact_vitals)' if key in fact_keys else ''}")  # fmt: skip
    report.doubled = sum(count - 1 for count in seen.values() if count > 1)
    for key, count in seen.items():
        if count > 1:
            _example(report, f"doubled x{count} {_show(key)}")
    report.uncertain = len(truth.uncertain)


def compare_alerts(report: Report, alerts: list[Any]) -> None:
    truth = report.truth
    raised: Counter[tuple[str, datetime, str]] = Counter()
    for row in alerts:
        hour = (row["patient_id"], row["hour_start"])
        raised[(*hour, row["risk"])] += 1
        if row["risk"] not in truth.alerts_possible.get(hour, set()):
            report.alerts_unexpected += 1
            _example(report, f"unexpected alert {row['patient_id']} {row['hour_start']:%Y-%m-%dT%H} {row['risk']}")
        reached = truth.alert_reached_at.get((*hour, row["risk"]))
        if reached is not None and row["raised_at"] is not None:
            report.alert_latency.append(row["raised_at"].timestamp() - reached)
    report.alerts_raised = len(alerts)
    report.alerts_doubled = sum(count - 1 for count in raised.values() if count > 1)
    for hour, risk in truth.alerts_required.items():
        satisfied = any(raised.get((*hour, r)) for r in RISK_ORDER if RISK_ORDER[r] >= RISK_ORDER[risk])
        if not satisfied:
            report.alerts_missing += 1
            _example(report, f"missing alert {hour[0]} {hour[1]:%Y-%m-%dT%H} {risk}")


def _place(truth: Truth, key: Key) -> str:
    if key in truth.quarantine:
        return truth.quarantine[key]
    return "fact_vitals" if key in truth.fact else "nowhere"


def _show(key: Key) -> str:
    return f"({key[0]}, {key[1]}, {key[2].isoformat()})"


def _example(report: Report, text: str) -> None:
    if len(report.examples) < 20:
        report.examples.append(text)


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def render(report: Report) -> str:
    """The reconciliation of one run as a two-column table."""
    t = report.truth
    lines = [
        ("requests", f"{t.requests} ({', '.join(f'{k}: {v}' for k, v in sorted(t.status_counts.items()))}"
                     f"{', no answer: ' + str(t.requests_indeterminate) if t.requests_indeterminate else ''})"),
        ("readings sent", str(t.readings_sent)),
        ("accepted", str(t.readings_accepted)),
        ("rejected by code", ", ".join(f"{k} {v}" for k, v in sorted(t.rejects_answered.items())) or "0"),
        ("  (expected)", ", ".join(f"{k} {v}" for k, v in sorted(t.rejects_expected.items())) or "0"),
        ("in fact_vitals", f"{report.fact_rows} (expected {len(t.fact)})"),
        ("quarantined by reason", ", ".join(f"{k} {v}" for k, v in sorted(report.quarantine_rows.items())) or "0"),
        ("  (expected)", ", ".join(f"{k} {v}" for k, v in sorted(Counter(t.quarantine.values()).items())) or "0"),
        ("duplicates removed", f"{na(report.duplicates_removed)} (expected {dup_range(t)})"),
        ("still held", str(report.held)),
        ("uncertain (no answer)", str(report.uncertain)),
        ("MISSING", str(report.missing)),
        ("UNEXPECTED", str(report.unexpected)),
        ("DOUBLED", str(report.doubled)),
        ("freshness p50/p95/max", f"{_fmt(report.freshness_at(0.5))} / {_fmt(report.freshness_at(0.95))} / "
                                  f"{_fmt(max(report.freshness) if report.freshness else None)}"),
        ("alerts expected/raised", _alerts_line(report)),
    ]  # fmt: skip
    width = max(len(label) for label, _ in lines)
    out = [f"reconciliation: {report.name} — {'OK' if report.ok else 'FAILED'}"]
    out += [f"  {label.ljust(width)}  {value}" for label, value in lines]
    if report.examples:
        out.append("  first differences:")
        out += [f"    {example}" for example in report.examples]
    return "\n".join(out)


def dup_range(truth: Truth) -> str:
    """Duplicates the truth knows of, up to those a retry after a lost answer may have added."""
    if truth.duplicates_max > truth.duplicates:
        return f"{truth.duplicates}..{truth.duplicates_max}"
    return str(truth.duplicates)


def na(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _alerts_line(report: Report) -> str:
    t = report.truth
    if not report.alerts_table:
        return f"{len(t.alerts_required)} expected / not available (no deterioration_alerts table)"
    latency = report.alert_latency
    return (
        f"{len(t.alerts_required)} expected / {report.alerts_raised} raised "
        f"(missing {report.alerts_missing}, unexpected {report.alerts_unexpected}, doubled {report.alerts_doubled}; "
        f"latency p50 {_fmt(percentile(latency, 0.5))}, p95 {_fmt(percentile(latency, 0.95))})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--journal", type=Path, required=True, help="directory with the run's journal*.jsonl")
    parser.add_argument("--prefix", required=True, help="device id prefix of the run's fleet")
    parser.add_argument("--warehouse-url", required=True)
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for the pipeline to drain")
    args = parser.parse_args(argv)
    report = asyncio.run(reconcile(args.journal.name, read_journal(args.journal), args.warehouse_url, args.prefix,
                                   wait=args.wait))  # fmt: skip
    print(render(report), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
