"""``vitalstream warehouse refresh [--every SECONDS]``: the materialized marts of CONTRACT §10, brought up to date.

Once (the default; deployments schedule it) or in a loop (``dev up`` runs ``--every 60``). Prints one line per
refresh: the views refreshed and the time taken. A failed refresh in a loop is reported and retried at the
next tick; run once, it exits non-zero (1 for a transient failure, 2 for a terminal one).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

from common.errors import TerminalError, TransientError
from common.settings import WorkerSettings


async def _once(settings: WorkerSettings) -> list[str]:
    from workers.warehouse.refresh import refresh_marts

    return await refresh_marts(settings.warehouse_url.get_secret_value(), region=settings.aws_region)


async def _loop(settings: WorkerSettings, every: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        started = time.monotonic()
        try:
            views = await _once(settings)
            print(f"refreshed {', '.join(views)} in {time.monotonic() - started:.2f}s", flush=True)
        except (TransientError, TerminalError) as exc:
            print(
                f"refresh failed ({type(exc).__name__}): {exc}; retrying in {every:.0f}s", file=sys.stderr, flush=True
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, every - (time.monotonic() - started)))
    return 0


def main(every: float = 0.0) -> int:
    settings = WorkerSettings()
    if every > 0:
        return asyncio.run(_loop(settings, every))
    started = time.monotonic()
    try:
        views = asyncio.run(_once(settings))
    except TransientError as exc:
        print(f"refresh failed, try again: {exc}", file=sys.stderr)
        return 1
    except TerminalError as exc:
        print(f"refresh failed: {exc}", file=sys.stderr)
        return 2
    print(f"refreshed {', '.join(views)} in {time.monotonic() - started:.2f}s")
    return 0
