"""SIGTERM/SIGINT -> a stop event and a grace deadline.

The first signal sets :attr:`Shutdown.stop_event` and starts the grace period; the runner then stops
fetching, flushes, commits, checkpoints and releases leases, and ``main`` cancels whatever is still running
when the deadline passes. A second signal shortens the deadline to "now" (an impatient operator).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """Signal handling for one event loop."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stop_event = asyncio.Event()
        self.deadline: float | None = None  # time.monotonic() by which the process must have exited
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Route SIGTERM and SIGINT of this process to :meth:`request` (main thread only)."""
        self._loop = loop or asyncio.get_running_loop()
        for sig in SIGNALS:
            self._loop.add_signal_handler(sig, self.request, sig.name)

    def uninstall(self) -> None:
        if self._loop is not None:
            for sig in SIGNALS:
                self._loop.remove_signal_handler(sig)
            self._loop = None

    def request(self, reason: str = "request") -> None:
        """Ask for a graceful stop (idempotent; a repeated request makes the deadline immediate)."""
        now = time.monotonic()
        if self.stop_event.is_set():
            self.deadline = now
            log.warning("second stop request: stopping now", extra={"reason": reason})
            return
        self.deadline = now + self.grace_seconds
        log.info("stop requested: draining", extra={"reason": reason})
        self.stop_event.set()

    def remaining(self) -> float:
        """Seconds left in the grace period (infinite before a stop was requested)."""
        if self.deadline is None:
            return float("inf")
        return max(0.0, self.deadline - time.monotonic())
