"""common/: settings, error classification, device tokens, PHI-safe logging."""

from __future__ import annotations

import io
import json
import logging

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from common.devices import new_token, parse_token, verify
from common.errors import TerminalError, TransientError, classify
from common.logging import JsonFormatter
from common.settings import GatewaySettings, WorkerSettings, env_names, parse_rate


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("ProvisionedThroughputExceededException"), TransientError),
        (_client_error("ThrottlingException"), TransientError),
        (_client_error("InternalFailure", 500), TransientError),
        (_client_error("SlowDown", 503), TransientError),
        (_client_error("ResourceNotFoundException"), TerminalError),
        (_client_error("AccessDeniedException", 403), TerminalError),
        (_client_error("ConditionalCheckFailedException"), TerminalError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientError),
        (_PgError("40001"), TransientError),
        (_PgError("40P01"), TransientError),
        (_PgError("08006"), TransientError),
        (_PgError("57P01"), TransientError),
        (_PgError("23505"), TerminalError),
        (_PgError("42P01"), TerminalError),
        (TimeoutError(), TransientError),
        (ConnectionResetError(), TransientError),
        (TransientError("x"), TransientError),
        (TerminalError("x"), TerminalError),
        (ValueError("bad"), TerminalError),
    ],
)
def test_classify(exc: BaseException, expected: type) -> None:
    assert classify(exc) is expected


def test_settings_read_contract_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALSTREAM_FLUSH_SECONDS", "2")
    monkeypatch.setenv("VITALSTREAM_STREAM", "s1")
    monkeypatch.setenv("VITALSTREAM_WAREHOUSE_URL", "postgresql://u:secret@h/db")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = WorkerSettings()
    assert settings.flush_seconds == 2.0
    assert settings.stream == "s1"
    assert settings.aws_region == "eu-west-1"
    assert "secret" not in repr(settings)
    assert settings.warehouse_url.get_secret_value().endswith("@h/db")
    monkeypatch.setenv("VITALSTREAM_GATEWAY_URL", "http://127.0.0.1:9123")
    assert GatewaySettings().bind() == ("127.0.0.1", 9123)


def test_device_rate_defaults_and_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().rate_and_burst() == (20.0, 40.0)
    assert parse_rate("5") == (5.0, 10.0)
    assert parse_rate("5:7") == (5.0, 7.0)
    monkeypatch.setenv("VITALSTREAM_DEVICE_RATE", "0")
    with pytest.raises(ValueError, match="RATE"):
        GatewaySettings()


def test_env_names_lists_every_variable() -> None:
    names = env_names(WorkerSettings) | env_names(GatewaySettings)
    assert {"VITALSTREAM_GATEWAY_URL", "VITALSTREAM_STREAM", "VITALSTREAM_BUCKET", "VITALSTREAM_WAREHOUSE_URL",
            "VITALSTREAM_FLUSH_SECONDS", "VITALSTREAM_DEVICE_RATE", "AWS_REGION"} <= names  # fmt: skip


def test_token_round_trip_and_tampering() -> None:
    token, salt, digest = new_token("ward-3:bed.12")
    parsed = parse_token(token)
    assert parsed is not None
    device_id, secret = parsed
    assert device_id == "ward-3:bed.12"
    item = {"token_salt": {"S": salt}, "token_hash": {"S": digest}}
    assert verify(item, secret)
    assert not verify(item, secret + "x")
    assert secret not in digest
    for bad in ("", "vst1", "vst1..abc", "vst2.ZGV2.abc", "vst1.!!!.abc", "vst1.ZGV2."):
        assert parse_token(bad) is None


def test_json_logs_drop_everything_but_allow_listed_context() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.phi")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("reading rejected", extra={"device_id": "d1", "value": 187.0, "family_name": "Doe"})
        try:
            raise ValueError("value 187.0 for Jane Doe")
        except ValueError:
            logger.exception("failed", extra={"batch_id": "b1"})
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["device_id"] == "d1"
    assert "value" not in first
    assert "family_name" not in first
    assert second["error_type"] == "ValueError"
    assert "Jane" not in stream.getvalue()
    assert "187" not in stream.getvalue()
