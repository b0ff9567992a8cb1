"""Column validators of the batch feeds: exact outputs, exact failures (reason and detail) and boundaries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from workers.formats.common import RowChecks
from workers.formats.values import (
    _slow_timestamp,
    iso_date,
    luhn_npi_ok,
    matches,
    max_bytes,
    money,
    npi,
    positive_int,
    required,
    rfc3339,
    safe_harbor_postal_code,
)

UTC = dt.UTC


def run(check: Callable[..., Any], values: list[str | None], *args: Any) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """(converted values, (reason, detail) per row) of one validator over ``values``."""
    checks = RowChecks(len(values))
    out = check(checks, pa.array(values, pa.string()), "col", *args)
    reason, detail = checks.reasons()
    got = out.to_pylist() if out is not None else []
    return got, list(zip(reason.to_pylist(), detail.to_pylist(), strict=True))


OK = (None, None)


def test_required() -> None:
    assert run(required, ["a", None]) == ([], [OK, ("missing_field", "col: required value is missing")])


def test_max_bytes_counts_utf8_bytes_at_and_past_the_limit() -> None:
    got, why = run(max_bytes, ["abcd", "abcde", "ééa", "éé", None], 4)
    assert got == ["abcd", None, None, "éé", None]
    too_long = ("field_too_long", "col: longer than 4 bytes")
    assert why == [OK, too_long, too_long, OK, OK]


def test_matches() -> None:
    got, why = run(matches, ["ab", "abc", None], r"^[a-z]{2}$", "invalid_x", "two letters")
    assert got == ["ab", None, None]
    assert why == [OK, ("invalid_x", "col: two letters"), OK]


def test_iso_dates_are_calendar_dates() -> None:
    values = ["2000-02-29", "2024-02-29", "1900-02-29", "2100-02-29", "2023-02-29", "2023-02-28", "2023-04-30",
              "2023-04-31", "2023-12-31", "2023-01-31", "2023-13-01", "2023-1-01", "20230101", None]  # fmt: skip
    got, why = run(iso_date, values)
    bad = ("invalid_date", "col: not an ISO 8601 date (YYYY-MM-DD)")
    d = dt.date
    assert got == [d(2000, 2, 29), d(2024, 2, 29), None, None, None, d(2023, 2, 28), d(2023, 4, 30), None,
                   d(2023, 12, 31), d(2023, 1, 31), None, None, None, None]  # fmt: skip
    assert why == [OK, OK, bad, bad, bad, OK, OK, bad, OK, OK, bad, bad, bad, OK]


def test_rfc3339_timestamps() -> None:
    values = ["2026-01-01T08:00:00Z", "2026-01-01t08:00:00z", "2026-01-01 08:00:00.1234567+05:30",
              "2024-02-29T23:59:59-01:00", "2023-02-29T00:00:00Z", "2026-01-01T08:00:00", "2026-01-01T24:00:00Z",
              None]  # fmt: skip
    got, why = run(rfc3339, values)
    bad = ("invalid_timestamp", "col: not an RFC 3339 timestamp with offset")
    assert got == [
        dt.datetime(2026, 1, 1, 8, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 8, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 2, 30, 0, 123456, tzinfo=UTC),
        dt.datetime(2024, 3, 1, 0, 59, 59, tzinfo=UTC),
        None, None, None, None,
    ]  # fmt: skip
    assert why == [OK, OK, OK, OK, bad, bad, bad, OK]


def test_leap_years_use_the_whole_year() -> None:
    got, why = run(iso_date, ["1600-02-29", "1700-02-29"])  # 1600 is divisible by 400 (600 is not), 1700 by 100 only
    assert got == [dt.date(1600, 2, 29), None]
    assert why == [OK, ("invalid_date", "col: not an ISO 8601 date (YYYY-MM-DD)")]


def test_slow_timestamp_fallback() -> None:
    assert _slow_timestamp(None) is None
    converted = _slow_timestamp("2026-01-01T08:00:00+01:00")
    assert converted == dt.datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert converted is not None
    assert converted.tzinfo is UTC
    assert _slow_timestamp("not a time") is None


def test_positive_int_bounds() -> None:
    got, why = run(positive_int, ["1", "0001", "999999999", "0", "1000000000", "-1", "1.0", None])
    bad = ("invalid_number", "col: not a positive integer")
    assert got == [1, 1, 999_999_999, None, None, None, None, None]
    assert why == [OK, OK, OK, bad, bad, bad, bad, OK]


def test_money_digits_sign_and_scale() -> None:
    got, why = run(money, ["12.3", "-5", "+5.", "9999999999.99", "10000000000", "1.234", "1,00", None])
    bad = ("invalid_amount", "col: not a decimal amount with up to 10 digits and 2 decimals")
    assert got == [Decimal("12.30"), Decimal("-5.00"), Decimal("5.00"), Decimal("9999999999.99"), None, None, None,
                   None]  # fmt: skip
    assert why == [OK, OK, OK, OK, bad, bad, bad, OK]
    got, why = run(money, ["123.4", "12345"], 5, 1)
    assert got == [Decimal("123.4"), None]
    assert why == [OK, ("invalid_amount", "col: not a decimal amount with up to 4 digits and 1 decimals")]


def test_npi_shape_and_check_digit() -> None:
    got, why = run(npi, ["1234567893", "1234567890", "123", None])
    assert got == ["1234567893", None, None, None]
    assert why == [OK, ("invalid_npi", "col: check digit does not match (Luhn, prefix 80840)"),
                   ("invalid_npi", "col: not 10 digits"), OK]  # fmt: skip


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        (pa.array([], pa.string()), []),
        (pa.array(["1234567893", None, "1234567890", "1245319599"]), [True, None, False, True]),
        (pa.array(["x", "1234567893", "1245319599"]).slice(1), [True, True]),
        (pa.array(["1234567893", "1245319599", "x"]).slice(0, 2), [True, True]),  # bytes follow the slice
        (pa.array(["1234567893", "x"]).slice(0, 1), [True]),  # a short value just past the slice is not read
        (pa.chunked_array([["1234567893"], ["1234567890", None]]), [True, False, None]),
        (pa.array(["1234567893", "123", None]), [False, False, None]),
    ],
)
def test_luhn_npi_ok(values: pa.Array | pa.ChunkedArray, ok: list[bool | None]) -> None:
    got = luhn_npi_ok(values)
    assert got.to_pylist() == ok
    assert got.type == pa.bool_()  # also when empty


def test_luhn_npi_ok_doubles_fives() -> None:
    """A doubled 5 is 10 -> 1 (digit sum) and a doubled 9 is 18 -> 9; the 10th digit is never doubled."""
    values = ["5000000005", "5000000006", "9000000007", "9000000008", "0000000006", "0000000055"]
    assert luhn_npi_ok(pa.array(values)).to_pylist() == [True, False, True, False, True, True]


def test_safe_harbor_postal_codes() -> None:
    values = ["94110", " 94110 ", "03601", "12345-6789", "123456789", "123", "893", "1234", "A1B 2C3", "", None]
    assert safe_harbor_postal_code(pa.array(values)).to_pylist() == [
        "941", "941", "000", "123", "123", "123", "000", None, None, None, None
    ]  # fmt: skip
    from_chunks = safe_harbor_postal_code(pa.chunked_array([["94110"], ["05901"]]))
    assert isinstance(from_chunks, pa.Array)
    assert from_chunks.to_pylist() == ["941", "000"]
