"""Register a fleet's devices in the device registry of the stack in the environment (``dev env``).

The one module of ``loadtest`` that uses the project's code beyond ``schemas``: tokens are made and
stored exactly as ``vitalstream devices add`` does (``common.devices``), for hundreds of devices at once.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from common.aws import ClientFactory
from common.devices import register_device
from common.settings import CommonSettings
from loadtest.fleet import Device


async def register(fleet: list[Device], concurrency: int = 32) -> dict[str, str]:
    """Device id → bearer token for every device of ``fleet``."""
    settings = CommonSettings()
    semaphore = asyncio.Semaphore(concurrency)
    async with AsyncExitStack() as stack:
        dynamodb = await stack.enter_async_context(ClientFactory(settings.aws_region).client("dynamodb"))

        async def one(device: Device) -> str:
            async with semaphore:
                return await register_device(dynamodb, settings.device_table, device.device_id, device.patient_id)

        tokens = await asyncio.gather(*(one(device) for device in fleet))
    return {device.device_id: token for device, token in zip(fleet, tokens, strict=True)}
