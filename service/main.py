"""``vitalstream gateway``: settings built once, JSON logs, uvicorn on ``settings.bind()``.

SIGTERM/SIGINT: uvicorn stops accepting connections and lets in-flight requests finish (they wait for
their PutRecords acknowledgement) for up to the retry budget plus a margin; then the lifespan drains the
producer and closes the clients.
"""

from __future__ import annotations

import uvicorn

from common.logging import configure_logging
from common.settings import GatewaySettings
from service.app import create_app

SHUTDOWN_MARGIN_SECONDS = 5.0


def main() -> int:
    """Serve the gateway until SIGTERM/SIGINT; returns the process exit code."""
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    host, port = settings.bind()
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=int(settings.put_retry_budget_seconds + SHUTDOWN_MARGIN_SECONDS),
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
