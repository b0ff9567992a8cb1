"""Shared machinery of the batch-file readers (:mod:`~workers.formats.patients`, ``encounters``, ``fhir``,
``claims``): the result type, rejection reasons, RFC 4180 reading and vectorised column checks.

Contract:
- A reader is pure: ``bytes -> ParseResult``. It never raises on bad input; a file that cannot be read at all
  yields exactly one rejected row with a null ``line_number`` (see :func:`reject_file`).
- ``line_number`` is the 1-based physical line where the offending record starts (the CSV header is line 1).
- ``detail`` names the column and the problem; it never contains a value from the file (no PHI).
- Values are whitespace-trimmed; an empty value is null.
- Length limits are in UTF-8 **bytes** (Redshift ``VARCHAR(n)`` counts bytes; PostgreSQL counts characters,
  so bytes is the stricter of the two).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

__all__ = [
    "REJECTED",
    "CsvRead",
    "ParseResult",
    "RowChecks",
    "assemble",
    "blank_to_null",
    "decode_utf8",
    "keep_last",
    "read_csv_strings",
    "reject_file",
]

# Whole-file reasons (line_number null).
NOT_UTF8 = "not_utf8"
BAD_HEADER = "bad_header"
UNREADABLE = "unreadable"
# Row reasons.
MALFORMED_ROW = "malformed_row"
MISSING_FIELD = "missing_field"
FIELD_TOO_LONG = "field_too_long"
INVALID_DATE = "invalid_date"
INVALID_TIMESTAMP = "invalid_timestamp"
INVALID_NUMBER = "invalid_number"
INVALID_AMOUNT = "invalid_amount"
INVALID_NPI = "invalid_npi"
INVALID_STATUS = "invalid_status"
INVALID_REFERENCE = "invalid_reference"
DISCHARGE_BEFORE_ADMIT = "discharge_before_admit"
UNSUPPORTED_RESOURCE = "unsupported_resource"

REJECTED = pa.schema(
    [
        pa.field("line_number", pa.int64(), nullable=True),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
        pa.field("record_id", pa.string(), nullable=True),
    ]
)
"""Rejected rows: where (``line_number``), why (``reason``, ``detail``) and the row's id if it had one."""

