"""Type stub of the compiled ``service._fastpath`` (``service/_fastpath.c``)."""

from typing import Any

def body_envelope(
    body: bytes,
    device_id: str,
    patient_json: bytes,
    latest_us: int,
    prefix: bytes,
    conversions: dict[str, dict[str | None, tuple[str, str, str, float, float, bytes, bytes, bytes]]],
    message_id_max: int,
    max_readings: int,
    head: bytes,
    /,
) -> tuple[bytes, int] | None: ...
def columns(
    items: list[Any],
    device_id: str,
    patient_id: str | None,
    latest_us: int,
    prefix: bytes,
    conversions: dict[str, dict[str | None, tuple[str, str, str, float, float, bytes, bytes, bytes]]],
    message_id_max: int,
    /,
) -> tuple[list[str], list[str | None], list[str], list[str], list[float], list[str], list[int]] | None: ...
def message_id(prefix: bytes, metric: str, measured_at_us: int, value: float, /) -> str: ...
