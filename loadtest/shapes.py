"""Load shapes for locust: ``steady``, ``ramp`` and ``spike`` (``LOADTEST_SHAPE``), bounded in time.

Pure (no locust import: the runner reads :data:`SHAPES` without monkey-patching); the locustfile's
``FleetShape`` follows :func:`users_at`. ``LOADTEST_USERS`` is the peak number of users (devices),
``LOADTEST_DURATION`` the run's length in seconds.

- steady: all users from the start (spawned within ~5 s) until the end;
- ramp: from a tenth to all users over the first 70 % of the run, then held;
- spike: a third of the users, all of them for the middle fifth of the run, then a third again.
"""

from __future__ import annotations

SHAPES = ("steady", "ramp", "spike")


def users_at(shape: str, elapsed: float, users: int, duration: float) -> int | None:
    """Users wanted ``elapsed`` s into a run of ``duration`` s; None when the run is over."""
    if elapsed >= duration:
        return None
    if shape == "steady":
        return users
    if shape == "ramp":
        start = max(1, users // 10)
        progress = min(1.0, elapsed / (0.7 * duration))
        return start + round((users - start) * progress)
    if shape == "spike":
        base = max(1, users // 3)
        return users if 0.4 * duration <= elapsed < 0.6 * duration else base
    raise ValueError(f"unknown load shape {shape!r} (known: {', '.join(SHAPES)})")
