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
    devices.add_parser("list", help="one line per device: device_id, patient_id, active|revoked, created")
    revoke = devices.add_parser("revoke", help="revoke a device's token (every gateway refuses it within 30 s)")
    revoke.add_argument("device_id")
    rotate = devices.add_parser("rotate", help="print a new token; the old one stops working within 30 s")
    rotate.add_argument("device_id")

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
    backfill.add_argument("--concurrency", type=int, default=4, help="objects processed at a time (default 4)")
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
        return asyncio.run(_devices(args))
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

        return run_backfill(args.pipeline, args.uri, args.concurrency)
    return 2


async def _devices(args: argparse.Namespace) -> int:
    """``devices add|list|revoke|rotate``: tokens alone on stdout; audit lines (JSON) on stderr."""
    import re

    from common import devices
    from common.aws import ClientFactory
    from common.logging import configure_logging
    from common.settings import CommonSettings
    from schemas.wire import DEVICE_ID_PATTERN

    command = args.devices_command
    for label, value in (
        ("device id", getattr(args, "device_id", None)),
        ("patient id", getattr(args, "patient_id", None)),
    ):
        if value is not None and not re.fullmatch(DEVICE_ID_PATTERN, value):
            print(f"invalid {label}: must match {DEVICE_ID_PATTERN}", file=sys.stderr)
            return 2
    settings = CommonSettings()
    configure_logging(settings.log_level)
    async with AsyncExitStack() as stack:
        dynamodb = await stack.enter_async_context(ClientFactory(settings.aws_region).client("dynamodb"))
        table = settings.device_table
        if command == "add":
            print(await devices.register_device(dynamodb, table, args.device_id, args.patient_id))
        elif command == "list":
            for record in await devices.list_devices(dynamodb, table):
                print(record.line())
        elif command == "revoke":
            try:
                if not await devices.revoke_device(dynamodb, table, args.device_id):
                    print(f"device {args.device_id} was already revoked", file=sys.stderr)
            except devices.UnknownDevice:
                print(f"no device {args.device_id} in the registry", file=sys.stderr)
                return 1
        else:
            try:
                print(await devices.rotate_device(dynamodb, table, args.device_id))
            except devices.UnknownDevice:
                print(f"no active device {args.device_id} (a revoked one is registered again with `devices add`)",
                      file=sys.stderr)  # fmt: skip
                return 1
    return 0
