"""aiobotocore client factory.

Endpoints come from the standard variables botocore honours (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``), so the same code talks to AWS or to the local emulators.
Clients live for the process: open them in an ``AsyncExitStack`` and pass them down.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from common.faults import install_faults


def client_config(*, max_pool_connections: int = 50, max_attempts: int = 3) -> AioConfig:
    """The botocore config every client uses: bounded pool, standard retries, path-style S3 on emulators."""
    s3: dict[str, Any] = {}
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        s3["addressing_style"] = "path"
    return AioConfig(
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        s3=s3 or None,
    )


class ClientFactory:
    """Creates aiobotocore clients for one region with one shared session."""

    def __init__(self, region: str, session: AioSession | None = None, faults: str | None = None) -> None:
        """``faults``: a test-only fault spec (``VITALSTREAM_TEST_FAULTS``, see :mod:`common.faults`);
        refused unless the local stack's endpoints are in use."""
        self.region = region
        self.session = session or get_session()
        install_faults(self.session, faults)

    def client(self, service: str, **config: Any) -> AbstractAsyncContextManager[Any]:
        """An async context manager yielding a client for ``service`` (``kinesis``, ``s3``…)."""
        session: Any = self.session  # the typed stubs overload per service name
        return session.create_client(  # type: ignore[no-any-return]
            service, region_name=self.region, config=client_config(**config)
        )
