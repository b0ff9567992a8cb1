"""The gateway's Prometheus collectors (names listed in ``deploy/METRICS.md``).

Created on an injected registry so that several apps (tests, benchmarks) never share state.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics import LATENCY_BUCKETS

PUT_LATENCY_BUCKETS = (0.001, 0.0025, *LATENCY_BUCKETS)


class GatewayMetrics:
    """Every collector of the gateway, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "vitalstream_gateway_requests_total",
            "HTTP requests to POST /v1/vitals by response status.",
            ["status"],
            registry=registry,
        )
        self.readings_accepted = Counter(
            "vitalstream_gateway_readings_accepted_total",
            "Readings durably written to the stream.",
            registry=registry,
        )
        self.readings_rejected = Counter(
            "vitalstream_gateway_readings_rejected_total",
            "Readings rejected by validation, by reject code.",
            ["code"],
            registry=registry,
        )
        self.put_latency = Histogram(
            "vitalstream_gateway_put_latency_seconds",
            "Duration of one PutRecords call.",
            buckets=PUT_LATENCY_BUCKETS,
            registry=registry,
        )
        self.put_retries = Counter(
            "vitalstream_gateway_put_retries_total",
            "Records sent again after a failed entry or a failed PutRecords call.",
            registry=registry,
        )
        self.put_throttles = Counter(
            "vitalstream_gateway_put_throttles_total",
            "Records refused with ProvisionedThroughputExceededException.",
            registry=registry,
        )
        self.auth_refused = Counter(
            "vitalstream_gateway_auth_refused_total",
            "Requests refused (429) because their source address exceeded its failed-authentication budget.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "vitalstream_gateway_queue_depth",
            "Records waiting for or in a PutRecords call.",
            registry=registry,
        )