_NULL = pa.scalar(None, pa.string())
SOURCE_LINE = pa.field("source_line", pa.int64(), nullable=False)
"""Appended to every good table: the physical line of the row in the source file (lineage)."""


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Good rows (the target schema plus ``source_line``), rejected rows (:data:`REJECTED`) and the number
    of rows superseded by a later row with the same key in the same file (``duplicates``: last one wins)."""

    good: pa.Table
    rejected: pa.Table
    duplicates: int = 0

    @property
    def rows_in(self) -> int:
        return int(self.good.num_rows + self.rejected.num_rows + self.duplicates)

    @property
    def file_rejected(self) -> bool:
        """True when the whole file was rejected (one rejected row with a null line number)."""
        return bool(self.rejected.num_rows == 1 and self.rejected.column("line_number").null_count == 1)


def with_source_line(schema: pa.Schema) -> pa.Schema:
    return schema.append(SOURCE_LINE)


def rejected_rows(line_number: int | None, reason: str, detail: str, record_id: str | None = None) -> pa.Table:
    return pa.Table.from_pylist(
        [{"line_number": line_number, "reason": reason, "detail": detail, "record_id": record_id}], schema=REJECTED
    )


def reject_file(schema: pa.Schema, reason: str, detail: str) -> ParseResult:
    """The result of a file that cannot be read at all: no good rows, one rejection with a null line."""
    return ParseResult(with_source_line(schema).empty_table(), rejected_rows(None, reason, detail))


def decode_utf8(data: bytes) -> bytes | None:
    """``data`` without a UTF-8 byte-order mark, or None when it is not valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def blank_to_null(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Trim whitespace; empty strings become null."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    trimmed = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


@dataclass(frozen=True, slots=True)
class CsvRead:
    """A CSV file read as strings: the kept columns (trimmed, blank = null), each row's physical start line,
    and the rejections of records with the wrong number of fields."""

    columns: dict[str, pa.Array]
    lines: pa.Array
    malformed: pa.Table


def read_csv_strings(
    data: bytes, header: Sequence[str], keep: Sequence[str], schema: pa.Schema
) -> CsvRead | ParseResult:
    """Read an RFC 4180 file whose header must name exactly ``header`` (any order, case-insensitive).

    Only the ``keep`` columns are returned: the others (names, street addresses) are dropped right after the
    line count (their embedded newlines still count).
    Records whose fields are all empty (blank lines) are skipped and not counted. Returns a whole-file
    :class:`ParseResult` rejection when the file is not UTF-8, has no header or the wrong one, or is not CSV.
    """
    clean = decode_utf8(data)
    if clean is None:
        return reject_file(schema, NOT_UTF8, "file: not valid UTF-8")
    if not clean.endswith(b"\n"):
        clean += b"\n"  # pyarrow cannot skip a header that has no line end
    first_line = clean.split(b"\n", 1)[0].strip()
    if not first_line:
        return reject_file(schema, UNREADABLE, "file: empty, no header row")
    invalid: list[tuple[int, int]] = []  # (record number, physical lines spanned)

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append((int(row.number or 0), row.text.count("\n") + 1))  # the text itself is never kept
        return "skip"

    try:
        table = _read(clean, header, on_invalid)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. a quote left open to the end of the file
        return reject_file(schema, UNREADABLE, "file: not parseable as RFC 4180 CSV")
    if table is None:
        return reject_file(schema, BAD_HEADER, "header: expected columns " + ",".join(header))
    columns = {name: blank_to_null(table.column(name)) for name in keep}
    starts, invalid_starts, non_blank = _physical_lines(table, invalid)
    columns = {name: col.filter(non_blank) for name, col in columns.items()}
    count = len(invalid_starts)
    malformed = pa.table(
        {
            "line_number": pa.array(invalid_starts, pa.int64()),
            "reason": pa.array([MALFORMED_ROW] * count, pa.string()),
            "detail": pa.array([f"row: wrong number of fields (expected {len(header)})"] * count, pa.string()),
            "record_id": pa.nulls(count, pa.string()),
        },
        schema=REJECTED,
    )
    return CsvRead(columns, starts.filter(non_blank), malformed)


def _read(data: bytes, header: Sequence[str], on_invalid: object) -> pa.Table | None:
    """The file as strings, or None when its header does not name exactly ``header``."""
    names = pcsv.read_csv(
        pa.py_buffer(data.split(b"\n", 1)[0] + b"\n"),
        read_options=pcsv.ReadOptions(autogenerate_column_names=True),
        convert_options=pcsv.ConvertOptions(strings_can_be_null=False),
    )
    normalised = [str(v).strip().lower() for v in names.to_pylist()[0].values()] if names.num_rows else []
    if sorted(normalised) != sorted(header):
        return None
    return pcsv.read_csv(
        pa.py_buffer(data),
        read_options=pcsv.ReadOptions(use_threads=False, column_names=normalised, skip_rows=1),
        parse_options=pcsv.ParseOptions(
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _physical_lines(table: pa.Table, invalid: list[tuple[int, int]]) -> tuple[pa.Array, list[int], pa.Array]:
    """Start line of every parsed record, start lines of the skipped (invalid) records, and a mask of the
    parsed records that are not blank.

    Records follow each other in the file; a record spans 1 + (newlines inside its quoted fields) lines.
    ``invalid`` holds pyarrow's record numbers (header = 1) and spans of the skipped records.
    """
    n = table.num_rows
    total = n + len(invalid)
    spans = np.ones(total, dtype=np.int64)
    is_invalid = np.zeros(total, dtype=bool)
    for number, span in invalid:
        pos = min(max(number - 2, 0), total - 1)
        is_invalid[pos] = True
        spans[pos] = span
    newlines = np.zeros(n, dtype=np.int64)
    for col in table.columns:
        newlines += pc.count_substring(col.combine_chunks(), "\n").fill_null(0).to_numpy(zero_copy_only=False)
    parsed = ~is_invalid
    spans[np.flatnonzero(parsed)[:n]] += newlines[: int(parsed.sum())]
    starts = (2 + np.concatenate([[0], np.cumsum(spans)]))[:total].astype(np.int64)
    blank = np.ones(n, dtype=bool)
    for col in table.columns:
        blank &= pc.equal(pc.utf8_trim_whitespace(col.combine_chunks()), "").to_numpy(zero_copy_only=False)
    good_starts = starts[parsed][:n]
    return pa.array(good_starts, pa.int64()), [int(s) for s in starts[is_invalid]], pa.array(~blank)


class RowChecks:
    """Accumulates per-row failures, column by column, as boolean masks (vectorised).

    A row's ``reason`` is its first failure in the order checks were added; its ``detail`` lists all of them.
    """

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows
        self._failures: list[tuple[pa.Array, str, str]] = []

    def add(self, mask: pa.Array | pa.ChunkedArray, reason: str, detail: str) -> None:
        """Rows where ``mask`` is true fail with ``reason``; null counts as false."""
        arr = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
        self._failures.append((pc.fill_null(arr, False), reason, detail))

    def failed(self) -> pa.Array:
        out = pa.repeat(pa.scalar(False), self.num_rows)
        for mask, _, _ in self._failures:
            out = pc.or_(out, mask)
        return out

    def reasons(self) -> tuple[pa.Array, pa.Array]:
        """(reason, detail) per row; null for rows without failure."""
        reason = pa.nulls(self.num_rows, pa.string())
        detail = pa.nulls(self.num_rows, pa.string())
        for mask, why, text in self._failures:
            reason = pc.if_else(pc.and_(mask, pc.is_null(reason)), pa.scalar(why), reason)
            part = pc.if_else(mask, pa.scalar(text), _NULL)
            # binary_join_element_wise(..., null_handling="skip") drops all-null rows (pyarrow 26): fold pairwise.
            detail = pc.coalesce(pc.binary_join_element_wise(detail, part, "; "), detail, part)
        return reason, detail


def keep_last(table: pa.Table, keys: Sequence[str]) -> tuple[pa.Table, int]:
    """Rows of ``table`` with the last occurrence of each key (file order); also how many were superseded."""
    if table.num_rows == 0:
        return table, 0
    indexed = table.append_column("__row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    last = indexed.group_by(list(keys), use_threads=False).aggregate([("__row", "max")]).column("__row_max")
    order = pc.sort_indices(last)
    kept = table.take(pc.take(last, order))
    return kept, table.num_rows - kept.num_rows


def assemble(
    columns: Mapping[str, pa.Array],
    lines: pa.Array,
    checks: RowChecks,
    schema: pa.Schema,
    record_id: pa.Array,
    keys: Sequence[str],
) -> ParseResult:
    """Split typed ``columns`` into good rows (``schema`` + ``source_line``, last row per key wins) and
    rejected rows (per ``checks``)."""
    failed = checks.failed()
    reason, detail = checks.reasons()
    ok = pc.invert(failed)
    arrays = [columns[f.name].filter(ok) for f in schema]
    good = pa.Table.from_arrays([*arrays, lines.filter(ok)], schema=with_source_line(schema))
    good, duplicates = keep_last(good, keys)
    rejected = pa.table(
        {
            "line_number": lines.filter(failed),
            "reason": reason.filter(failed),
            "detail": detail.filter(failed),
            "record_id": record_id.filter(failed),
        },
        schema=REJECTED,
    )
    return ParseResult(good, rejected, duplicates)
