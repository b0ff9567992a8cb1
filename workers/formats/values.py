"""Vectorised value checks and conversions for the batch parsers (string column in, typed column out).

Contract: every function takes a trimmed string column where blank is null, records failures on a
:class:`~workers.formats.common.RowChecks` (mask, reason, ``detail`` naming ``label`` but never a value)
and returns the converted column with failing values set to null. Null input is never a failure here
(use :func:`required`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import TIMESTAMP
from workers.formats.common import (
    FIELD_TOO_LONG,
    INVALID_AMOUNT,
    INVALID_DATE,
    INVALID_NPI,
    INVALID_NUMBER,
    INVALID_TIMESTAMP,
    MISSING_FIELD,
    RowChecks,
)

__all__ = [
    "SAFE_HARBOR_RESTRICTED_ZIP3",
    "iso_date",
    "luhn_npi_ok",
    "matches",
    "max_bytes",
    "money",
    "npi",
    "positive_int",
    "required",
    "rfc3339",
    "safe_harbor_postal_code",
]

_DATE_RE = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
_RFC3339_RE = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_NULL_STR = pa.scalar(None, pa.string())
_NULL_BOOL = pa.scalar(None, pa.bool_())
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)


def _valid_only(values: pa.Array, ok: pa.Array) -> pa.Array:
    return pc.if_else(ok, values, _NULL_STR)  # pragma: no mutate (a null of any type gives string)


def required(checks: RowChecks, values: pa.Array, label: str) -> None:
    """Fail rows where ``values`` is null (missing or blank)."""
    checks.add(pc.is_null(values), MISSING_FIELD, f"{label}: required value is missing")


def max_bytes(checks: RowChecks, values: pa.Array, label: str, limit: int) -> pa.Array:
    """Fail rows whose value is longer than ``limit`` UTF-8 bytes (the warehouse column's length)."""
    too_long = pc.greater(pc.binary_length(values), limit)
    checks.add(too_long, FIELD_TOO_LONG, f"{label}: longer than {limit} bytes")
    return _valid_only(values, pc.invert(pc.fill_null(too_long, False)))  # pragma: no mutate (nulls stay null)


def matches(checks: RowChecks, values: pa.Array, label: str, pattern: str, reason: str, expected: str) -> pa.Array:
    """Fail non-null values that do not match the RE2 ``pattern``; ``expected`` describes the format."""
    bad = pc.invert(pc.match_substring_regex(values, pattern))
    checks.add(bad, reason, f"{label}: {expected}")
    return _valid_only(values, pc.invert(pc.fill_null(bad, False)))  # pragma: no mutate (nulls stay null)


def _calendar_ok(date_part: pa.Array) -> pa.Array:
    """True where a ``YYYY-MM-DD`` string (already regex-shaped, or null) is a real calendar date."""
    filled = pc.fill_null(date_part, "2000-01-01")
    year = _int_slice(filled, 0, 4)
    month = _int_slice(filled, 5, 7)
    day = _int_slice(filled, 8, 10)  # pragma: no mutate (values are 10 chars: a stop past 10 reads the same)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_index = np.clip(month, 0, 12)  # pragma: no mutate (the regex admits months 01-12 only: a guard)
    last = _DAYS_IN_MONTH[month_index] + ((month == 2) & leap)
    return pc.and_(pc.is_valid(date_part), pa.array((day >= 1) & (day <= last)))


def _int_slice(strings: pa.Array, start: int, stop: int) -> np.ndarray:
    """``strings[start:stop]`` (digits, no nulls) as int32 numbers."""
    ints = pc.cast(pc.utf8_slice_codeunits(strings, start, stop), pa.int32())
    numbers: np.ndarray = ints.to_numpy(zero_copy_only=False)  # pragma: no mutate (no nulls: zero-copy or not)
    return numbers


def iso_date(checks: RowChecks, values: pa.Array, label: str) -> pa.Array:
    """ISO 8601 calendar date ``YYYY-MM-DD`` -> ``date32``."""
    shaped = pc.fill_null(pc.match_substring_regex(values, _DATE_RE), False)  # pragma: no mutate (nulls stay null)
    ok = pc.and_(shaped, _calendar_ok(_valid_only(values, shaped)))
    checks.add(pc.and_(pc.is_valid(values), pc.invert(ok)), INVALID_DATE, f"{label}: not an ISO 8601 date (YYYY-MM-DD)")
    return pc.cast(_valid_only(values, ok), pa.date32())


def rfc3339(checks: RowChecks, values: pa.Array, label: str) -> pa.Array:
    """RFC 3339 date-time with a ``Z`` or ``±hh:mm`` offset -> ``timestamp[us, UTC]`` (sub-µs truncated)."""
    shaped = pc.fill_null(pc.match_substring_regex(values, _RFC3339_RE), False)  # pragma: no mutate (nulls stay null)
    date_part = pc.utf8_slice_codeunits(_valid_only(values, shaped), 0, 10)  # pragma: no mutate (only [0:10] is read)
    ok = pc.and_(shaped, _calendar_ok(date_part))
    checks.add(
        pc.and_(pc.is_valid(values), pc.invert(ok)),
        INVALID_TIMESTAMP,
        f"{label}: not an RFC 3339 timestamp with offset",
    )
    normal = pc.utf8_upper(_valid_only(values, ok))
    # Both rewrites keep the fast cast working; pyarrow also parses ' ' and 't', and the slow path below parses
    # more than 6 fractional digits, so dropping either one gives the same values, only slower.
    normal = pc.replace_substring_regex(normal, r"^(.{10}) ", r"\1T")  # pragma: no mutate (see above)
    normal = pc.replace_substring_regex(normal, r"(\.\d{6})\d+", r"\1")  # pragma: no mutate (see above)
    try:
        return pc.cast(normal, TIMESTAMP)
    except pa.ArrowInvalid:  # pragma: no cover - defensive: the regex admits only what the cast parses
        return pa.array([_slow_timestamp(v) for v in normal.to_pylist()], TIMESTAMP)  # pragma: no mutate


def _slow_timestamp(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    except ValueError:
        return None


def positive_int(checks: RowChecks, values: pa.Array, label: str) -> pa.Array:
    """A positive integer that fits ``int32`` (1 .. 999,999,999) -> ``int32``."""
    good = matches(checks, values, label, r"^0*[1-9]\d{0,8}$", INVALID_NUMBER, "not a positive integer")
    return pc.cast(good, pa.int32())


def money(checks: RowChecks, values: pa.Array, label: str, precision: int = 12, scale: int = 2) -> pa.Array:
    """A decimal with at most ``precision - scale`` integer and ``scale`` fractional digits, optional sign
    (negative amounts are adjustments) -> ``decimal128(precision, scale)``."""
    pattern = rf"^[+-]?\d{{1,{precision - scale}}}(\.\d{{0,{scale}}})?$"
    expected = f"not a decimal amount with up to {precision - scale} digits and {scale} decimals"
    good = matches(checks, values, label, pattern, INVALID_AMOUNT, expected)
    return pc.cast(good, pa.decimal128(precision, scale))  # reads "12." as 12.00 (pinned pyarrow; unit-tested)


def npi(checks: RowChecks, values: pa.Array, label: str) -> pa.Array:
    """A National Provider Identifier: 10 digits whose last is the Luhn check digit of ``80840`` + the first
    nine (CMS). Shape and check digit fail with the same reason (``invalid_npi``), different details."""
    shaped = matches(checks, values, label, r"^\d{10}$", INVALID_NPI, "not 10 digits")
    ok = luhn_npi_ok(shaped)
    bad = pc.and_(pc.is_valid(shaped), pc.invert(ok))
    checks.add(bad, INVALID_NPI, f"{label}: check digit does not match (Luhn, prefix 80840)")
    return _valid_only(shaped, pc.invert(pc.fill_null(bad, False)))  # pragma: no mutate (nulls stay null)


def luhn_npi_ok(values: pa.Array) -> pa.Array:
    """True where a 10-digit string passes the NPI Luhn check (null stays null). Vectorised."""
    n = len(values)
    if n == 0:
        return pa.array([], pa.bool_())
    filled = pc.fill_null(values, "0000000000").cast(pa.binary()).combine_chunks() if isinstance(
        values, pa.ChunkedArray) else pc.fill_null(values, "0000000000").cast(pa.binary())  # fmt: skip
    digits = np.frombuffer(filled.buffers()[2], dtype=np.uint8)
    offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)[filled.offset : filled.offset + n + 1]
    if not np.all(np.diff(offsets) == 10):
        all_false = pa.repeat(pa.scalar(False), n)
        return pc.if_else(pc.is_null(values), _NULL_BOOL, all_false)  # pragma: no mutate (any null gives bool)
    raw = digits[offsets[0] : offsets[0] + 10 * n].reshape(n, 10)
    wide = raw.astype(np.int64)  # pragma: no mutate (astype(None) is float64: exact for sums this small)
    grid = wide - 48
    doubled = grid[:, 0::2] * 2  # positions 1, 3, 5, 7, 9 of the ten (the 10th is the check digit, not doubled)
    doubled = np.where(doubled >= 10, doubled - 9, doubled)
    total = 24 + doubled.sum(axis=1) + grid[:, 1:9:2].sum(axis=1) + grid[:, 9]
    ok = pa.array(total % 10 == 0)
    return pc.if_else(pc.is_null(values), _NULL_BOOL, ok)  # pragma: no mutate (a null of any type gives bool)


SAFE_HARBOR_RESTRICTED_ZIP3 = (
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890",
    "893",
)  # fmt: skip
"""Three-digit ZIP areas of 20,000 people or fewer (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(B)): stored as 000."""
_US_ZIP = r"^[0-9]{3}([0-9]{2}(-?[0-9]{4})?)?$"


def safe_harbor_postal_code(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """CONTRACT §7: a US ZIP code (``12345``, ``12345-6789``, ``123456789`` or already ``123``) -> its first three
    digits, ``000`` for :data:`SAFE_HARBOR_RESTRICTED_ZIP3`; anything else (other countries' postal codes,
    garbage) -> null. Never a row failure: the value is dropped, the row loads. For every feed (CSV, FHIR, HL7,
    CDC) -- the warehouse migration ``schemas/sql/*/migrations/001_safe_harbor_postal_code.sql`` is the same rule."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    shaped = pc.fill_null(pc.match_substring_regex(arr, _US_ZIP), False)  # pragma: no mutate (nulls stay null)
    zip3 = pc.utf8_slice_codeunits(arr, 0, 3)
    restricted = pc.is_in(zip3, value_set=pa.array(SAFE_HARBOR_RESTRICTED_ZIP3))
    general = pc.if_else(pc.fill_null(restricted, False), pa.scalar("000"), zip3)  # pragma: no mutate (nulls stay null)
    return pc.if_else(shaped, general, _NULL_STR)  # pragma: no mutate (a null of any type gives string)
