"""Deterioration alerts of the vitals pipeline: publish after the commit, and a periodic pass for leftovers.

The warehouse rows of ``deterioration_alerts`` are a transactional outbox: written in the batch's transaction
(``published_at`` null), published to SNS after the commit (:meth:`AlertPublisher.after_commit`), then marked
published. Whatever stays unpublished (SNS down, the worker killed between commit and publish) is published by
:meth:`AlertPublisher.run`'s passes: every ``interval_s`` the alerts raised more than ``grace_s`` ago and still
unpublished, with exponential backoff (to ``max_backoff_s``) while publishing fails. Delivery is at least
once; consumers dedupe by ``alert_id``. Each pass also sets the outbox-age gauge (age of the oldest
unpublished alert; the Prometheus rule fires past 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter, Gauge

from workers.sinks.alerts_sns import AlertsSns
from workers.warehouse.vitals_types import LoadOutcome

__all__ = ["AlertMetrics", "AlertOutbox", "AlertPublisher"]

log = logging.getLogger(__name__)


class AlertOutbox(Protocol):
    async def unpublished(self, raised_before_us: int, limit: int = 500) -> pa.Table:
        """Unpublished alerts raised before ``raised_before_us`` (``news2_sql.ALERT_ROWS``), oldest first."""
        ...

    async def oldest_unpublished(self) -> float | None:
        """``raised_at`` (epoch s) of the oldest unpublished alert, ``None`` if there is none."""
        ...

    async def mark_published(self, alert_ids: list[str]) -> None: ...


class AlertMetrics:
    """NEWS2 and alert telemetry (names in deploy/METRICS.md)."""

    def __init__(self, registry: CollectorRegistry, pipeline: str = "vitals") -> None:
        self.pipeline = pipeline
        self.registry = registry
        self.scored = Counter(
            "vitalstream_worker_news2_scored_total",
            "Patient-hours whose NEWS2 was computed",
            ["pipeline"],
            registry=registry,
        )
        self.raised = Counter(
            "vitalstream_worker_alerts_raised_total",
            "Deterioration alerts raised",
            ["pipeline", "risk"],
            registry=registry,
        )
        self.published = Counter(
            "vitalstream_worker_alerts_published_total",
            "Deterioration alerts published to SNS",
            ["pipeline"],
            registry=registry,
        )
        self.failures = Counter(
            "vitalstream_worker_alert_publish_failures_total",
            "Alerts whose publish failed (retried later)",
            ["pipeline"],
            registry=registry,
        )
        self.outbox_age = Gauge(
            "vitalstream_worker_alert_outbox_age_seconds",
            "Age of the oldest unpublished deterioration alert (0 if none)",
            ["pipeline"],
            registry=registry,
        )
        self.outbox_age.labels(pipeline).set(0)


class AlertPublisher:
    """Publishes the outbox's alerts through ``sink`` (``None``: no topic configured, alerts stay unpublished)."""

    def __init__(
        self,
        outbox: AlertOutbox,
        sink: AlertsSns | None,
        metrics: AlertMetrics,
        *,
        interval_s: float = 2.0,
        grace_s: float = 5.0,
        max_backoff_s: float = 60.0,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.metrics = metrics
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.max_backoff_s = max_backoff_s
        self.publish_timeout_s = publish_timeout_s

    async def after_commit(self, outcome: LoadOutcome) -> None:
        """Account the batch's NEWS2 work and publish the alerts it raised (failures are left to the passes)."""
        m = self.metrics
        if outcome.news2_scored:
            m.scored.labels(m.pipeline).inc(outcome.news2_scored)
        raised = outcome.raised
        if raised is None or raised.num_rows == 0:
            return
        for risk in ("medium", "high"):
            count = int(pc.sum(pc.equal(raised.column("risk"), risk)).as_py() or 0)
            if count:
                m.raised.labels(m.pipeline, risk).inc(count)
        try:
            await self.publish(raised)
        except Exception as exc:  # committed already: the periodic pass publishes it
            log.warning("alert publish after commit failed", extra={"error_type": type(exc).__name__})

    async def publish(self, alerts: pa.Table) -> bool:
        """Publish ``alerts`` and mark the accepted ones published; ``True`` if every one was."""
        if self.sink is None or alerts.num_rows == 0:
            return self.sink is not None
        m = self.metrics
        try:
            outcome = await asyncio.wait_for(self.sink.publish(alerts), self.publish_timeout_s)
        except TimeoutError:
            m.failures.labels(m.pipeline).inc(alerts.num_rows)
            return False
        if outcome.failed:
            m.failures.labels(m.pipeline).inc(outcome.failed)
            log.warning("alerts not published", extra={"count": outcome.failed, "error_type": outcome.error})
        if outcome.accepted:
            await self.outbox.mark_published(outcome.accepted)
            m.published.labels(m.pipeline).inc(len(outcome.accepted))
        return outcome.failed == 0

    async def pass_once(self, now_s: float | None = None) -> bool:
        """Publish leftovers raised more than ``grace_s`` ago and set the outbox age; ``True`` if all went."""
        now_s = now_s if now_s is not None else time.time()
        ok = True
        while True:
            leftovers = await self.outbox.unpublished(int((now_s - self.grace_s) * 1_000_000))
            if leftovers.num_rows == 0:
                break
            if not await self.publish(leftovers):
                ok = False
                break
        oldest = await self.outbox.oldest_unpublished()
        self.metrics.outbox_age.labels(self.metrics.pipeline).set(0 if oldest is None else max(0.0, now_s - oldest))
        return ok

    async def run(self) -> None:
        """Passes forever: every ``interval_s``, backing off (doubling, to ``max_backoff_s``) while they fail."""
        delay = self.interval_s
        while True:
            try:
                ok = await self.pass_once()
            except Exception as exc:  # the warehouse or SNS may be briefly unreachable
                log.warning("alert publish pass failed", extra={"error_type": type(exc).__name__})
                ok = False
            delay = self.interval_s if ok else min(self.max_backoff_s, delay * 2)
            await asyncio.sleep(delay)
