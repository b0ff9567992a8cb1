"""Container health check of the vitalstream image (Docker HEALTHCHECK and ECS ``healthCheck``).

One image runs either role, so this probes ``/healthz`` on the gateway port (from ``VITALSTREAM_GATEWAY_URL``,
default 8080) and on the worker metrics port (``VITALSTREAM_METRICS_PORT``, default 9100); the container is
healthy when the port its role serves answers 200. Standard library only; exit status 0 or 1.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def _ports() -> list[int]:
    gateway = urlsplit(os.environ.get("VITALSTREAM_GATEWAY_URL", "http://0.0.0.0:8080"))
    gateway_port = gateway.port or (443 if gateway.scheme == "https" else 80)
    metrics_port = int(os.environ.get("VITALSTREAM_METRICS_PORT", "9100"))
    return [gateway_port, metrics_port]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    return 0 if any(_healthy(port) for port in _ports()) else 1


if __name__ == "__main__":
    sys.exit(main())
