"""Reader: X12 005010 interchanges (CONTRACT §8, ``raw/claims/x12/``) -> ``claims`` and ``remittances`` rows.

Tokenising and the envelope checks are pyx12's (:class:`pyx12.x12file.X12Reader`): separators from the ISA,
ISA/IEA, GS/GE and ST/SE counts and control numbers, HL parentage, 837 LX numbering. This module maps the
segments it yields.

- 837P (``005010X222A1``) / 837I (``005010X223A2``): one ``claims`` row (``schemas.arrow.CLAIMS``) per service
  line (2400 LX + SV1 / SV2), ``status`` ``pending``, amounts other than billed null. ``claim_id`` = CLM01,
  ``line_number`` = LX01, ``patient_id`` = 2010CA NM109 when a patient loop (HL 23) carries one, else the
  subscriber's 2010BA NM109; ``provider_npi`` = rendering provider 2310B NM1*82 NM109, else billing 2010AA;
  ``service_date`` = the line's DTP*472 (D8 or first RD8 date), else the claim's DTP*472 / DTP*434;
  ``procedure_code`` = SV101-2 / SV202-2 (else SV201, the revenue code); ``dx_code`` = the HI code the line
  points at (SV107-1), else the claim's first HI code; ``billed_amount`` = SV102 / SV203.
- 835 (``005010X221A1``): one ``remittances`` row (``schemas.feeds.REMITTANCES``) per SVC (2110), or one with
  ``line_number`` 0 for a CLP without SVC. ``line_number`` = REF*6R when it is a positive integer (the 837's
  line number echoed), else the SVC's position in the CLP. ``status``: ``denied`` when CLP02 = 4 or the line
  paid nothing (SVC03 = 0), else ``paid``; CLP02 = 22 (reversal) gives ``pending`` with null amounts, so a
  correction CLP that follows it (a later ``remit_order``) wins. ``allowed_amount`` = AMT*B6, ``paid_amount`` =
  SVC03, ``denial_reason`` (denied lines only) = ``<CAS01>-<CAS02>`` of the line's first CAS, else the claim's.
- Rejections (``line_number`` = the segment's 1-based position in the file; ``detail`` never carries a value
  from the file, only segment ids and control numbers): an interchange whose envelope fails is rejected whole
  (``invalid_envelope``, null line) and none of its rows is kept; a version other than 00501 / 005010 is
  ``unsupported_version`` (null line) for its interchange; a transaction set other than 837/835 is
  ``unsupported_transaction``; a claim (837 CLM or 835 CLP) with a bad or missing value is rejected alone
  (``invalid_claim`` at its CLM/CLP position). A file that does not start with an ISA is ``unreadable``.
- Names, addresses, birth dates and identifiers other than the member id and NPIs are never read.

Streaming, bounded memory: pyx12 tokenises the byte stream as it comes (its own 8 KiB buffer; the separators
of the file's first ISA). Rows of an interchange are held until its IEA, since its envelope decides them all,
and decided interchanges are released in :class:`~workers.formats.feed.FeedChunk` s of about :data:`MAX_ROWS` rows. An
interchange that outgrows :data:`MAX_ROWS` before its IEA (a large 835, or an 837 past the guide's 5,000
claims per ST/SE) is released early, in chunks tagged with its ordinal in the file (``part``), together with
the finished claims of its open transaction set. If it then fails its envelope, the rejection chunk
``retracts`` that ordinal and the file handler redoes the file without the tagged chunks (the file is read
again, so only a file with such an interchange costs a second read): the interchange is still quarantined
whole and nothing of it is visible. After such a release, a structural error outside any claim of the open
transaction set (which would otherwise reject every claim of the set) fails the interchange instead.
Memory is thus bounded by :data:`MAX_ROWS` and the largest claim, whatever the file or interchange size.
Ordering across chunks: a claim line's ``source_line`` is its LX segment's position in the file and a
remittance's ``remit_order`` ends with it, so the warehouse keeps the same last line per key as within a chunk.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyx12.errors import X12Error
from pyx12.segment import Segment
from pyx12.x12file import X12Reader

from schemas.arrow import CLAIMS
from schemas.feeds import REMITTANCES
from workers.formats.common import REJECTED, UNREADABLE, keep_last, with_source_line
from workers.formats.feed import ChunkStream, FeedChunk, rejection
from workers.formats.x12_transactions import GUIDE_835, GUIDES_837, INVALID_CLAIM, Interchange, Transaction

__all__ = [
    "INVALID_CLAIM",
    "INVALID_ENVELOPE",
    "MAX_ROWS",
    "UNSUPPORTED_TRANSACTION",
    "UNSUPPORTED_VERSION",
    "read_x12",
]

INVALID_ENVELOPE = "invalid_envelope"
UNSUPPORTED_VERSION = "unsupported_version"
UNSUPPORTED_TRANSACTION = "unsupported_transaction"
MAX_ROWS = 10_000
"""Rows (claim lines, remittance lines, rejections) a chunk holds, and an undecided interchange before it is
released early."""


_TOLERATED = frozenset({"SEG1"})
"""pyx12 segment errors that do not make a claim unusable (SEG1: trailing element separators)."""
_NO_VERSION = ""
"""The group version of an interchange without a GS (or GS08): any value not starting 005010."""
_PYX12_FAILURES = (X12Error, IndexError, KeyError, ValueError, TypeError, AttributeError)
"""What pyx12 raises on input it cannot tokenise (it was not written to be fed damaged bytes)."""


def _transaction_kind(seg: Segment, gs_version: str) -> str | None:
    """``837P``/``837I``/``835``, ``""`` for another transaction set, None for an unsupported version."""
    version = seg.get_value("ST03") or gs_version
    if not version.startswith("005010"):
        return None
    st01 = seg.get_value("ST01")
    if st01 == "837":
        return GUIDES_837.get(version)
    if st01 == "835":
        return "835" if version == GUIDE_835 else None
    return ""


def read_x12(key: str, chunks: Iterator[bytes], *, max_rows: int = MAX_ROWS) -> Iterator[FeedChunk]:
    """Stream an X12 file: :class:`FeedChunk` s of ``claims``, ``remittances`` and rejections, each of at most
    about ``max_rows`` rows (whole interchanges, except an interchange larger than that: see the module)."""
    # "8859": Latin-1 by its alias without letters ("LATIN-1" would be the same codec), every byte a character;
    # newline="": a CR inside an element stays a CR.
    text = io.TextIOWrapper(io.BufferedReader(ChunkStream(chunks)), encoding="8859", newline="")
    try:
        reader = X12Reader(text)
    except _PYX12_FAILURES:
        yield _whole_file(rejection(None, UNREADABLE, "file: not an X12 interchange (no valid ISA segment)"))
        return
    out = _Output(max_rows)
    current: Interchange | None = None
    transaction: Transaction | None = None  # pragma: no mutate (the first segment is an ISA, which sets it)
    gs_version = _NO_VERSION  # pragma: no mutate (the first segment is an ISA, which sets it)
    position = 0
    ordinal = 0
    segments = iter(reader)
    while True:
        try:
            seg = next(segments)
        except StopIteration:
            break
        except _PYX12_FAILURES:  # pyx12 cannot go on (a damaged ISA, a GE without GS): the interchange fails
            if current is None:  # a new interchange: nothing of it was released, so it needs no ordinal
                current = Interchange("")
            current.errors.append(f"segment {position + 1}: not readable as X12")
            yield from out.finish(current)
            yield from out.flush()
            return
        position += 1
        sid = seg.get_seg_id()
        if sid == "ISA":
            if current is not None:  # an ISA before the previous IEA
                current.errors.append("ISA: previous interchange has no IEA")
                yield from out.finish(current)
            ordinal += 1
            current = Interchange(seg.get_value("ISA13") or "", ordinal=ordinal)
            current.version_ok = seg.get_value("ISA12") == "00501"
            transaction, gs_version = None, _NO_VERSION
        elif current is None:
            continue  # segments after an IEA and before an ISA: pyx12 reports them as errors below
        elif sid == "GS":
            gs_version = seg.get_value("GS08") or _NO_VERSION
            if not gs_version.startswith("005010"):
                current.version_ok = False  # pragma: no mutate (None: read as a truth value only, like False)
        elif sid == "ST":
            kind = _transaction_kind(seg, gs_version)
            reader.check_837_lx = kind in GUIDES_837.values()  # pyx12: LX01 numbers each claim's lines 1, 2, ...
            if kind is None:
                current.version_ok = False  # pragma: no mutate (None: read as a truth value only, like False)
            elif kind == "":
                current.rejected.append(rejection(position, UNSUPPORTED_TRANSACTION,
                                                  "ST01: transaction set is not 837 or 835"))  # fmt: skip
            transaction = Transaction(kind or "", "00000000")
        elif sid == "SE":
            if transaction is not None:
                transaction.rows(current, current.control)
            transaction = None
        elif transaction is not None:
            transaction.segment(seg, position)
        for kind, code, _message, _value, _line in reader.pop_errors():
            if current is not None and kind in ("isa", "gs", "st"):
                current.errors.append(f"{kind.upper()} error {code}")
            elif transaction is not None and code not in _TOLERATED:
                error = f"segment {position}: pyx12 segment error {code}"
                if transaction.claim is not None:  # inside a claim: that claim only
                    transaction.claim.error = transaction.claim.error or error
                elif transaction.released and current is not None:  # claims already released: fail it all
                    current.errors.append(f"segment {position}: transaction set structure error after release")
                else:  # e.g. a broken HL hierarchy: every claim of the transaction set
                    transaction.errors.append(error)
        if sid == "IEA" and current is not None:
            yield from out.finish(current)
            current, transaction = None, None
        elif current is not None and current.version_ok and current.held(transaction) >= max_rows:
            yield from out.spill(current, transaction)
    unread, more_segments = _unread(reader, text)
    reader.cleanup()
    errors = [f"{kind.upper()} error {code}" for kind, code, *_ in reader.pop_errors() if kind in ("isa", "gs", "st")]
    if current is not None:
        current.errors += errors or ["IEA: interchange trailer missing"]
        yield from out.finish(current)
    if unread and (current is None or more_segments):
        # pyx12 stopped before the end: what follows is quarantined, not dropped without a trace (a file cut
        # inside its last segment is the open interchange's own envelope failure, already rejected above)
        detail = f"file: not read past segment {position} (an empty segment or one without a terminator)"
        out.rejected.append(rejection(position + 1, UNREADABLE, detail))
    yield from out.flush()


_BLANK = " \t\r\n\x00\x1a"  # white space, NUL padding and a DOS end-of-file mark after the last segment


def _unread(reader: X12Reader, text: io.TextIOBase) -> tuple[bool, bool]:
    """Whether pyx12 stopped with more than white space left (its buffer, then the rest of the stream, read
    block by block and not kept), and whether that holds a segment terminator (more segments): it ends its
    iteration at an empty segment (``~~``) or at text without a segment terminator, silently."""
    terminator = reader.raw.seg_term
    rest = reader.raw.buffer
    unread = bool(rest.strip(_BLANK))
    while True:
        if terminator in rest.strip(_BLANK):
            return True, True
        rest = text.read(io.DEFAULT_BUFFER_SIZE)
        if not rest:
            return unread, False
        unread = unread or bool(rest.strip(_BLANK))


class _Output:
    """Rows of decided interchanges, released in chunks of about ``max_rows`` rows; an undecided interchange
    that outgrows the bound is released early as chunks tagged with its ordinal (``part``)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.claims: list[dict[str, Any]] = []
        self.remits: list[dict[str, Any]] = []
        self.rejected: list[dict[str, object]] = []

    def finish(self, interchange: Interchange) -> Iterator[FeedChunk]:
        """The interchange is decided: its rows join the output, or its rejection (which retracts what was
        released of it)."""
        failed = _failure(interchange)
        if failed is not None:
            if interchange.spilled:
                yield FeedChunk({}, pa.Table.from_pylist([failed], schema=REJECTED), retracts=interchange.ordinal)
            else:
                self.rejected.append(failed)
        else:
            self.claims += interchange.claims
            self.remits += interchange.remits
            self.rejected += interchange.rejected
        interchange.claims, interchange.remits, interchange.rejected = [], [], []
        if len(self.claims) + len(self.remits) + len(self.rejected) >= self.max_rows:
            yield from self.flush()

    def spill(self, interchange: Interchange, transaction: Transaction | None) -> Iterator[FeedChunk]:
        """Release the interchange's rows so far (and its open transaction set's finished claims)."""
        if transaction is not None:
            transaction.release(interchange, interchange.control)
        yield from self.flush()
        chunk = _chunk(interchange.claims, interchange.remits, interchange.rejected)
        interchange.claims, interchange.remits, interchange.rejected = [], [], []
        interchange.spilled = True
        yield FeedChunk(chunk.tables, chunk.rejected, chunk.duplicates, part=interchange.ordinal)

    def flush(self) -> Iterator[FeedChunk]:
        if self.claims or self.remits or self.rejected:
            yield _chunk(self.claims, self.remits, self.rejected)
        self.claims, self.remits, self.rejected = [], [], []


