"""Alert sink: deterioration alerts (CONTRACT §9) published to the SNS topic ``VITALSTREAM_ALERT_TOPIC``.

Contract: :func:`alert_message` is the message of one alert, JSON ``{"alert_id", "patient_id", "hour_start",
"risk", "total", "scores": {"rr", "spo2", "sbp", "pulse", "temp"}, "raised_at"}`` with times as RFC 3339 UTC
strings (``Z``); an absent parameter's score is null. :meth:`AlertsSns.publish` sends alerts with
``PublishBatch`` (10 a call) and returns the ids SNS accepted and the failures; a failed entry or call is left
to the caller's next attempt (delivery is at least once; consumers dedupe by ``alert_id``). Messages carry
ids and scores only: no readings' values, no names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from schemas.arrow import NEWS2_PARAMETERS

__all__ = ["AlertsSns", "PublishOutcome", "alert_message", "rfc3339"]

_BATCH = 10  # SNS PublishBatch entries per call


def rfc3339(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_message(row: dict[str, Any]) -> bytes:
    """The published JSON of one alert row (``news2_sql.ALERT_ROWS`` columns)."""
    return orjson.dumps(
        {
            "alert_id": row["alert_id"],
            "patient_id": row["patient_id"],
            "hour_start": rfc3339(row["hour_start"]),
            "risk": row["risk"],
            "total": int(row["total"]),
            "scores": {p: row[f"score_{p}"] for p in NEWS2_PARAMETERS},
            "raised_at": rfc3339(row["raised_at"]),
        }
    )


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """Ids SNS accepted; entries that failed; the type name of the last call error (no message: no PHI)."""

    accepted: list[str]
    failed: int
    error: str | None = None


class AlertsSns:
    """Publishes alert rows to one SNS topic (aiobotocore ``sns`` client, living for the process)."""

    def __init__(self, sns: Any, topic_arn: str) -> None:
        self.sns = sns
        self.topic_arn = topic_arn

    async def publish(self, alerts: pa.Table) -> PublishOutcome:
        """Publish every alert of ``alerts``: the ids SNS accepted, and the number that failed (a failed
        call fails its entries; later calls are still tried)."""
        rows = alerts.to_pylist()
        accepted: list[str] = []
        failed = 0
        error: str | None = None
        for start in range(0, len(rows), _BATCH):
            chunk = rows[start : start + _BATCH]
            entries = [{"Id": str(i), "Message": alert_message(r).decode()} for i, r in enumerate(chunk)]
            try:
                response = await self.sns.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
            except Exception as exc:  # counted and retried by the caller's next pass
                failed += len(chunk)
                error = type(exc).__name__
                continue
            accepted += [chunk[int(ok["Id"])]["alert_id"] for ok in response.get("Successful", [])]
            failed += len(response.get("Failed", []))
        return PublishOutcome(accepted, failed, error)
