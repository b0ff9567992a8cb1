"""Typed settings read from the environment (CONTRACT §5).

Built once in each entry point (``main()``, ``create_app()``) and passed down; never at import time.
Every environment variable any process reads is a field of one of these classes, so
:func:`env_names` is the single source of truth for deployment manifests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every vitalstream process reads."""

    model_config = SettingsConfigDict(env_prefix="VITALSTREAM_", extra="ignore", frozen=True)

    aws_region: str = Field(default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    stream: str = "vitalstream-vitals"
    bucket: str = "vitalstream-lake"
    device_table: str = "vitalstream-devices"
    lease_table: str = "vitalstream-leases"
    kms_key_id: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    test_faults: str | None = Field(
        default=None, description="test-only AWS fault spec (common.faults); refused outside the local stack"
    )


class GatewaySettings(CommonSettings):
    """Settings of the ingestion gateway (``vitalstream gateway``)."""

    gateway_url: str = "http://127.0.0.1:8080"
    device_rate: str = Field(default="20:40", description="RATE[:BURST] requests/s per device")
    token_cache_seconds: float = Field(default=30.0, gt=0, le=30.0, description="revocation takes effect within it")
    max_reading_age: str = Field(default="30d", description="oldest measured_at accepted, as a duration: 30d, 12h")
    gateway_fastpath: Literal["on", "off"] = Field(default="on", description="off: every request on the reference path")
    body_timeout_seconds: float = Field(default=30.0, gt=0, description="a slower request body gets 408")
    auth_failure_rate: str = Field(
        default="1:20", description="RATE[:BURST] failed authentications/s per source address before 429"
    )
    put_linger_ms: float = 5.0
    put_max_inflight: int = 20_000
    put_retry_budget_seconds: float = 3.0

    @field_validator("device_rate", "auth_failure_rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("max_reading_age")
    @classmethod
    def _check_age(cls, value: str) -> str:
        parse_duration(value)
        return value

    def max_reading_age_us(self) -> int:
        """``max_reading_age`` in microseconds."""
        return round(parse_duration(self.max_reading_age) * 1_000_000)

    def auth_failure_rate_and_burst(self) -> tuple[float, float]:
        return parse_rate(self.auth_failure_rate)

    def rate_and_burst(self) -> tuple[float, float]:
        return parse_rate(self.device_rate)

    def bind(self) -> tuple[str, int]:
        """Host and port the gateway listens on, from ``VITALSTREAM_GATEWAY_URL``."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.gateway_url)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


class WorkerSettings(CommonSettings):
    """Settings of the pipeline workers (``vitalstream worker PIPELINE``)."""

    warehouse_url: SecretStr = SecretStr("postgresql://vitalstream@127.0.0.1:5432/vitalstream")
    flush_seconds: float = 5.0
    flush_max_records: int = 50_000
    flush_max_bytes: int = 32 * 1024 * 1024
    lease_seconds: float = 10.0
    shutdown_grace_seconds: float = 25.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9100
    ehr_queue: str = "vitalstream-ehr"
    claims_queue: str = "vitalstream-claims"
    redshift_iam_role: str | None = None
    spike_hold_seconds: float = 60.0
    alert_topic: str | None = None
    alert_pass_seconds: float = 2.0
    file_chunk_bytes: int = 4 * 1024 * 1024
    """Batch files are read, parsed, staged and written to the lake in chunks of about this many bytes."""
    file_max_ratio: float = 200.0
    """A gzip batch file expanding more than this many times its size is quarantined whole (zip bomb)."""
    file_visibility_seconds: int = 60
    """SQS visibility timeout of the batch-file queues (extended every third of it while a file is in work)."""
    glue_database: str = Field(default="vitalstream", description="Glue database of the lake tables; empty: off")


def parse_rate(value: str) -> tuple[float, float]:
    """Parse ``RATE[:BURST]``; the burst defaults to twice the rate."""
    rate_s, _, burst_s = value.partition(":")
    rate = float(rate_s)
    burst = float(burst_s) if burst_s else 2 * rate
    if rate <= 0 or burst < 1:
        raise ValueError("device rate must be RATE[:BURST] with RATE > 0 and BURST >= 1")
    return rate, burst


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> float:
    """Seconds of a duration ``<number><unit>`` with unit s, m, h, d or w (``30d``, ``12h``, ``90m``)."""
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    try:
        number = float(text[:-1]) if unit is not None else float("nan")
    except ValueError:
        number = float("nan")
    if unit is None or not number > 0 or number == float("inf"):
        raise ValueError("a duration is a positive number with a unit s, m, h, d or w, e.g. 30d or 12h")
    return number * unit


def env_names(settings_cls: type[BaseSettings]) -> set[str]:
    """Every environment variable name a settings class reads."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in settings_cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names
