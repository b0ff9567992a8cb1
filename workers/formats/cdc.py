"""Reader: AWS DMS S3-target files (CONTRACT §8, ``raw/ehr/cdc/<schema>/{patients,encounters}/``) ->
``patient_changes`` / ``encounter_changes`` rows (``schemas.feeds``).

- Files: ``LOAD*.csv|parquet`` (full load: no ``Op`` column; rows get ``op`` ``L``) and CDC files (``Op``
  ``I``/``U``/``D``), with ``AddColumnName=true`` (a CSV header) and ``TimestampColumnName=dms_commit_ts``.
  Columns are matched by name, case-insensitively; the feed's columns (CONTRACT §8 CSV feeds) and
  ``dms_commit_ts`` are required, others are ignored. Names and street addresses are never read.
- ``dms_commit_ts``: DMS writes ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in UTC; RFC 3339 with an offset is accepted too.
- Values follow the CSV feeds' rules (``workers.formats.patients`` / ``encounters``); postal codes are reduced
  by :func:`~workers.formats.values.safe_harbor_postal_code`. A ``D`` row needs only its key and commit time.
- Every change is kept (``change_seq`` = its ordinal in the file): which one wins per key is the warehouse's
  decision (newest ``dms_commit_ts``, then the later row), as it also depends on what was applied before.
- Rejections: bad rows alone (``line_number`` = the record's ordinal + 1, the physical line when no quoted
  field holds a line break; ``missing_field``, ``invalid_op``, ``invalid_timestamp`` …); a file that cannot be
  read, lacks a column or is under no known table is rejected whole (null line).

Streaming, bounded memory: CSV is cut at record boundaries (a line feed outside quotes) into blocks (1 MiB by
default), each read by pyarrow (one :class:`~workers.formats.feed.FeedChunk` per block; see :func:`_records`).
Parquet needs random access (its footer is at the end), so its bytes are spooled to a temporary file (in memory
up to 8 MiB, on local disk past that; removed when the file is read) and read one row group at a time (one
chunk per row group). ``change_seq`` and line numbers count from the start of the file, so the warehouse
orders changes across chunks as within one. A file found unreadable part way (a malformed CSV row in a later
block) is a whole-file rejection (``whole_file``): the handler then discards what it staged of the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import tempfile
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from schemas.feeds import ENCOUNTER_CHANGES, PATIENT_CHANGES
from workers.formats.common import (
    BAD_HEADER,
    DISCHARGE_BEFORE_ADMIT,
    MISSING_FIELD,
    REJECTED,
    UNREADABLE,
    RowChecks,
    assemble,
    blank_to_null,
)
from workers.formats.feed import FeedChunk, rejection
from workers.formats.values import iso_date, max_bytes, required, rfc3339, safe_harbor_postal_code

__all__ = ["BLOCK_BYTES", "INVALID_OP", "UNKNOWN_TABLE", "cdc_route", "read_cdc"]

INVALID_OP = "invalid_op"
UNKNOWN_TABLE = "unknown_table"
COLUMNS = {
    "patients": ("patient_id", "birth_date", "sex", "postal_code"),
    "encounters": ("encounter_id", "patient_id", "provider_id", "encounter_type", "admit_at", "discharge_at",
                   "primary_dx"),
}  # fmt: skip
LAKE_TABLE = {"patients": "patient_changes", "encounters": "encounter_changes"}
_KEY = {"patients": "patient_id", "encounters": "encounter_id"}
_SCHEMA = {"patients": PATIENT_CHANGES, "encounters": ENCOUNTER_CHANGES}
BLOCK_BYTES = 1 << 20
_SPOOL_IN_MEMORY = 8 << 20
_US_PER_HOUR = 3_600_000_000
_NULL = pa.scalar(None, pa.string())


def cdc_route(key: str) -> tuple[str, bool, str] | None:
    """``(table, full_load, format)`` of ``…/cdc/<schema>/<table>/<file>`` (``.gz`` already stripped or not),
    or None when the key is not a DMS file of a known table."""
    parts = key.split("/")
    if len(parts) < 4 or parts[-4] != "cdc" or parts[-2] not in COLUMNS:
        return None
    name = parts[-1].removesuffix(".gz").lower()
    fmt = "parquet" if name.endswith(".parquet") else "csv" if name.endswith(".csv") else ""
    if not fmt:
        return None
    return parts[-2], name.startswith("load"), fmt


def read_cdc(key: str, chunks: Iterator[bytes], *, block_size: int = BLOCK_BYTES) -> Iterator[FeedChunk]:
    """Stream one DMS file: a :class:`FeedChunk` of ``<table>_changes`` rows and rejections per CSV block of
    ``block_size`` bytes (a row must fit in one) or Parquet row group."""
    route = cdc_route(key)
    if route is None:
        yield _whole(
            UNKNOWN_TABLE, "key: not a .csv or .parquet file under raw/ehr/cdc/<schema>/{patients,encounters}/"
        )
        return
    table, full_load, fmt = route
    needed = (*COLUMNS[table], "dms_commit_ts", *(() if full_load else ("op",)))
    try:
        batches = _csv(chunks, block_size) if fmt == "csv" else _parquet(chunks)
        seq = 0
        for batch in batches:
            names = [n.strip().lower() for n in batch.schema.names]
            missing = [n for n in needed if n not in names]
            if missing:
                yield _whole(BAD_HEADER, f"header: missing column(s) {', '.join(missing)}")
                return
            columns = {n: _strings(batch.column(names.index(n))) for n in needed}
            yield _changes(table, full_load, columns, seq)
            seq += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError):
        yield _whole(UNREADABLE, f"file: not readable as DMS {fmt.upper()}")


def _whole(reason: str, detail: str) -> FeedChunk:
    return FeedChunk({}, pa.Table.from_pylist([rejection(None, reason, detail)], schema=REJECTED), whole_file=True)


def _csv(chunks: Iterator[bytes], block: int) -> Iterator[pa.RecordBatch]:
    head = b""
    for chunk in chunks:  # a block's worth (bounded: a header line longer than a block is refused)
        head += chunk
        if len(head) > block:
            break
    if not head.strip() or (b"\n" not in head and len(head) > block):
        raise pa.ArrowInvalid  # an empty file or no header line: unreadable
    # one row from one line (its CR is a line end to the csv module); a BOM is not part of the first name
    header = next(csv.reader([head.partition(b"\n")[0].removeprefix(codecs.BOM_UTF8).decode()]))
    # Text, never inferred (id 0042 stays 0042); by pyarrow's default no string is null (_strings nulls blanks).
    convert = pcsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    for index, piece in enumerate(_records(itertools.chain((head,), chunks), block)):
        read = pcsv.ReadOptions(
            use_threads=False,  # pragma: no mutate (threads give the same rows; a reader keeps to one thread)
            block_size=len(piece),  # one block, one batch (so pyarrow never cuts a quoted line feed)
            column_names=header,
            skip_rows=0 if index else 1,
        )
        yield from pcsv.read_csv(io.BytesIO(piece), read_options=read, convert_options=convert).to_batches()


def _records(chunks: Iterator[bytes], block: int) -> Iterator[bytes]:
    """The stream cut after a record's line feed (one outside quotes) into pieces of about ``block`` bytes.

    pyarrow's streaming CSV reader reads up to 32 blocks ahead of its consumer (its background read queue),
    so its memory grows with the file up to that many blocks: each piece is read whole by ``read_csv``
    instead, and memory stays within a few blocks. A record longer than four blocks is refused."""
    parts: list[bytes] = []
    size = 0
    want = block
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size < want:
            continue
        data = b"".join(parts)
        cut = _boundary(data)
        if cut is None:
            if len(data) > 4 * block:
                raise pa.ArrowInvalid  # a CSV record longer than four blocks: unreadable
            parts, want = [data], len(data) + block
            continue
        yield data[:cut]
        rest = data[cut:]
        parts, size, want = [rest], len(rest), block
    rest = b"".join(parts)
    if rest:
        yield rest


def _boundary(data: bytes) -> int | None:
    """The offset just after the last line feed of ``data`` that is outside quotes (``data`` starts a record;
    RFC 4180 quotes: an even count before the line feed), or None."""
    raw = np.frombuffer(data, np.uint8)
    inside = np.logical_xor.accumulate(raw == ord('"'))  # after each byte: an odd count of quotes so far
    ends = np.flatnonzero((raw == ord("\n")) & ~inside)
    return int(ends[-1]) + 1 if ends.size else None


def _parquet(chunks: Iterator[bytes]) -> Iterator[pa.RecordBatch]:
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)  # pragma: no mutate (pyarrow seeks to every offset it reads: any position gives the same)
        with pq.ParquetFile(spool) as file:
            for group in range(file.num_row_groups):
                yield from file.read_row_group(group).to_batches()


def _strings(values: pa.Array) -> pa.Array:
    """A column as trimmed strings (blank = null); timestamps as RFC 3339 UTC, dates as ISO 8601."""
    if pa.types.is_timestamp(values.type):  # a zoned one too: its values are UTC instants, shown as such
        values = pc.strftime(values.cast(pa.timestamp("us")), format="%Y-%m-%dT%H:%M:%SZ")
    return blank_to_null(values)


def _commit_times(checks: RowChecks, values: pa.Array) -> pa.Array:
    """DMS's ``YYYY-MM-DD HH:MM:SS[.f]`` (UTC) or RFC 3339 -> ``timestamp[us, UTC]``."""
    naive = pc.match_substring_regex(values, r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")
    with_offset = pc.if_else(naive, pc.binary_join_element_wise(values, pa.scalar("+00:00"), ""), values)
    return rfc3339(checks, with_offset, "dms_commit_ts")


def _changes(table: str, full_load: bool, cols: dict[str, pa.Array], seq: int) -> FeedChunk:
    n = len(cols["dms_commit_ts"])
    change_seq = pa.array(np.arange(seq, seq + n))  # int64: the ordinal of each change in the file
    lines = pc.add(change_seq, 2)  # after the header, counting from 1
    checks = RowChecks(n)
    op = pa.repeat(pa.scalar("L"), n).cast(pa.string()) if full_load else pc.utf8_upper(cols["op"])
    bad_op = pc.invert(pc.is_in(op, value_set=pa.array(["I", "U", "D"])))  # a null is in no set: bad
    if not full_load:
        checks.add(bad_op, INVALID_OP, "Op: not one of I, U, D")
    deleting = pc.is_in(op, value_set=pa.array(["D"]))  # never null
    required(checks, cols["dms_commit_ts"], "dms_commit_ts")
    key = _KEY[table]
    required(checks, cols[key], key)
    typed: dict[str, pa.Array] = {
        "op": op,
        "dms_commit_ts": _commit_times(checks, cols["dms_commit_ts"]),
        "change_seq": change_seq,
    }
    # A delete carries only its key: the rest of its before-image is neither checked nor kept.
    live = {c: _null_where(deleting, v) for c, v in cols.items() if c != key}
    if table == "patients":
        typed |= {
            "patient_id": max_bytes(checks, cols[key], key, 64),
            "birth_date": iso_date(checks, live["birth_date"], "birth_date"),
            "sex": max_bytes(checks, live["sex"], "sex", 16),
            "postal_code": safe_harbor_postal_code(live["postal_code"]),
        }
    else:
        for column in ("patient_id", "admit_at"):
            missing = pc.and_(pc.is_null(live[column]), pc.invert(deleting))
            checks.add(missing, MISSING_FIELD, f"{column}: required value is missing")
        admit = rfc3339(checks, live["admit_at"], "admit_at")
        discharge = rfc3339(checks, live["discharge_at"], "discharge_at")
        checks.add(pc.less(discharge, admit), DISCHARGE_BEFORE_ADMIT, "discharge_at: earlier than admit_at")
        micros = pc.subtract(pc.cast(discharge, pa.int64()), pc.cast(admit, pa.int64()))
        typed |= {
            "encounter_id": max_bytes(checks, cols[key], key, 64),
            "patient_id": max_bytes(checks, live["patient_id"], "patient_id", 64),
            "provider_id": max_bytes(checks, live["provider_id"], "provider_id", 64),
            "encounter_type": max_bytes(checks, live["encounter_type"], "encounter_type", 64),
            "admit_at": admit,
            "discharge_at": discharge,
            "length_of_stay_hours": pc.divide(pc.cast(micros, pa.float64()), float(_US_PER_HOUR)),
            "primary_dx": max_bytes(checks, live["primary_dx"], "primary_dx", 16),
        }
    record_id = _null_where(pc.greater(pc.binary_length(cols[key]), 64), cols[key])
    result = assemble(typed, lines, checks, _SCHEMA[table], record_id, ("change_seq",))
    return FeedChunk({LAKE_TABLE[table]: result.good}, result.rejected)


def _null_where(mask: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` (strings) with a null where ``mask`` holds."""
    return pc.if_else(mask, _NULL, values)  # pragma: no mutate (a null of any type gives string)
