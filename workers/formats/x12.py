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

Rows of an interchange are held until its IEA (the envelope decides them all): memory is bounded by the
largest interchange, not by the file; one :class:`~workers.formats.feed.FeedChunk` is yielded per interchange.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
from pyx12.errors import X12Error
from pyx12.segment import Segment
from pyx12.x12file import X12Reader

from schemas.arrow import CLAIMS
from schemas.feeds import REMITTANCES
from workers.formats.common import REJECTED, UNREADABLE, keep_last, with_source_line
from workers.formats.feed import ChunkStream, FeedChunk, rejection
from workers.formats.x12_transactions import DATE, GUIDE_835, GUIDES_837, INVALID_CLAIM, Interchange, Transaction

__all__ = [
    "INVALID_CLAIM",
    "INVALID_ENVELOPE",
    "UNSUPPORTED_TRANSACTION",
    "UNSUPPORTED_VERSION",
    "read_x12",
]

INVALID_ENVELOPE = "invalid_envelope"
UNSUPPORTED_VERSION = "unsupported_version"
UNSUPPORTED_TRANSACTION = "unsupported_transaction"


_TOLERATED = frozenset({"SEG1"})
"""pyx12 segment errors that do not make a claim unusable (SEG1: trailing element separators)."""
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


def read_x12(key: str, chunks: Iterator[bytes]) -> Iterator[FeedChunk]:
    """Stream an X12 file: one :class:`FeedChunk` per interchange (``claims``, ``remittances``, rejections)."""
    text = io.TextIOWrapper(io.BufferedReader(ChunkStream(chunks)), encoding="latin-1", newline="")
    try:
        reader = X12Reader(text)
    except _PYX12_FAILURES:
        yield _chunk(None, [rejection(None, UNREADABLE, "file: not an X12 interchange (no valid ISA segment)")])
        return
    current: Interchange | None = None
    transaction: Transaction | None = None
    gs_version = ""
    position = 0
    segments = iter(reader)
    while True:
        try:
            seg = next(segments)
        except StopIteration:
            break
        except _PYX12_FAILURES:  # pyx12 cannot go on (a damaged ISA, a GE without GS): the interchange fails
            if current is None:
                current = Interchange("")
            current.errors.append(f"segment {position + 1}: not readable as X12")
            yield _finish(current)
            return
        position += 1
        sid = seg.get_seg_id()
        if sid == "ISA":
            if current is not None:  # an ISA before the previous IEA
                current.errors.append("ISA: previous interchange has no IEA")
                yield _finish(current)
            current = Interchange(seg.get_value("ISA13") or "")
            current.version_ok = seg.get_value("ISA12") == "00501"
            transaction, gs_version = None, ""
        elif current is None:
            continue  # segments after an IEA and before an ISA: pyx12 reports them as errors below
        elif sid == "GS":
            gs_version = seg.get_value("GS08") or ""
            if not gs_version.startswith("005010"):
                current.version_ok = False
        elif sid == "ST":
            kind = _transaction_kind(seg, gs_version)
            if kind is None:
                current.version_ok = False
            elif kind == "":
                current.rejected.append(rejection(position, UNSUPPORTED_TRANSACTION,
                                                  "ST01: transaction set is not 837 or 835"))  # fmt: skip
            remit_prefix = "00000000"
            transaction = Transaction(kind or "", remit_prefix)
        elif sid == "SE":
            if transaction is not None:
                if transaction.kind == "835" and transaction.remit_date and DATE.match(transaction.remit_date):
                    transaction.remit_prefix = transaction.remit_date
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
                else:  # e.g. a broken HL hierarchy: every claim of the transaction set
                    transaction.errors.append(error)
        if sid == "IEA" and current is not None:
            yield _finish(current)
            current = None
    reader.cleanup()
    errors = [f"{kind.upper()} error {code}" for kind, code, *_ in reader.pop_errors() if kind in ("isa", "gs", "st")]
    if current is not None:
        current.errors += errors or ["IEA: interchange trailer missing"]
        yield _finish(current)


def _finish(interchange: Interchange) -> FeedChunk:
    control = interchange.control.strip()
    if not interchange.version_ok:
        detail = f"interchange {control}: X12 version is not 005010 (00501 ISA, 005010X222A1/X223A2/X221A1)"
        return _chunk(None, [rejection(None, UNSUPPORTED_VERSION, detail, control or None)])
    if interchange.errors:
        detail = f"interchange {control}: envelope check failed ({'; '.join(sorted(set(interchange.errors)))})"
        return _chunk(None, [rejection(None, INVALID_ENVELOPE, detail, control or None)])
    return _chunk(interchange, interchange.rejected)


def _chunk(interchange: Interchange | None, rejected: list[dict[str, object]]) -> FeedChunk:
    tables: dict[str, pa.Table] = {}
    duplicates = 0
    if interchange is not None and interchange.claims:
        claims = pa.Table.from_pylist(interchange.claims, schema=with_source_line(CLAIMS))
        tables["claims"], duplicates = keep_last(claims, ("claim_id", "line_number"))
    if interchange is not None and interchange.remits:
        remits = pa.Table.from_pylist(interchange.remits, schema=with_source_line(REMITTANCES))
        remits, superseded = keep_last(remits.sort_by("remit_order"), ("claim_id", "line_number"))
        tables["remittances"], duplicates = remits, duplicates + superseded
    return FeedChunk(tables, pa.Table.from_pylist(rejected, schema=REJECTED), duplicates)
