"""Prometheus helpers.

Metrics are created on an explicit registry passed in by the entry point (no import-time
registration), so tests and several apps in one process never collide. Metric names are
listed in ``deploy/METRICS.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def new_registry() -> CollectorRegistry:
    """A fresh registry for one process or one app instance."""
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    healthy: Callable[[], bool] = lambda: True,
    ready: Callable[[], Awaitable[bool]] | None = None,
) -> asyncio.Server:
    """A tiny asyncio HTTP server for ``/metrics``, ``/healthz`` and ``/readyz`` (workers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path.startswith("/metrics"):
                body, ctype = render(registry)
                status = "200 OK"
            elif path.startswith("/healthz"):
                ok = healthy()
                body, ctype, status = (
                    (b"ok\n" if ok else b"unhealthy\n"),
                    "text/plain",
                    ("200 OK" if ok else "503 Service Unavailable"),
                )
            elif path.startswith("/readyz"):
                ok = await ready() if ready else healthy()
                body, ctype, status = (
                    (b"ready\n" if ok else b"not ready\n"),
                    "text/plain",
                    ("200 OK" if ok else "503 Service Unavailable"),
                )
            else:
                body, ctype, status = b"not found\n", "text/plain", "404 Not Found"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
