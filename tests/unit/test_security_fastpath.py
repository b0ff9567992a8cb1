"""The C fast path's own inputs and edges: the frozen conversion table, RFC 3339 exactly and the maximum
reading age in both paths, and the committed fuzz corpus replayed through the fuzzer's differential check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fuzz.fastpath_target import NOW_US, check
from service import fastpath
from service._fastpath import ConversionTable, body_envelope, columns, conversion_table
from service.fastpath import fast_body_envelope, fast_envelope
from service.validate import DEFAULT_MAX_READING_AGE_US, FUTURE_TOLERANCE_US, validate_readings

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
DEVICE = "dev-1"
GOOD: dict[str, Any] = {"device_id": DEVICE, "metric": "heart_rate", "value": 72, "measured_at": "2026-01-01T11:59:00Z"}
LATEST = NOW_US + FUTURE_TOLERANCE_US
EARLIEST = NOW_US - DEFAULT_MAX_READING_AGE_US
PREFIX = b"\x00" * 16 + DEVICE.encode() + b"|"
ENTRY = ("heart_rate", "8867-4", "/min", -0.0, 1.0, b'"heart_rate"', b'"8867-4"', b'"/min"')


@pytest.mark.parametrize("seed", sorted(CORPUS.iterdir()), ids=lambda path: path.name)
def test_the_fuzz_corpus_agrees_with_the_reference_path(seed: Path) -> None:
    check(seed.read_bytes())


def test_the_corpus_is_committed() -> None:
    assert len(list(CORPUS.iterdir())) >= 50


def paths(reading: dict[str, Any]) -> tuple[object, object, list[str]]:
    """(body path, columns path, reference reject codes) for a one-reading request."""
    body = orjson.dumps({"readings": [reading]})
    from_body = fast_body_envelope(body, DEVICE, "pat-1", "r", NOW_US, LATEST)
    from_columns = fast_envelope([reading], DEVICE, "pat-1", "r", NOW_US, LATEST)
    _, rejected = validate_readings([reading], DEVICE, NOW_US)
    return from_body, from_columns, [r.code for r in rejected]


@pytest.mark.parametrize(
    ("stamp", "code"),
    [
        ("2026-01-01T00:00:00+00:99", "invalid_timestamp"),
        ("2026-01-01T00:00:00-05:60", "invalid_timestamp"),
        ("2026-01-01T00:00:00+24:00", "invalid_timestamp"),
        ("2026-01-01T00:00:00.1234567\u0662+00:00", "invalid_timestamp"),
        ("2026-01-01T00:00:00.\u0661\u0662Z", "invalid_timestamp"),
        ("0001-01-01T00:00:00Z", "stale_timestamp"),
        ("1970-01-01T00:00:00Z", "stale_timestamp"),
        ("2025-12-02T11:59:59.999999Z", "stale_timestamp"),
    ],
)
def test_both_paths_refuse_odd_offsets_non_ascii_digits_and_stale_readings(stamp: str, code: str) -> None:
    from_body, from_columns, codes = paths({**GOOD, "measured_at": stamp})
    assert (from_body, from_columns, codes) == (None, None, [code])


@pytest.mark.parametrize("stamp", ["2026-01-01T00:00:00+23:59", "2025-12-02T12:00:00Z", "2026-01-01T10:59:00-00:59"])
def test_both_paths_take_the_edges_that_are_valid(stamp: str) -> None:
    from_body, from_columns, codes = paths({**GOOD, "measured_at": stamp})
    assert from_body is not None
    assert from_columns is not None
    assert codes == []


def test_the_maximum_reading_age_is_passed_to_both_paths() -> None:
    hour = 3_600_000_000
    reading = {**GOOD, "measured_at": "2026-01-01T10:59:00Z"}
    body = orjson.dumps(reading)
    assert fast_body_envelope(body, DEVICE, None, "r", NOW_US, LATEST) is not None
    assert fast_body_envelope(body, DEVICE, None, "r", NOW_US, LATEST, NOW_US - hour) is None
    assert fast_envelope([reading], DEVICE, None, "r", NOW_US, LATEST, NOW_US - hour) is None
    assert fast_envelope([reading], DEVICE, None, "r", NOW_US, LATEST, NOW_US - 2 * hour) is not None


def test_the_conversion_table_is_frozen() -> None:
    table = fastpath._CONVERSIONS
    assert isinstance(table, ConversionTable)
    by_unit = table["heart_rate"]
    assert by_unit[None][0] == "heart_rate"
    with pytest.raises(TypeError):
        table["heart_rate"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        by_unit[None] = ENTRY  # type: ignore[index]
    with pytest.raises(TypeError):
        ConversionTable()  # type: ignore[call-arg]
    assert "heart_rate" in list(table)
    assert len(table) == len(list(table))


def test_the_conversion_table_is_a_copy_that_a_change_of_its_source_cannot_reach() -> None:
    source = {"heart_rate": {None: ENTRY}}
    table = conversion_table(source)
    body = orjson.dumps(GOOD)
    before = body_envelope(body, DEVICE, b"null", EARLIEST, LATEST, PREFIX, table, 128, 1000, b"{")
    source["heart_rate"][None] = ("heart_rate", "8867-4", "/min", 0.0, 2.0, b'"x"', b'"y"', b'"z"')
    after = body_envelope(body, DEVICE, b"null", EARLIEST, LATEST, PREFIX, table, 128, 1000, b"{")
    assert before is not None
    assert after == before
    found = columns([dict(GOOD)], DEVICE, None, EARLIEST, LATEST, PREFIX, table, 128)
    assert found is not None
    assert found[4] == [72.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"heart_rate": {None: ENTRY[:7]}},
        {"heart_rate": {None: (*ENTRY, b"")}},
        {"heart_rate": {None: list(ENTRY)}},
        {"heart_rate": {None: (*ENTRY[:3], 0, 1.0, *ENTRY[5:])}},
        {"heart_rate": {None: (*ENTRY[:5], "text", *ENTRY[6:])}},
        {"heart_rate": {None: (1, *ENTRY[1:])}},
        {"heart_rate": {5: ENTRY}},
        {"heart_rate": [ENTRY]},
        {7: {None: ENTRY}},
    ],
)
def test_a_malformed_conversion_table_is_refused_when_built(bad: Any) -> None:
    with pytest.raises(TypeError):
        conversion_table(bad)


def test_the_paths_take_only_a_conversion_table() -> None:
    with pytest.raises(TypeError):
        columns([dict(GOOD)], DEVICE, None, EARLIEST, LATEST, PREFIX, {"heart_rate": {None: ENTRY}}, 128)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        body_envelope(b"{}", DEVICE, b"null", EARLIEST, LATEST, PREFIX, {}, 128, 1000, b"{")  # type: ignore[arg-type]
