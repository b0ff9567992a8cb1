"""``make bench``: run every benchmark; each prints its figure as a ratio against a same-run baseline."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = (
    "bench.worker",
    "bench.load",
    "bench.redshift",
    "bench.gateway",
    "bench.freshness",
    "bench.alert_freshness",
    "bench.batchfiles",
    "bench.feeds",
)


def main(argv: list[str]) -> int:
    selected = [name for name in BENCHMARKS if not argv or name.rsplit(".", 1)[1] in argv]
    failed = []
    for name in selected:
        started = time.monotonic()
        print(f"# {name}", flush=True)
        try:
            module = importlib.import_module(name)
            module.run()
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"# {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        print(f"# {name} took {time.monotonic() - started:.0f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
