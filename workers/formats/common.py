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

import io
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "REJECTED",
    "ChunkFile",
    "CsvRead",
    "ParseResult",
    "RowChecks",
    "assemble",
    "blank_to_null",
    "decode_utf8",
    "keep_last",
    "line_blocks",
    "parse_csv_stream",
    "read_csv_stream",
    "read_csv_strings",
    "reject_file",
    "without_nul",
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
INVALID_DX_CODE = "invalid_dx_code"
INVALID_PROCEDURE_CODE = "invalid_procedure_code"
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


NUL_DETAIL = "row: a field holds a NUL character (U+0000)"


def without_nul(tables: Mapping[str, pa.Table], rejected: pa.Table) -> tuple[dict[str, pa.Table], pa.Table]:
    """Rows of ``tables`` with a NUL character in any text column, moved to ``rejected`` as ``malformed_row`` at
    their ``source_line``: PostgreSQL and Redshift text cannot hold one, so one such row would otherwise fail the
    whole file's load. NULs in ``rejected.detail`` (which may quote an id from the file) are removed. Vectorised."""
    kept: dict[str, pa.Table] = {}
    moved: list[pa.Table] = [rejected]
    for name, table in tables.items():
        mask = pa.repeat(pa.scalar(False), table.num_rows)
        for column in table.columns:  # chunked arrays (a table's columns always are)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                hit = pc.fill_null(pc.match_substring(column, "\x00"), False)
                mask = pc.or_(mask, hit.combine_chunks())
        count = mask.true_count
        if not count:
            kept[name] = table
            continue
        kept[name] = table.filter(pc.invert(mask))
        lines = (
            table.column("source_line").filter(mask).cast(pa.int64())
            if "source_line" in table.column_names
            else [0] * count  # never null: a null line number means the whole file
        )
        moved.append(
            pa.table(
                {
                    "line_number": lines,
                    "reason": [MALFORMED_ROW] * count,
                    "detail": [NUL_DETAIL] * count,
                    "record_id": [None] * count,
                },
                schema=REJECTED,  # gives the types
            )
        )
    out = pa.concat_tables(moved)
    detail = out.column("detail")
    if pc.any(pc.match_substring(detail, "\x00")).as_py():  # null when no row or no detail: false
        out = out.set_column(out.schema.get_field_index("detail"), "detail", pc.replace_substring(detail, "\x00", ""))
    return kept, out


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
        data.decode()  # UTF-8, Python's default codec
    except UnicodeDecodeError:
        return None
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def blank_to_null(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Trim whitespace; empty strings become null."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    trimmed = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    return pc.if_else(pc.equal(trimmed, ""), None, trimmed)  # None: a null of the values' type (string)


@dataclass(frozen=True, slots=True)
class CsvRead:
    """A CSV file read as strings: the kept columns (trimmed, blank = null), each row's physical start line,
    and the rejections of records with the wrong number of fields."""

    columns: dict[str, pa.Array]
    lines: pa.Array
    malformed: pa.Table


class ChunkFile(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (what pyarrow's streaming CSV reader reads).

    ``read(n)`` returns exactly ``n`` bytes until the end of the data, whatever the chunk sizes were, so the
    blocks pyarrow cuts depend only on the content and its ``block_size``. Holds at most one chunk plus ``n``.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self.position = 0  # bytes handed out so far (read, readinto, readline)

    def readable(self) -> bool:
        return True

    def _fill(self, size: int) -> None:
        """Buffer at least ``size`` bytes, or all that is left; takes no chunk more than that needs."""
        if len(self._buffer) < size:
            for chunk in self._chunks:  # a for over the chunks: no mutation makes it endless
                self._buffer += chunk
                if len(self._buffer) >= size:
                    return

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._buffer += b"".join(self._chunks)
            size = len(self._buffer)
        self._fill(size)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.position += len(out)
        return out

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def at_end(self) -> bool:
        """True when no byte is left (reads ahead one chunk)."""
        self._fill(1)
        return not self._buffer

    def readline(self, limit: int | None = -1) -> bytes:
        cap = limit if limit is not None and limit >= 0 else sys.maxsize
        end = self._buffer.find(b"\n")
        while end < 0 and len(self._buffer) < cap:  # takes one chunk at a time, each once: never endless
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            found = chunk.find(b"\n")
            if found >= 0:
                end = len(self._buffer) + found
            self._buffer += chunk
        return self.read(end + 1 if 0 <= end < cap else min(cap, len(self._buffer)))


_BOM = b"\xef\xbb\xbf"
_MAX_HEADER_BYTES = 64 * 1024
_ONE_PYARROW_BLOCK = 1 << 30  # pyarrow reads a record block (at most block_size + MAX_LINE_BYTES) as one block
_UNNUMBERED = 0  # the number of an invalid row pyarrow did not number (not seen with use_threads=False)
DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024


MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest NDJSON line read (one resource); a longer one makes the file unreadable."""


class LineTooLongError(Exception):
    """A line of a line-delimited file is longer than :data:`MAX_LINE_BYTES`."""


def line_blocks(chunks: Iterable[bytes], block_size: int) -> Iterator[tuple[int, list[bytes]]]:
    """Whole lines in blocks of about ``block_size`` bytes: ``(number of the block's first line, lines)``.

    A block ends at the first line end at or after ``block_size`` bytes, so blocks depend only on the content
    (not on how the chunks were cut). A leading UTF-8 byte-order mark is dropped; ``\\r`` before ``\\n`` is
    left to the line's parser. Raises :class:`LineTooLongError` past :data:`MAX_LINE_BYTES` without a line end.
    """
    buffer = bytearray()
    line = 1
    bom_pending = True  # the bytes so far may still be a byte-order mark alone
    for chunk in chunks:
        buffer += chunk
        if bom_pending:
            bom_pending = _BOM.startswith(buffer)
            if not bom_pending and buffer.startswith(_BOM):
                del buffer[:3]
        while (cut := buffer.find(b"\n", block_size - 1)) >= 0:
            lines = bytes(buffer[:cut]).split(b"\n")
            del buffer[: cut + 1]
            yield line, lines
            line += len(lines)
        if len(buffer) > MAX_LINE_BYTES + block_size:
            raise LineTooLongError
    if bom_pending and buffer == _BOM:  # a file of a byte-order mark alone
        buffer.clear()
    if buffer:
        lines = bytes(buffer).split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        yield line, lines


def read_csv_stream(
    chunks: Iterable[bytes],
    header: Sequence[str],
    keep: Sequence[str],
    schema: pa.Schema,
    *,
    block_size: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[CsvRead | ParseResult]:
    """Read an RFC 4180 file whose header must name exactly ``header`` (any order, case-insensitive), block by
    block: about ``block_size`` bytes of whole records each (cut at a line end outside quotes, see
    :func:`record_blocks`), each parsed by pyarrow on its own, so memory does not grow with the file.

    Yields one :class:`CsvRead` per block (``lines`` absolute). Only the ``keep`` columns are returned: the
    others (names, street addresses) are dropped right after the line count (their embedded newlines still
    count). Records whose fields are all empty (blank lines) are skipped and not counted. A whole-file
    :class:`ParseResult` rejection is yielded (and nothing after it) when the file is not UTF-8, has no header
    or the wrong one, is not CSV or holds a record longer than :data:`MAX_LINE_BYTES` -- also after earlier
    blocks, when the fault is found mid-file: the caller then discards those blocks.
    """
    source = ChunkFile(chunks)
    first = source.readline(_MAX_HEADER_BYTES)
    if first.startswith(_BOM):
        first = first[3:]
    if not first.strip():
        yield reject_file(schema, UNREADABLE, "file: empty, no header row")
        return
    if decode_utf8(first) is None:
        yield reject_file(schema, NOT_UTF8, "file: not valid UTF-8")
        return
    if b"\r" in first.rstrip(b"\r\n"):  # CR alone ends lines (classic Mac): the header line runs on into the rows
        yield reject_file(schema, UNREADABLE, "file: lines end in CR alone (RFC 4180: CRLF or LF)")
        return
    names = _header_names(first, header)
    if names is None:
        yield reject_file(schema, BAD_HEADER, "header: expected columns " + ",".join(header))
        return
    cursor = _Cursor()
    read_options = pcsv.ReadOptions(use_threads=False, column_names=names)
    # One pyarrow block per record block. Equivalent to newlines_in_values=True below: either one alone keeps a
    # quoted line end inside its value (each kept as a second guard).
    read_options.block_size = _ONE_PYARROW_BLOCK  # pragma: no mutate (equivalent: newlines_in_values=True suffices)
    convert_options = pcsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))  # blank = null: later
    try:
        for block in record_blocks(source, block_size):
            invalid: list[tuple[int, int, bool]] = []  # (record number in the block from 1, lines spanned, blank)

            def on_invalid(row: pcsv.InvalidRow, into: list[tuple[int, int, bool]] = invalid) -> str:
                # the text itself is never kept: only its line count and whether it is white space alone
                into.append((int(row.number or _UNNUMBERED), row.text.count("\n") + 1, not row.text.strip()))
                return "skip"

            parse_options = pcsv.ParseOptions(ignore_empty_lines=False, invalid_row_handler=on_invalid)
            parse_options.newlines_in_values = True  # pragma: no mutate (equivalent: one pyarrow block suffices)
            try:
                table = pcsv.read_csv(pa.py_buffer(block), read_options=read_options, parse_options=parse_options,
                                      convert_options=convert_options)  # fmt: skip
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. invalid UTF-8, a quote left open at the end
                yield _unparseable(schema, exc)
                return
            quoted = b'"' in block  # without a quote no value holds a line end
            del block
            read = _block(table, keep, header, [(number, span) for number, span, _ in invalid], cursor, quoted=quoted)
            yield _blank_and_spans(read, invalid)
    except LineTooLongError:
        yield reject_file(schema, UNREADABLE, f"file: a record is longer than {MAX_LINE_BYTES} bytes")


def record_blocks(source: ChunkFile, block_size: int) -> Iterator[bytes]:
    """Whole CSV records in blocks: each ends at the last line end within ``block_size`` bytes at which an even
    number of quote characters was seen since the block's start (RFC 4180: outside a quoted field), or at the
    first such line end after it when a record is longer. The cuts depend only on the content. Raises
    :class:`LineTooLongError` when no record boundary comes within :data:`MAX_LINE_BYTES`."""
    buffer = bytearray()
    while True:
        # what a block leaves behind is always shorter than block_size (its cut is in the last block_size bytes read)
        if len(buffer) < block_size:  # pragma: no mutate (always true, see above; <= reads 0 bytes; guards read(-n))
            buffer += source.read(block_size - len(buffer))
        if not buffer:
            return
        if source.at_end():
            yield bytes(buffer)
            return
        cut = _boundary(buffer)  # the buffer holds block_size bytes here
        while cut < 0:
            if len(buffer) > MAX_LINE_BYTES + block_size:
                raise LineTooLongError
            more = source.read(block_size)
            if not more:
                yield bytes(buffer)
                return
            buffer += more
            cut = _boundary(buffer)
        yield bytes(buffer[: cut + 1])
        del buffer[: cut + 1]


def _boundary(buffer: bytearray, limit: int | None = None) -> int:
    """Position of the last ``\\n`` before ``limit`` (default: the end) with an even number of ``"`` before it, or
    -1. Only the parity of the quote count matters (a start of None: from the buffer's start)."""
    odd = buffer.count(b'"', None, limit) & 1
    end = limit
    for _ in range(buffer.count(b"\n", None, limit)):  # one step per line end: never endless
        position = buffer.rfind(b"\n", None, end)
        odd ^= buffer.count(b'"', position, end) & 1
        if not odd:
            return position
        end = position
    return -1


def _unparseable(schema: pa.Schema, exc: Exception) -> ParseResult:
    if "utf8" in str(exc).lower() or "utf-8" in str(exc).lower():
        return reject_file(schema, NOT_UTF8, "file: not valid UTF-8")
    return reject_file(schema, UNREADABLE, "file: not parseable as RFC 4180 CSV")


def _header_names(first: bytes, header: Sequence[str]) -> list[str] | None:
    """The header's column names (normalised), or None when they are not exactly ``header``."""
    try:
        names = pcsv.read_csv(
            pa.py_buffer(first + b"\n"),  # an empty line after the header is ignored
            read_options=pcsv.ReadOptions(autogenerate_column_names=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    # one row: ``first`` is one non-blank line (inferred types: a one-value column of a null marker such as NA is null)
    normalised = [str(v).strip().lower() for row in names.to_pylist() for v in row.values()]
    return normalised if sorted(normalised) == sorted(header) else None


@dataclass(slots=True)
class _Cursor:
    line: int = 2  # physical line of the next record (the header is line 1)


def _block(
    table: pa.Table,
    keep: Sequence[str],
    header: Sequence[str],
    invalid: list[tuple[int, int]],
    cursor: _Cursor,
    *,
    quoted: bool,
) -> CsvRead:
    """One block's :class:`CsvRead`; ``invalid`` are the block's skipped records (numbers from 1); ``quoted``
    False when the block has no quote character (so no value spans lines)."""
    taken = [(number - 1, span) for number, span in sorted(invalid)]
    starts, invalid_starts, next_line = _physical_lines(table, taken, cursor.line, quoted=quoted)
    cursor.line = next_line
    trimmed = {name: blank_to_null(table.column(name)) for name in table.column_names}
    blank = np.ones(table.num_rows, dtype=bool)
    for values in trimmed.values():
        blank &= np.asarray(values.is_null())
    if blank.any():
        non_blank = pa.array(~blank)
        columns = {name: trimmed[name].filter(non_blank) for name in keep}
        starts = starts.filter(non_blank)
    else:
        columns = {name: trimmed[name] for name in keep}
    count = len(invalid_starts)
    malformed = pa.table(
        {
            "line_number": invalid_starts,
            "reason": [MALFORMED_ROW] * count,
            "detail": [f"row: wrong number of fields (expected {len(header)})"] * count,
            "record_id": [None] * count,
        },
        schema=REJECTED,  # gives the types
    )
    return CsvRead(columns, starts, malformed)


def _blank_and_spans(read: CsvRead, invalid: list[tuple[int, int, bool]]) -> CsvRead:
    """``read`` without its malformed records of white space alone (blank lines: skipped, not quarantined), and
    with the number of lines in the detail of a malformed record that runs over several (a quote left open).
    ``invalid``: (record number in the block, lines spanned, white space alone) of each, as the CSV reader
    reported them; :func:`_block` keeps their order."""
    ordered = sorted(invalid)
    if not ordered or read.malformed.num_rows != len(ordered):
        return read
    details = read.malformed.column("detail").to_pylist()  # as many as ``ordered`` (see above)
    for index, (_, span, _) in enumerate(ordered):
        if span != 1:
            details[index] = f"{details[index]}; a quoted field runs over {span} lines"
    malformed = read.malformed.set_column(2, "detail", pa.array(details))  # strings (one at least)
    malformed = malformed.filter(pa.array([not blank for _, _, blank in ordered]))
    return CsvRead(read.columns, read.lines, malformed)


def parse_csv_stream(
    chunks: Iterable[bytes],
    header: Sequence[str],
    keep: Sequence[str],
    schema: pa.Schema,
    validate: Callable[[CsvRead], ParseResult],
    *,
    block_size: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[ParseResult]:
    """:func:`read_csv_stream` with ``validate`` applied to every block (a whole-file rejection passes as is).

    Duplicates are resolved within a block only (the warehouse resolves them across blocks).
    """
    for read in read_csv_stream(chunks, header, keep, schema, block_size=block_size):
        yield read if isinstance(read, ParseResult) else validate(read)


def read_csv_strings(
    data: bytes, header: Sequence[str], keep: Sequence[str], schema: pa.Schema
) -> CsvRead | ParseResult:
    """:func:`read_csv_stream` over a whole file in memory, as one :class:`CsvRead` (small files, tests)."""
    if decode_utf8(data) is None:
        return reject_file(schema, NOT_UTF8, "file: not valid UTF-8")
    # One block (the whole file after the header) or a whole-file rejection; nothing when there is no record.
    for read in read_csv_stream([data], header, keep, schema, block_size=len(data)):
        return read
    return CsvRead({name: pa.array([], pa.string()) for name in keep}, pa.array([], pa.int64()),
                   REJECTED.empty_table())  # fmt: skip


def _physical_lines(
    table: pa.Table, invalid: list[tuple[int, int]], first_line: int, *, quoted: bool
) -> tuple[pa.Array, list[int], int]:
    """Start line of every parsed record, start lines of the skipped (invalid) records and the line after the
    block (values are only searched for line ends when ``quoted``).

    Records follow each other in the file; a record spans 1 + (newlines inside its quoted fields) lines.
    ``invalid`` holds (position among the block's records, span) of the skipped records.
    """
    n = table.num_rows
    total = n + len(invalid)
    spans = np.ones(total, dtype=np.int64)
    is_invalid = np.zeros(total, dtype=bool)
    for number, span in invalid:
        pos = min(max(number, 0), total - 1)  # numbers past the block (not seen from pyarrow): its last record
        is_invalid[pos] = True
        spans[pos] = span
    newlines = np.zeros(n, dtype=np.int64)
    if quoted:  # an optimisation: without a quote no value holds a line end (the counts would all be 0)
        for col in table.columns:
            counts = pc.count_substring(col, "\n")
            counts = counts.fill_null(0)  # pragma: no mutate (a guard: strings_can_be_null=False reads no null)
            newlines += np.asarray(counts)
    parsed = ~is_invalid
    spans[np.flatnonzero(parsed)[:n]] += newlines[: int(parsed.sum())]
    ends = np.cumsum(spans)
    starts = (first_line + np.concatenate([[0], ends]))[:total]  # int64, as spans
    next_line = first_line + int(spans.sum())
    good_starts = starts[parsed][:n]
    return pa.array(good_starts), [int(s) for s in starts[is_invalid]], next_line


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
        out = np.zeros(self.num_rows, dtype=bool)
        for mask, _, _ in self._failures:
            out |= np.asarray(mask)
        return pa.array(out)

    def reasons(self, rows: pa.Array | None = None) -> tuple[pa.Array, pa.Array]:
        """(reason, detail) per row -- or per row of the boolean mask ``rows`` only; null without failure."""
        failures = self._failures if rows is None else [(m.filter(rows), r, t) for m, r, t in self._failures]
        count = self.num_rows if rows is None else int(pc.sum(rows).as_py() or 0)
        reason = pa.nulls(count, pa.string())
        detail = pa.nulls(count, pa.string())
        for mask, why, text in failures:
            if not pc.any(mask).as_py():
                continue
            reason = pc.if_else(pc.and_(mask, pc.is_null(reason)), pa.scalar(why), reason)
            part = pc.if_else(mask, pa.scalar(text), None)  # None: a null string
            # binary_join_element_wise(..., null_handling="skip") drops all-null rows (pyarrow 26): fold pairwise.
            detail = pc.coalesce(pc.binary_join_element_wise(detail, part, "; "), detail, part)
        return reason, detail


def keep_last(table: pa.Table, keys: Sequence[str]) -> tuple[pa.Table, int]:
    """Rows of ``table`` with the last occurrence of each key (file order); also how many were superseded."""
    indexed = table.append_column("__row", pa.array(np.arange(table.num_rows)))
    # one thread: the same rows either way (sorted below), but per-thread hash tables raised the feeds' peak RSS
    # (bench.feeds: CDC CSV 245 -> 279 MiB, X12 153 -> 171 MiB at 10x size)
    by_key = indexed.group_by(list(keys), use_threads=False)  # pragma: no mutate (thread count: memory only)
    last = by_key.aggregate([("__row", "max")]).column("__row_max")
    if len(last) == table.num_rows:  # no key twice (or no rows): nothing to drop or reorder
        return table, 0
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
    reason, detail = checks.reasons(failed)  # computed for the failed rows only (usually none)
    if failed.true_count:
        ok = pc.invert(failed)
        arrays = [*(columns[f.name].filter(ok) for f in schema), lines.filter(ok)]
    else:
        arrays = [*(columns[f.name] for f in schema), lines]
    good = pa.Table.from_arrays(arrays, schema=with_source_line(schema))
    good, duplicates = keep_last(good, keys)
    rejected = pa.table(
        {
            "line_number": lines.filter(failed),
            "reason": reason,
            "detail": detail,
            "record_id": record_id.filter(failed),
        },
        schema=REJECTED,
    )
    return ParseResult(good, rejected, duplicates)
