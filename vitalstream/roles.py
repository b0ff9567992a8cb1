"""Entry points of the long-running roles; each builds its settings once and runs."""

from __future__ import annotations


def run_gateway() -> int:
    from service.main import main

    return main()


def run_worker(pipeline: str) -> int:
    from workers.main import main

    return main(pipeline)


def run_backfill(pipeline: str, uri: str, concurrency: int = 4) -> int:
    from workers.backfill import main

    return main(pipeline, uri, concurrency)


def run_refresh(every: float = 0.0) -> int:
    """``vitalstream warehouse refresh [--every S]``: refresh the materialized marts once, or every ``S`` s."""
    from vitalstream.refresh import main

    return main(every)
