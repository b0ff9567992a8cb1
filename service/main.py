"""``vitalstream gateway``: settings built once, JSON logs, uvicorn on ``settings.bind()``.

SIGTERM/SIGINT: uvicorn stops accepting connections and lets in-flight requests finish (they wait for
their PutRecords acknowledgement) for up to the retry budget plus a margin; then the lifespan drains the
producer and closes the clients.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from common.logging import configure_logging
from common.settings import GatewaySettings
from service.app import create_app

SHUTDOWN_MARGIN_SECONDS = 5.0
KEEP_ALIVE_SECONDS = 5


def server_config(app: Any, host: str, port: int, graceful_timeout: int) -> uvicorn.Config:
    """How the gateway is served: no ``Server`` banner (CONTRACT §2), a read timeout for idle and slow
    connections (``timeout_keep_alive``; h11/httptools bound the header size), no access log (the request log is
    the gateway's own)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=graceful_timeout,
    )


def main() -> int:
    """Serve the gateway until SIGTERM/SIGINT; returns the process exit code."""
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    host, port = settings.bind()
    graceful = int(settings.put_retry_budget_seconds + SHUTDOWN_MARGIN_SECONDS)
    server = uvicorn.Server(server_config(create_app(settings), host, port, graceful))
    server.run()
    return 0 if server.started else 1
