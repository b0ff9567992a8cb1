"""Type stub of the compiled ``service._fastpath`` (``service/_fastpath.c``)."""

from collections.abc import Iterator, Mapping
from typing import Any, final

Entry = tuple[str, str, str, float, float, bytes, bytes, bytes]

@final
class ConversionTable:
    """Read-only: ``table[metric]`` is a mappingproxy of {unit or None: entry}."""

    def __getitem__(self, metric: str, /) -> Mapping[str | None, Entry]: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...

def conversion_table(conversions: dict[str, dict[str | None, Entry]], /) -> ConversionTable: ...
def body_envelope(
    body: bytes,
    device_id: str,
    patient_json: bytes,
    earliest_us: int,
    latest_us: int,
    prefix: bytes,
    conversions: ConversionTable,
    message_id_max: int,
    max_readings: int,
    head: bytes,
    /,
) -> tuple[bytes, int] | None: ...
def columns(
    items: list[Any],
    device_id: str,
    patient_id: str | None,
    earliest_us: int,
    latest_us: int,
    prefix: bytes,
    conversions: ConversionTable,
    message_id_max: int,
    /,
) -> tuple[list[str], list[str | None], list[str], list[str], list[float], list[str], list[int]] | None: ...
def message_id(prefix: bytes, metric: str, measured_at_us: int, value: float, /) -> str: ...
