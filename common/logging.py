"""JSON logging that never prints reading values or names.

Log records are rendered as one JSON object per line. Only the message and an allow-list of
``extra`` keys (identifiers and counts) are emitted; any other extra key is dropped, so a caller
cannot leak PHI by passing a reading or a patient record as context.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ALLOWED_KEYS = frozenset(
    {
        "request_id",
        "device_id",
        "patient_id",
        "batch_id",
        "shard_id",
        "pipeline",
        "worker_id",
        "status",
        "code",
        "reason",
        "count",
        "accepted",
        "rejected",
        "devices",
        "records",
        "rows_in",
        "rows_loaded",
        "rows_quarantined",
        "rows_duplicate",
        "resources_skipped",
        "chunks",
        "duration_ms",
        "attempt",
        "error_kind",
        "error_type",
        "source_key",
        "line_number",
        "stream",
        "component",
        "port",
        "pid",
        "sequence_number",
        "method",
        "path",
        "action",
    }
)


class JsonFormatter(logging.Formatter):
    """Render a record as a single JSON line with allow-listed context only."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ALLOWED_KEYS:
            if key in record.__dict__:
                payload[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages may quote input values.
            payload["error_type"] = record.exc_info[0].__name__
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Install the JSON formatter on the root logger (call once, from an entry point)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "aiobotocore", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
