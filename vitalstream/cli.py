"""The ``vitalstream`` command line (CONTRACT §1). Settings are built here, once per command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitalstream", description="Medical device vitals pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="the local stack").add_subparsers(dest="dev_command", required=True)
    dev_up = dev.add_parser("up", help="start the whole local stack")
    dev_up.add_argument("--detach", action="store_true", help="return once everything is healthy")
    dev_up.add_argument("--fleet", type=int, default=0, help="also run a simulated fleet of N devices")
    dev_up.add_argument("--rate", type=float, default=1.0, help="readings/s per simulated device")
    dev_up.add_argument(
        "--warehouse",
        choices=["postgres", "redshift"],
        default="postgres",
        help="redshift: every worker loads through the Redshift Data API path against the strict stand-in",
    )
    dev.add_parser("env", help="print export lines for the running stack")
    dev.add_parser("status", help="health, lag and warehouse counts")
    dev.add_parser("down", help="stop everything dev up started")

    devices = commands.add_parser("devices", help="device registry").add_subparsers(
        dest="devices_command", required=True
    )
    add = devices.add_parser("add", help="register a device and print its bearer token")
    add.add_argument("device_id")
    add.add_argument("--patient-id", default=None)

    commands.add_parser("gateway", help="serve the ingestion gateway")
    worker = commands.add_parser("worker", help="run one worker process of a pipeline")
    worker.add_argument("pipeline", choices=["vitals", "ehr", "claims"])

    sim = commands.add_parser("simulate", help="a simulated device fleet posting to the gateway")
    sim.add_argument("--devices", type=int, default=10)
    sim.add_argument("--rate", type=float, default=1.0, help="readings per second per device")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds; 0 runs until interrupted")
    sim.add_argument(
        "--register", action="store_true", help="accepted for compatibility: simulated devices are always registered"
    )
    sim.add_argument("--seed", type=int, default=None)

    alerts = commands.add_parser("alerts", help="deterioration alerts").add_subparsers(
        dest="alerts_command", required=True
    )
    alerts_tail = alerts.add_parser("tail", help="print alerts from the alert queue as JSON lines, oldest first")
    alerts_tail.add_argument("--follow", "-f", action="store_true", help="keep printing new alerts")
    warehouse = commands.add_parser("warehouse", help="warehouse maintenance").add_subparsers(
        dest="warehouse_command", required=True
    )
    refresh = warehouse.add_parser("refresh", help="refresh the materialized marts (CONTRACT §10)")
    refresh.add_argument(
        "--every", type=float, default=0.0, metavar="SECONDS", help="keep refreshing at this interval until stopped"
    )

    backfill = commands.add_parser("backfill", help="process objects already in S3")
    backfill.add_argument("pipeline", choices=["vitals", "ehr", "claims"])
    backfill.add_argument("uri", help="s3://bucket/prefix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dev":
        from vitalstream.devstack import stack, status

        if args.dev_command == "up":
            return stack.up(detach=args.detach, fleet=args.fleet, rate=args.rate, warehouse=args.warehouse)
        if args.dev_command == "env":
            return stack.env()
        if args.dev_command == "status":
            return status.status()
        return stack.down()
    if args.command == "devices":
        return asyncio.run(_devices_add(args.device_id, args.patient_id))
    if args.command == "gateway":
        from vitalstream.roles import run_gateway

        return run_gateway()
    if args.command == "worker":
        from vitalstream.roles import run_worker

        return run_worker(args.pipeline)
    if args.command == "simulate":
        from vitalstream.simulate import run_simulation

        return run_simulation(args.devices, args.rate, args.duration, args.seed)
    if args.command == "alerts":
        from vitalstream.alerts import run_tail

        return run_tail(args.follow)
    if args.command == "warehouse":
        from vitalstream.roles import run_refresh

        return run_refresh(args.every)
    if args.command == "backfill":
        from vitalstream.roles import run_backfill

        return run_backfill(args.pipeline, args.uri)
    return 2


async def _devices_add(device_id: str, patient_id: str | None) -> int:
    import re

    from common.aws import ClientFactory
    from common.devices import register_device
    from common.settings import CommonSettings
    from schemas.wire import DEVICE_ID_PATTERN

    for label, value in (("device id", device_id), ("patient id", patient_id)):
        if value is not None and not re.fullmatch(DEVICE_ID_PATTERN, value):
            print(f"invalid {label}: must match {DEVICE_ID_PATTERN}", file=sys.stderr)
            return 2
    settings = CommonSettings()
    async with AsyncExitStack() as stack:
        dynamodb = await stack.enter_async_context(ClientFactory(settings.aws_region).client("dynamodb"))
        token = await register_device(dynamodb, settings.device_table, device_id, patient_id)
    print(token)
    return 0
