"""Raw archive sink: the batch's records exactly as received, gzip JSON Lines, by arrival hour.

Contract: one object per (batch, arrival hour) at ``layout.raw_key``; each line is one record's bytes as
received (envelopes are single-line JSON). The gzip stream is deterministic (no timestamp), so a replay
writes identical objects at identical keys.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence
from typing import Any

from common.s3 import put_object
from workers.sinks.layout import HOUR_US, raw_key

__all__ = ["RawArchiveS3", "encode_raw"]


def encode_raw(payloads: Sequence[bytes]) -> bytes:
    """Gzip JSON Lines of ``payloads`` (deterministic bytes)."""
    return gzip.compress(b"".join(p.rstrip(b"\n") + b"\n" for p in payloads), compresslevel=1, mtime=0)


class RawArchiveS3:
    """Writes raw records to ``raw/<pipeline_path>/dt=/hour=/<batch_id>.jsonl.gz``."""

    def __init__(self, s3: Any, bucket: str, *, kms_key_id: str | None = None, pipeline_path: str = "iot/vitals"):
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.pipeline_path = pipeline_path

    async def write(self, batch_id: str, records: Sequence[tuple[bytes, int]]) -> list[str]:
        """Archive ``(data, arrived_at_us)`` records; returns the keys written."""
        by_hour: dict[int, list[bytes]] = {}
        for data, arrived_at_us in records:
            by_hour.setdefault(arrived_at_us // HOUR_US, []).append(data)
        keys: list[str] = []
        for hour, payloads in sorted(by_hour.items()):
            key = raw_key(self.pipeline_path, batch_id, hour * HOUR_US)
            body = await asyncio.to_thread(encode_raw, payloads)
            await put_object(
                self.s3, self.bucket, key, body, content_type="application/x-ndjson", kms_key_id=self.kms_key_id
            )
            keys.append(key)
        return keys
