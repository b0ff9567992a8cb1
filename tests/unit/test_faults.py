"""Test-only fault injection (common/faults.py): parsed strictly, refused outside the local stack."""

from __future__ import annotations

import pytest

from common.aws import ClientFactory
from common.faults import FaultsRefused, check_local, install_faults, parse_spec
from common.settings import GatewaySettings, WorkerSettings

LOCAL = {"AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567", "AWS_ENDPOINT_URL_S3": "http://localhost:5000"}


def test_spec_is_parsed_strictly() -> None:
    assert parse_spec("kinesis=0.3,s3=0.3") == ({"kinesis": 0.3, "s3": 0.3}, None)
    assert parse_spec("s3=0.5, seed=7") == ({"s3": 0.5}, 7)
    for bad in ("dynamodb=0.3", "kinesis", "kinesis=1.5", "s3=-0.1"):
        with pytest.raises(ValueError, match="fault"):
            parse_spec(bad)


@pytest.mark.parametrize(
    "environ",
    [
        {},  # real AWS
        {"AWS_ENDPOINT_URL_KINESIS": "https://kinesis.us-east-1.amazonaws.com", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"},
        {"AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567"},  # S3 would be real AWS
        {"AWS_ENDPOINT_URL": "http://10.0.0.5:4566"},
    ],
)  # fmt: skip
def test_a_production_process_refuses_faults(environ: dict[str, str]) -> None:
    with pytest.raises(FaultsRefused, match="local stack only"):
        check_local(["kinesis", "s3"], environ)


def test_faults_are_installed_on_the_local_stack_only(monkeypatch: pytest.MonkeyPatch) -> None:
    check_local(["kinesis", "s3"], LOCAL)
    check_local(["s3"], {"AWS_ENDPOINT_URL": "http://[::1]:5000"})
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FaultsRefused):
        ClientFactory("us-east-1", faults="kinesis=0.3")  # the gateway and workers build this at start-up
    assert install_faults(object(), None) is None
    ClientFactory("us-east-1", faults=None)


def test_the_setting_reaches_gateway_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALSTREAM_TEST_FAULTS", "kinesis=0.3,s3=0.3")
    assert GatewaySettings().test_faults == "kinesis=0.3,s3=0.3"
    assert WorkerSettings().test_faults == "kinesis=0.3,s3=0.3"