def _failure(interchange: Interchange) -> dict[str, object] | None:
    """The interchange's whole rejection, or None when its envelope and version are good."""
    control = interchange.control.strip()
    if not interchange.version_ok:
        detail = f"interchange {control}: X12 version is not 005010 (00501 ISA, 005010X222A1/X223A2/X221A1)"
        return rejection(None, UNSUPPORTED_VERSION, detail, control or None)
    if interchange.errors:
        detail = f"interchange {control}: envelope check failed ({'; '.join(sorted(set(interchange.errors)))})"
        return rejection(None, INVALID_ENVELOPE, detail, control or None)
    return None


def _whole_file(row: dict[str, object]) -> FeedChunk:
    return FeedChunk({}, pa.Table.from_pylist([row], schema=REJECTED), whole_file=True)


def _chunk(claim_rows: list[dict[str, Any]], remit_rows: list[dict[str, Any]],
           rejected: list[dict[str, object]]) -> FeedChunk:  # fmt: skip
    tables: dict[str, pa.Table] = {}
    duplicates = 0
    if claim_rows:
        claims = pa.Table.from_pylist(claim_rows, schema=with_source_line(CLAIMS))
        tables["claims"], duplicates = keep_last(claims, ("claim_id", "line_number"))
    if remit_rows:
        remits = pa.Table.from_pylist(remit_rows, schema=with_source_line(REMITTANCES))
        remits, superseded = keep_last(remits.sort_by("remit_order"), ("claim_id", "line_number"))
        tables["remittances"], duplicates = remits, duplicates + superseded
    return FeedChunk(tables, pa.Table.from_pylist(rejected, schema=REJECTED), duplicates)
